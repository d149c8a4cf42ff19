from datetime import UTC, datetime

from fastapi import APIRouter

from vafa.kit.auth import StaffRead, StaffWrite
from vafa.kit.db import SessionDep
from vafa.segmentation.scores import rfm
from vafa.segmentation.scores.schemas import (
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
