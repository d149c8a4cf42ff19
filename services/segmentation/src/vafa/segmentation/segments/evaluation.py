"""Evaluation of segments: the one seam the feature store and the scores call into.

INTEGRATION SEAM (issue 6, in progress): the segments branch replaces these bodies with the real
evaluation; until then they do nothing so the feature and score branches can be built in
parallel. Nothing may land on a stop with these bodies still empty."""

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession


async def reevaluate_customers(
    session: AsyncSession,
    *,
    customer_ids: Collection[uuid.UUID],
    now: datetime,
    cause: str,
) -> None:
    """Re-evaluates every active dynamic segment for these customers only, in the caller's
    transaction: opens/closes memberships, adds SegmentEntered/SegmentExited to the outbox, and
    refreshes their `rechecks` row. `cause` is "event" or "window"."""


async def evaluate_segments(
    session: AsyncSession,
    *,
    now: datetime,
    cause: str,
    segment_ids: Collection[uuid.UUID] | None = None,
    fields: Collection[str] | None = None,
) -> None:
    """Full evaluation, in the caller's transaction, of the given active dynamic segments, or of
    those whose definition tests any of `fields` (feature names, e.g. {"rfm_segment"}), or of
    all when both are None. `cause` is "evaluation"."""
