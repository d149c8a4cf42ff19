"""The timeline: idempotent entries, keyset pages newest first, loyalty points."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit.db import Database
from vafa.profile.customers import service as customers
from vafa.profile.customers.identities import Identity, IdentityKind
from vafa.profile.models import TimelineEntry
from vafa.profile.timeline import service

from .factories import unique
from .test_api import AGENT, MARKETER, VIEWER, assert_problem
from .test_file import customer_events
from .test_file import new_customer as new_file

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def new_customer(session: AsyncSession) -> uuid.UUID:
    r = await customers.resolve_customer(
        session,
        identities=[Identity(IdentityKind.email, f"{unique()}@example.com")],
        details=customers.Details(),
    )
    return r.customer.id


async def add(session: AsyncSession, cid: uuid.UUID, kind: str, at: datetime) -> int | None:
    return await service.add_entry(
        session,
        customer_id=cid,
        kind=kind,
        occurred_at=at,
        source="test",
        source_id=unique("src-"),
        summary=kind,
        data={},
    )


async def test_an_entry_is_added_once_per_source_id(session: AsyncSession) -> None:
    cid = await new_customer(session)
    kw = dict(customer_id=cid, kind="order.paid", occurred_at=T0, source="shop", summary="s")
    first = await service.add_entry(session, source_id="same", data={"n": 1}, **kw)  # type: ignore[arg-type]
    second = await service.add_entry(session, source_id="same", data={"n": 2}, **kw)  # type: ignore[arg-type]
    assert first is not None and second is None
    assert await service.has_entry(session, source_id="same")
    entry = await session.get(TimelineEntry, first)
    assert entry is not None and entry.data == {"n": 1}


async def test_pages_walk_newest_first_without_gaps_or_repeats(session: AsyncSession) -> None:
    cid = await new_customer(session)
    other = await new_customer(session)
    # 7 entries, three of them at the same instant (the id breaks the tie).
    times = [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), T0 + timedelta(minutes=1)]
    times += [T0 + timedelta(minutes=5), T0 - timedelta(days=1), T0 + timedelta(hours=1)]
    ids = [await add(session, cid, "order.paid", t) for t in times]
    await add(session, other, "order.paid", T0)
    expected = [
        i for _, i in sorted(zip(times, ids, strict=True), key=lambda p: (p[0], p[1]), reverse=True)
    ]

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        entries, cursor = await service.list_entries(
            session, customer_id=cid, limit=3, cursor=cursor
        )
        seen += [e.id for e in entries]
        pages += 1
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3


async def test_exact_page_size_has_no_next_cursor(session: AsyncSession) -> None:
    cid = await new_customer(session)
    for i in range(3):
        await add(session, cid, "order.paid", T0 + timedelta(seconds=i))
    entries, cursor = await service.list_entries(session, customer_id=cid, limit=3)
    assert len(entries) == 3 and cursor is None


async def test_kind_filter(session: AsyncSession) -> None:
    cid = await new_customer(session)
    for i, kind in enumerate(["order.paid", "points.earned", "order.refunded", "points.earned"]):
        await add(session, cid, kind, T0 + timedelta(seconds=i))
    entries, _ = await service.list_entries(
        session, customer_id=cid, limit=10, kinds=["points.earned", "order.refunded"]
    )
    assert [e.kind for e in entries] == ["points.earned", "order.refunded", "points.earned"]


@pytest.mark.parametrize("cursor", ["garbage", "W10", "WyJ4IiwgMV0", "WyIyMDI2LTAxLTAxIiwxXQ"])
async def test_a_cursor_we_did_not_issue_is_refused(session: AsyncSession, cursor: str) -> None:
    with pytest.raises(service.InvalidCursor):
        await service.list_entries(session, customer_id=uuid.uuid4(), limit=3, cursor=cursor)


async def test_points_land_on_the_timeline_and_unknown_customers_are_skipped(
    session: AsyncSession,
) -> None:
    cid = await new_customer(session)
    common = dict(balance=120, order_ref="shopify:s:1", entry_id="le-1", occurred_at=T0)
    earned = await service.record_points(
        session,
        kind="points.earned",
        customer_id=str(cid),
        points=120,
        reason="order",
        source_id="pts-1",
        **common,  # type: ignore[arg-type]
    )
    assert earned is not None
    entry = await session.get(TimelineEntry, earned)
    assert entry is not None
    assert (entry.kind, entry.source, entry.customer_id) == ("points.earned", "loyalty", cid)
    assert entry.summary == "Earned 120 points (order, order shopify:s:1); balance 120."
    assert entry.data["points"] == 120 and entry.data["entry_id"] == "le-1"

    skipped = [unique("pts-") for _ in range(3)]
    for unknown, source_id in zip((str(uuid.uuid4()), "not-a-uuid", ""), skipped, strict=True):
        assert (
            await service.record_points(
                session,
                kind="points.reversed",
                customer_id=unknown,
                points=5,
                reason="order_refunded",
                source_id=source_id,
                **common,  # type: ignore[arg-type]
            )
            is None
        )
    n = await session.scalar(
        select(func.count())
        .select_from(TimelineEntry)
        .where(TimelineEntry.source_id.in_(["pts-1", *skipped]))
    )
    assert n == 1


async def test_a_batch_of_points_in_two_statements_keeps_the_rules(session: AsyncSession) -> None:
    """The loyalty worker's batch path: known customers' movements land in order, strangers and
    malformed ids are skipped, an entry already there is not added again."""
    a, b = await new_customer(session), await new_customer(session)
    common = dict(balance=10, order_ref="", entry_id="", occurred_at=T0, reason="order")
    first = unique("pts-")
    assert await service.record_points(
        session,
        kind="points.earned",
        customer_id=str(a),
        points=10,
        source_id=first,
        **common,  # type: ignore[arg-type]
    )
    moves = [
        service.PointsMovement(
            kind="points.earned", customer_id=str(a), points=10, source_id=first, **common
        ),  # type: ignore[arg-type]
        service.PointsMovement(
            kind="points.earned", customer_id=str(b), points=3, source_id=unique("pts-"), **common
        ),  # type: ignore[arg-type]
        service.PointsMovement(
            kind="points.reversed",
            customer_id=str(uuid.uuid4()),
            points=1,
            source_id=unique("pts-"),
            **common,
        ),  # type: ignore[arg-type]
        service.PointsMovement(
            kind="points.reversed", customer_id="nope", points=1, source_id=unique("pts-"), **common
        ),  # type: ignore[arg-type]
        service.PointsMovement(
            kind="points.reversed", customer_id=str(a), points=4, source_id=unique("pts-"), **common
        ),  # type: ignore[arg-type]
    ]
    added = await service.record_points_many(session, moves)
    assert added == {moves[1].source_id, moves[4].source_id}
    rows = (
        await session.execute(
            select(TimelineEntry.customer_id, TimelineEntry.kind, TimelineEntry.summary)
            .where(TimelineEntry.customer_id.in_([a, b]))
            .order_by(TimelineEntry.id)
        )
    ).all()
    assert [tuple(r) for r in rows] == [
        (a, "points.earned", "Earned 10 points (order); balance 10."),
        (b, "points.earned", "Earned 3 points (order); balance 10."),
        (a, "points.reversed", "4 points reversed (order); balance 10."),
    ]


async def test_interactions_are_idempotent_by_source_id(
    client: httpx.AsyncClient, db: Database
) -> None:
    c = await new_file(client)
    url = f"/v1/customers/{c['id']}/timeline"
    call = {
        "kind": "call",
        "direction": "inbound",
        "duration_seconds": 185,
        "agent": "agent-7",
        "source": "pbx",
        "source_id": unique("call-"),
        "occurred_at": "2026-05-01T10:00:00+03:30",
        "attributes": {"queue": "sales"},
    }
    first = await client.post(url, json=call, headers=AGENT)
    assert first.status_code == 201, first.text
    again = await client.post(url, json=call, headers=AGENT)
    assert again.status_code == 200 and again.json() == first.json()
    entry = first.json()
    assert (entry["kind"], entry["direction"], entry["duration_seconds"], entry["agent"]) == (
        "call",
        "inbound",
        185,
        "agent-7",
    )
    assert entry["summary"] == "Inbound call, 3:05, agent agent-7."
    recorded = [
        m
        for m in await customer_events(db, c["id"])
        if isinstance(m, profile_pb2.InteractionRecorded)
    ]
    assert len(recorded) == 1
    assert (recorded[0].kind, recorded[0].direction, recorded[0].source, recorded[0].source_id) == (
        "call",
        "inbound",
        "pbx",
        call["source_id"],
    )
    assert recorded[0].entry_id == str(entry["id"]) and dict(recorded[0].attributes) == {
        "queue": "sales"
    }

    # Concurrent deliveries of one new call: one entry, one event.
    burst = {**call, "source_id": unique("call-")}
    results = await asyncio.gather(*(client.post(url, json=burst, headers=AGENT) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [200, 200, 200, 201]
    assert len({r.json()["id"] for r in results}) == 1

    sms = {
        "kind": "sms",
        "direction": "outbound",
        "source": "sms-panel",
        "source_id": "1",
        "occurred_at": "2026-05-02T09:00:00Z",
    }
    assert (await client.post(url, json=sms, headers=MARKETER)).status_code == 201
    # The same id from another source is another entry.
    assert (
        await client.post(url, json={**sms, "source": "pbx"}, headers=MARKETER)
    ).status_code == 201
    # The same (source, source_id) on another customer: 409.
    other = await new_file(client)
    body = assert_problem(
        await client.post(f"/v1/customers/{other['id']}/timeline", json=sms, headers=MARKETER), 409
    )
    assert body["customer_id"] == c["id"]

    # Filters and pages.
    calls = (await client.get(url, params={"kind": "call"}, headers=VIEWER)).json()["items"]
    assert {e["kind"] for e in calls} == {"call"} and len(calls) == 2
    may2 = (
        await client.get(
            url,
            params={"from": "2026-05-02T00:00:00Z", "to": "2026-05-03T00:00:00Z"},
            headers=VIEWER,
        )
    ).json()["items"]
    assert [e["kind"] for e in may2] == ["sms", "sms"]
    page = (await client.get(url, params={"limit": 2}, headers=VIEWER)).json()
    rest = (
        await client.get(url, params={"limit": 2, "cursor": page["next_cursor"]}, headers=VIEWER)
    ).json()
    assert len(page["items"]) == 2 and {e["id"] for e in page["items"]}.isdisjoint(
        {e["id"] for e in rest["items"]}
    )

    body = assert_problem(
        await client.post(url, json={**call, "occurred_at": "2026-05-01T10:00:00"}, headers=AGENT),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/occurred_at"
    body = assert_problem(
        await client.post(url, json={**call, "direction": "sideways"}, headers=AGENT), 422
    )
    assert body["errors"][0]["pointer"] == "/body/direction"
    assert_problem(await client.post(url, json=call, headers=VIEWER), 403)
