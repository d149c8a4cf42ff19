from datetime import UTC, datetime

from fastapi import APIRouter, Request

from vafa.kit.auth import StaffRead, StaffWrite
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound
from vafa.segmentation.models import ClvModel
from vafa.segmentation.scores import rfm
from vafa.segmentation.scores.clv import service as clv_service
from vafa.segmentation.scores.schemas import (
    BgNbdRead,
    ClvBands,
    ClvModelRead,
    GammaGammaRead,
    RfmEdge,
    RfmEdges,
    RfmRead,
    RfmRecomputeRead,
    RfmSegmentRead,
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
async def recompute_rfm(session: SessionDep, _: StaffWrite) -> RfmRecomputeRead:
    summary = await rfm.recompute_rfm(session, now=datetime.now(UTC))
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
