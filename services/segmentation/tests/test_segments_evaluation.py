"""Full and incremental evaluation against the real database: entries and exits happen once,
with their outbox events; windows expire by the clock alone; replays change nothing; concurrent
re-evaluations of one customer open one membership."""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import segmentation_pb2 as pb
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.segmentation.features import jobs
from vafa.segmentation.models import Membership, Recheck, Segment
from vafa.segmentation.segments import service
from vafa.segmentation.segments.evaluation import evaluate_segments, reevaluate_customers

from .segments_fixtures import NOW, customer, purchase, set_features, unique


async def make(session: AsyncSession, definition: dict, **kw: object) -> Segment:
    key = str(kw.pop("key", unique("seg-")))
    return await service.create_segment(
        session,
        key=key,
        name=key,
        description="",
        kind=str(kw.pop("kind", "dynamic")),
        definition=definition,
        template=None,
        author="test",
        now=kw.pop("now", NOW),
    )


async def open_members(session: AsyncSession, seg: Segment) -> set[uuid.UUID]:
    rows = await session.scalars(
        select(Membership.customer_id).where(
            Membership.segment_id == seg.id, Membership.exited_at.is_(None)
        )
    )
    return set(rows)


async def events_for(session: AsyncSession, customer_id: uuid.UUID) -> list[Any]:
    rows = await session.execute(
        text("SELECT headers, payload FROM outbox WHERE key = :k ORDER BY id"),
        {"k": str(customer_id)},
    )
    out = []
    for r in rows:
        headers = [(k, v.encode()) for k, v in r.headers]
        out.append(cloudevents.decode(headers, r.payload).message)
    return out


async def test_full_evaluation_on_create_and_events_once(session: AsyncSession) -> None:
    tag = unique("t")
    a = await customer(session, orders_count=3, tags=[tag])
    b = await customer(session, orders_count=1, tags=[tag])
    seg = await make(
        session,
        {
            "all": [
                {"field": "tags", "op": "contains", "value": tag},
                {"field": "orders_count", "op": "gte", "value": 2},
            ]
        },
    )
    assert await open_members(session, seg) == {a}
    assert seg.member_count == 1 and seg.evaluated_at == NOW
    evs = await events_for(session, a)
    assert [type(e).__name__ for e in evs] == ["SegmentEntered"]
    assert evs[0].segment_key == seg.key and evs[0].cause == pb.MEMBERSHIP_CAUSE_EVALUATION
    assert await events_for(session, b) == []

    # The features consumer's part: b orders again, a's count drops (a refund, say).
    await set_features(session, b, orders_count=2)
    await set_features(session, a, orders_count=1)
    later = NOW + timedelta(hours=1)
    await reevaluate_customers(session, customer_ids=[a, b], now=later, cause="event")
    assert await open_members(session, seg) == {b}
    # A replay of the same event: nothing changes, nothing is emitted.
    await reevaluate_customers(session, customer_ids=[a, b], now=later, cause="event")
    evs_a = await events_for(session, a)
    evs_b = await events_for(session, b)
    assert [type(e).__name__ for e in evs_a] == ["SegmentEntered", "SegmentExited"]
    assert [type(e).__name__ for e in evs_b] == ["SegmentEntered"]
    assert evs_b[0].cause == pb.MEMBERSHIP_CAUSE_EVENT
    assert evs_a[1].entered_at.ToDatetime().replace(tzinfo=NOW.tzinfo) == NOW
    refreshed = await service.get_segment(session, segment_id=seg.id)
    assert refreshed.member_count == 1


async def test_window_expiry_moves_out_without_event_and_recheck(session: AsyncSession) -> None:
    brand = unique("brand-")
    c = await customer(session)
    await purchase(session, c, brand=brand, at=NOW - timedelta(days=10))
    seg = await make(session, {"purchased": {"brand": brand}, "within_days": 30})
    assert await open_members(session, seg) == {c}
    due = await session.scalar(select(Recheck.due_at).where(Recheck.customer_id == c))
    assert due == NOW + timedelta(days=20)
    # Nothing happens to the customer; the clock passes the window's end.
    await reevaluate_customers(
        session, customer_ids=[c], now=due + timedelta(seconds=1), cause="window"
    )
    assert await open_members(session, seg) == set()
    evs = await events_for(session, c)
    assert isinstance(evs[-1], pb.SegmentExited) and evs[-1].cause == pb.MEMBERSHIP_CAUSE_WINDOW
    assert await session.scalar(select(Recheck.due_at).where(Recheck.customer_id == c)) is None


async def test_evaluate_segments_by_field(session: AsyncSession) -> None:
    c = await customer(session)
    seg = await make(session, {"rfm": ["champions"]})
    assert await open_members(session, seg) == set()
    await set_features(session, c, rfm_segment="champions")
    await evaluate_segments(session, now=NOW, cause="evaluation", fields={"clv_band"})
    assert await open_members(session, seg) == set()
    await evaluate_segments(session, now=NOW, cause="evaluation", fields={"rfm_segment"})
    assert await open_members(session, seg) == {c}


async def test_concurrent_reevaluations_open_one_membership(db: Database) -> None:
    key = unique("conc-")
    async with db.sessionmaker() as s, s.begin():
        tag = unique("t")
        c = await customer(s, tags=[tag])
        seg = await make(s, {"field": "tags", "op": "contains", "value": tag + "-x"}, key=key)
        await set_features(s, c, tags=[tag + "-x"])

    async def one() -> None:
        async with db.sessionmaker() as s, s.begin():
            await reevaluate_customers(s, customer_ids=[c], now=NOW, cause="event")

    try:
        await asyncio.gather(*(one() for _ in range(6)))
        async with db.sessionmaker() as s:
            n = await s.scalar(
                select(func.count()).select_from(Membership).where(Membership.segment_id == seg.id)
            )
            entered = await s.scalar(
                text("SELECT count(*) FROM outbox WHERE key = :k"), {"k": str(c)}
            )
            count = await s.scalar(select(Segment.member_count).where(Segment.id == seg.id))
        assert (n, entered, count) == (1, 1, 1)
    finally:
        async with db.sessionmaker() as s, s.begin():
            await s.execute(text("DELETE FROM segments WHERE id = :i"), {"i": seg.id})
            await s.execute(text("DELETE FROM features WHERE customer_id = :i"), {"i": c})


async def test_due_rechecks_reevaluate_with_cause_window(session: AsyncSession) -> None:
    """The feature store's window job takes the due recheck (registered_at is a profile fact the
    job's recompute of order features leaves alone)."""
    c = await customer(session, registered_at=NOW - timedelta(days=29))
    seg = await make(session, {"field": "registered_at", "op": "in_last_days", "value": 30})
    await reevaluate_customers(session, customer_ids=[c], now=NOW, cause="event")
    assert await open_members(session, seg) == {c}
    assert c not in await jobs.run_windows_batch(session, now=NOW, timezone="UTC")
    # Due just after the window's inclusive end: at it, the verdict turns.
    due = await session.scalar(select(Recheck.due_at).where(Recheck.customer_id == c))
    assert due == NOW + timedelta(days=1, seconds=1)
    # Other tests' committed customers may be due too; this transaction is rolled back.
    await session.execute(text("DELETE FROM rechecks WHERE customer_id <> :c"), {"c": c})
    await session.execute(
        text("UPDATE features SET next_window_at = NULL WHERE customer_id <> :c"), {"c": c}
    )
    assert await jobs.run_windows_batch(session, now=due, timezone="UTC", batch_size=5000) == [c]
    assert await open_members(session, seg) == set()
    evs = await events_for(session, c)
    assert isinstance(evs[-1], pb.SegmentExited) and evs[-1].cause == pb.MEMBERSHIP_CAUSE_WINDOW


async def test_removed_customers_exit_with_cause_removed_and_members_page(
    session: AsyncSession,
) -> None:
    tag = unique("t")
    people = [await customer(session, tags=[tag]) for _ in range(5)]
    seg = await make(session, {"field": "tags", "op": "contains", "value": tag})
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        rows, cursor = await service.members(session, segment_id=seg.id, cursor=cursor, limit=2)
        seen += [r.customer_id for r in rows]
        if cursor is None:
            break
    assert sorted(seen) == sorted(people) and len(seen) == 5
    await set_features(session, people[0], removed=True)
    await reevaluate_customers(session, customer_ids=[people[0]], now=NOW, cause="event")
    evs = await events_for(session, people[0])
    assert isinstance(evs[-1], pb.SegmentExited) and evs[-1].cause == pb.MEMBERSHIP_CAUSE_REMOVED
    assert await open_members(session, seg) == set(people[1:])


async def test_full_and_incremental_evaluations_at_once_open_one_membership(db: Database) -> None:
    tag = unique("t")
    async with db.sessionmaker() as s, s.begin():
        people = [await customer(s) for _ in range(3)]
        seg = await make(s, {"field": "tags", "op": "contains", "value": tag}, key=unique("race-"))
        for c in people:
            await set_features(s, c, tags=[tag])

    async def full() -> None:
        async with db.sessionmaker() as s, s.begin():
            await evaluate_segments(s, now=NOW, cause="evaluation", segment_ids=[seg.id])

    async def incremental(c: uuid.UUID) -> None:
        async with db.sessionmaker() as s, s.begin():
            await reevaluate_customers(s, customer_ids=[c], now=NOW, cause="event")

    try:
        await asyncio.gather(full(), *(incremental(c) for c in people), full())
        async with db.sessionmaker() as s:
            stays = (
                await s.execute(
                    select(Membership.customer_id, func.count())
                    .where(Membership.segment_id == seg.id)
                    .group_by(Membership.customer_id)
                )
            ).all()
            events = await s.scalar(
                text("SELECT count(*) FROM outbox WHERE key = ANY(:k)"),
                {"k": [str(c) for c in people]},
            )
            count = await s.scalar(select(Segment.member_count).where(Segment.id == seg.id))
        assert sorted(n for _, n in stays) == [1, 1, 1]
        assert (events, count) == (3, 3)
    finally:
        async with db.sessionmaker() as s, s.begin():
            await s.execute(text("DELETE FROM segments WHERE id = :i"), {"i": seg.id})
            await s.execute(text("DELETE FROM features WHERE customer_id = ANY(:i)"), {"i": people})


async def test_a_large_batch_of_customers_in_one_call(session: AsyncSession) -> None:
    tag = unique("t")
    c = await customer(session, tags=[tag])
    seg = await make(session, {"field": "tags", "op": "contains", "value": tag})
    await set_features(session, c, tags=[])
    # Far more ids than the driver takes bound parameters: they travel as one array each.
    strangers = [uuid.uuid4() for _ in range(40_000)]
    await reevaluate_customers(session, customer_ids=[*strangers, c], now=NOW, cause="event")
    assert await open_members(session, seg) == set()
