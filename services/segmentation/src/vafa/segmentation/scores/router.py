import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from vafa.kit.auth import StaffRead, StaffWrite
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound, Problem
from vafa.segmentation.models import ClusterRun, ClvModel
from vafa.segmentation.scores import clusters, reports, rfm
from vafa.segmentation.scores.clv import service as clv_service
from vafa.segmentation.scores.schemas import (
    BgNbdRead,
    ClusterCreate,
    ClusterRead,
    ClusterRunRead,
    ClvBands,
    ClvModelRead,
    GammaGammaRead,
    RfmEdge,
    RfmEdges,
    RfmRead,
    RfmRecomputeRead,
    RfmSegmentRead,
    ValueReport,
    ValueRow,
)

router = APIRouter(tags=["scores"])

_DESCRIPTIONS = {s.key: s.description for s in rfm.SEGMENTS}


def _rfm_read(report: rfm.RfmReport) -> RfmRead:
    return RfmRead(
        customers=report.customers,
        segments=[
            RfmSegmentRead(
                key=s.key,
                name=s.name,
                description=_DESCRIPTIONS[s.key],
                customers=s.customers,
                share=s.share,
                mean_recency_days=s.mean_recency_days,
                mean_orders=s.mean_orders,
                mean_spend=s.mean_spend,
            )
            for s in report.segments
        ],
        edges=RfmEdges(
            recency=[RfmEdge(score=e.score, low=e.low, high=e.high) for e in report.recency],
            frequency=[RfmEdge(score=e.score, low=e.low, high=e.high) for e in report.frequency],
            monetary=[RfmEdge(score=e.score, low=e.low, high=e.high) for e in report.monetary],
        ),
    )


@router.get(
    "/v1/segmentation/rfm",
    response_model=RfmRead,
    summary="The RFM segments: customers, share, mean recency, orders and spend; the edges",
)
async def read_rfm(session: SessionDep, _: StaffRead) -> RfmRead:
    return _rfm_read(await rfm.report(session, now=datetime.now(UTC)))


@router.post(
    "/v1/segmentation/rfm/recompute",
    response_model=RfmRecomputeRead,
    summary="Recompute every customer's RFM scores now, as the periodic job does",
)
async def recompute_rfm(request: Request, session: SessionDep, _: StaffWrite) -> RfmRecomputeRead:
    summary = await rfm.recompute_rfm(
        session, now=datetime.now(UTC), timezone=request.app.state.settings.timezone
    )
    await session.commit()
    read = _rfm_read(summary.report)
    return RfmRecomputeRead(
        **read.model_dump(),
        computed_at=summary.computed_at,
        changed=summary.changed,
        cleared=summary.cleared,
    )


def _clv_read(model: ClvModel) -> ClvModelRead:
    params = model.params
    bands = params.get("bands")
    return ClvModelRead(
        id=model.id,
        fitted_at=model.fitted_at,
        horizon_days=model.horizon_days,
        currency=model.currency,
        customers=model.customers,
        repeat_customers=model.repeat_customers,
        bgnbd=BgNbdRead(**params["bgnbd"]) if params.get("bgnbd") else None,
        gamma_gamma=GammaGammaRead(**params["gamma_gamma"]) if params.get("gamma_gamma") else None,
        diagnostics=model.diagnostics,
        bands=ClvBands(**bands) if bands else None,
    )


@router.get(
    "/v1/segmentation/clv",
    response_model=ClvModelRead,
    summary="The CLV model in use: fitted parameters, diagnostics, horizon, the bands' edges",
)
async def read_clv(session: SessionDep, _: StaffRead) -> ClvModelRead:
    model = await clv_service.latest_model(session)
    if model is None:
        raise NotFound("No CLV model has been fitted yet.")
    return _clv_read(model)


@router.post(
    "/v1/segmentation/clv/fit",
    response_model=ClvModelRead,
    summary="Fit BG/NBD and Gamma-Gamma now and write every customer's CLV, as the job does",
)
async def fit_clv(request: Request, session: SessionDep, _: StaffWrite) -> ClvModelRead:
    policy = clv_service.ClvPolicy.of(request.app.state.settings)
    model = await clv_service.fit_clv(session, now=datetime.now(UTC), policy=policy)
    await session.commit()
    return _clv_read(model)


def _query_problem(name: str, detail: str) -> Problem:
    pointer = f"/query/{name}"
    return Problem(
        422,
        f"{pointer}: {detail}.",
        title="Your request is not valid",
        type="validation",
        errors=[{"pointer": pointer, "detail": detail, "type": "value_error"}],
    )


@router.get(
    "/v1/segmentation/reports/value",
    response_model=ValueReport,
    summary="Value by acquisition cohort (last 6, 12 or 18 months), channel, or registration",
)
async def value_report(
    request: Request,
    session: SessionDep,
    _: StaffRead,
    by: Annotated[Literal["cohort", "channel", "registration"], Query()] = "cohort",
    months: Annotated[int | None, Query(description="6, 12 or 18; by=cohort only")] = None,
) -> ValueReport:
    if by != "cohort":
        if months is not None:
            raise _query_problem("months", "applies to by=cohort only")
        rows = (
            await reports.by_channel(session)
            if by == "channel"
            else await reports.by_registration(session)
        )
        return ValueReport(by=by, rows=[ValueRow(**asdict(r)) for r in rows])
    months = 12 if months is None else months
    if months not in reports.COHORT_MONTHS:
        raise _query_problem("months", "must be 6, 12 or 18")
    settings = request.app.state.settings
    rows = await reports.by_cohort(
        session, now=datetime.now(UTC), months=months, timezone=settings.timezone
    )
    return ValueReport(by=by, months=months, rows=[ValueRow(**asdict(r)) for r in rows])


def _run_read(run: ClusterRun) -> ClusterRunRead:
    return ClusterRunRead(
        id=run.id,
        created_at=run.created_at,
        k=run.k,
        features=run.features,
        customers=run.customers,
        inertia=run.inertia,
        silhouette=run.silhouette,
        clusters=[ClusterRead(**c) for c in run.clusters],
    )


@router.post(
    "/v1/segmentation/clusters",
    response_model=ClusterRunRead,
    status_code=201,
    summary="Cluster the customers (k-means on standardised features) and propose segments",
)
async def create_cluster_run(
    body: ClusterCreate, request: Request, session: SessionDep, _: StaffWrite
) -> ClusterRunRead:
    cap = request.app.state.settings.cluster_sample_cap
    run = await clusters.run_clusters(
        session,
        now=datetime.now(UTC),
        k=body.k,
        features=list(body.features),
        sample_size=min(body.sample_size or cap, cap),
    )
    await session.commit()
    return _run_read(run)


@router.get(
    "/v1/segmentation/clusters/{run_id}",
    response_model=ClusterRunRead,
    summary="One cluster run with each cluster's profile and suggested definition",
)
async def read_cluster_run(run_id: uuid.UUID, session: SessionDep, _: StaffRead) -> ClusterRunRead:
    return _run_read(await clusters.get_run(session, run_id=run_id))
