"""Duplicates and merges: the review queue (exact and near-duplicates), merge with field-level
survivorship, the ledger, unmerge restoring both files exactly, their events (in the outbox and
on the broker), and merged ids followed by reads and by event handlers."""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from vafa.events.v1 import profile_pb2
from vafa.kit.db import Database
from vafa.kit.settings import ServiceSettings
from vafa.kit.testing.poll import eventually
from vafa.profile.customers import service as customers
from vafa.profile.duplicates import merge as merges
from vafa.profile.duplicates import service as duplicates
from vafa.profile.orders import service as orders
from vafa.profile.orders.service import PurchaseKind
from vafa.profile.timeline import service as timeline

from .factories import make_order, unique
from .test_api import AGENT, MARKETER, VIEWER, assert_problem
from .test_file import customer_events, new_customer
from .test_worker import consume_all

AT = datetime(2026, 4, 1, tzinfo=UTC)


async def paid_order(db: Database, **buyer: Any) -> uuid.UUID:
    async with db.sessionmaker() as s, s.begin():
        row = await orders.record_order_event(
            s,
            kind=PurchaseKind.paid,
            order=make_order(**buyer),
            event_id=unique("e-"),
            occurred_at=AT,
            default_region="IR",
        )
        assert row is not None
        return row.customer_id


async def file(client: httpx.AsyncClient, cid: str) -> dict[str, Any]:
    r = await client.get(f"/v1/customers/{cid}", headers=VIEWER)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def everything(db: Database, cid: str) -> dict[str, Any]:
    """Every row about a file, for exact before/after comparisons."""
    tables = {
        "row": "SELECT to_jsonb(c) - 'updated_at' FROM customers c WHERE id = :id",
        "identities": "SELECT jsonb_agg(to_jsonb(i) ORDER BY i.id) FROM customer_identities i WHERE customer_id = :id",
        "orders": "SELECT jsonb_agg(o.order_ref ORDER BY o.order_ref) FROM orders o WHERE customer_id = :id",
        "timeline": "SELECT jsonb_agg(t.id ORDER BY t.id) FROM timeline_entries t WHERE customer_id = :id",
        "tags": "SELECT jsonb_agg(t.tag ORDER BY t.tag) FROM customer_tags t WHERE customer_id = :id",
        "notes": "SELECT jsonb_agg(n.id ORDER BY n.id) FROM customer_notes n WHERE customer_id = :id",
        "dates": "SELECT jsonb_agg(d.id ORDER BY d.id) FROM effective_dates d WHERE customer_id = :id",
        "consents": "SELECT jsonb_agg(to_jsonb(k) ORDER BY k.channel) FROM consents k WHERE customer_id = :id",
        "consent_changes": "SELECT jsonb_agg(k.id ORDER BY k.id) FROM consent_changes k WHERE customer_id = :id",
    }
    async with db.sessionmaker() as s:
        return {k: await s.scalar(text(q), {"id": uuid.UUID(cid)}) for k, q in tables.items()}


async def rich_pair(client: httpx.AsyncClient, db: Database) -> tuple[str, str]:
    """Two files of one person, each with orders, tags, notes, dates, consents, fields."""
    key = unique("m_")
    await client.post(
        "/v1/custom-fields", json={"key": key, "label": "Genre", "type": "text"}, headers=MARKETER
    )
    mail_a, mail_b = f"{unique()}@example.com", f"{unique()}@example.com"
    a = str(await paid_order(db, email=mail_a, first_name="Sara", last_name="", city="Tehran"))
    b = await new_customer(client, email=mail_b, first_name="Sarah", last_name="Ahmadi")
    b_id = b["id"]
    await client.patch(
        f"/v1/customers/{b_id}",
        json={"city": "Karaj", "custom_fields": {key: "poetry"}, "acquisition_channel": "social"},
        headers=MARKETER,
    )
    await client.patch(f"/v1/customers/{a}", json={"province": "Tehran"}, headers=MARKETER)
    for cid, tags in ((a, ["vip", "early"]), (b_id, ["vip", "poet"])):
        await client.put(f"/v1/customers/{cid}/tags", json={"tags": tags}, headers=MARKETER)
        await client.post(
            f"/v1/customers/{cid}/notes", json={"body": f"note on {cid}"}, headers=MARKETER
        )
        await client.post(
            f"/v1/customers/{cid}/effective-dates",
            json={"kind": "birthday", "calendar": "jalali", "month": 1, "day": 1},
            headers=MARKETER,
        )
    await client.put(
        f"/v1/customers/{a}/consents",
        json={"channel": "sms", "granted": True, "changed_at": "2026-01-01T00:00:00Z"},
        headers=MARKETER,
    )
    await client.put(
        f"/v1/customers/{b_id}/consents",
        json={"channel": "sms", "granted": False, "changed_at": "2026-02-01T00:00:00Z"},
        headers=MARKETER,
    )
    await client.put(
        f"/v1/customers/{b_id}/consents",
        json={"channel": "email", "granted": True, "changed_at": "2025-01-01T00:00:00Z"},
        headers=MARKETER,
    )
    return a, b_id


async def test_merge_and_unmerge_restore_both_files(
    client: httpx.AsyncClient, db: Database
) -> None:
    a, b = await rich_pair(client, db)
    before_a, before_b = await everything(db, a), await everything(db, b)
    file_a, file_b = await file(client, a), await file(client, b)

    r = await client.post(f"/v1/customers/{a}/merge", json={"merged_id": b}, headers=AGENT)
    assert r.status_code == 201, r.text
    merge = r.json()
    assert (merge["survivor_id"], merge["merged_id"], merge["status"]) == (a, b, "merged")
    assert merge["merged_by"] == "staff:a"
    assert merge["survivor_before"]["row"]["id"] == a and merge["merged_before"]["row"]["id"] == b

    merged = await file(client, a)
    # Newest non-empty wins (b was updated last): names and city from b.
    assert (merged["first_name"], merged["last_name"], merged["city"]) == (
        "Sarah",
        "Ahmadi",
        "Karaj",
    )
    assert merged["province"] == "Tehran"  # only a had one
    # The earliest file's creation and acquisition (a came first, with none: b's channel).
    assert merged["created_at"] == file_a["created_at"]
    assert merged["acquisition_channel"] == "social"
    assert merged["kind"] == "customer"
    # Unions.
    assert set(merged["identities"]["emails"]) == set(file_a["identities"]["emails"]) | set(
        file_b["identities"]["emails"]
    )
    assert merged["tags"] == ["early", "poet", "vip"]
    assert len(merged["effective_dates"]) == 2
    assert merged["custom_fields"] == file_b["custom_fields"]
    # Consents: the most recent change per channel.
    consents = {c["channel"]: c["granted"] for c in merged["consents"]}
    assert consents == {"sms": False, "email": True}
    assert merged["order_count"] == file_a["order_count"]
    notes = (await client.get(f"/v1/customers/{a}/notes", headers=VIEWER)).json()
    assert len(notes) == 2

    # The merged id points at the survivor.
    gone = assert_problem(await client.get(f"/v1/customers/{b}", headers=VIEWER), 404)
    assert gone["merged_into"] == a and gone["location"] == f"/v1/customers/{a}"
    assert gone["type"].endswith("/customer-merged")
    assert_problem(
        await client.patch(f"/v1/customers/{b}", json={"city": "x"}, headers=MARKETER), 404
    )
    r = await client.get(
        "/v1/customers/lookup", params={"email": file_b["identities"]["emails"][0]}, headers=VIEWER
    )
    assert r.json()["id"] == a

    events = await customer_events(db, b)
    merged_events = [m for m in events if isinstance(m, profile_pb2.CustomerMerged)]
    assert len(merged_events) == 1
    assert (
        merged_events[0].survivor_id,
        merged_events[0].merged_id,
        merged_events[0].merge_id,
    ) == (a, b, merge["id"])
    snap = [m for m in await customer_events(db, a) if isinstance(m, profile_pb2.CustomerUpdated)][
        -1
    ]
    assert set(snap.customer.emails) == set(merged["identities"]["emails"])
    assert list(snap.customer.tags) == ["early", "poet", "vip"]

    # A second merge of the same files, or into the merged id, is refused.
    assert_problem(
        await client.post(f"/v1/customers/{a}/merge", json={"merged_id": b}, headers=AGENT), 404
    )
    assert_problem(
        await client.post(f"/v1/customers/{a}/merge", json={"merged_id": a}, headers=AGENT), 409
    )
    assert_problem(
        await client.post(f"/v1/customers/{a}/merge", json={"merged_id": b}, headers=VIEWER), 403
    )

    r = await client.post(f"/v1/merges/{merge['id']}/unmerge", headers=AGENT)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "unmerged" and r.json()["unmerged_by"] == "staff:a"
    assert await everything(db, a) == before_a
    assert await everything(db, b) == before_b
    assert (await file(client, b))["identities"] == file_b["identities"]
    assert (await file(client, a))["first_name"] == "Sara"
    unmerged = [
        m for m in await customer_events(db, b) if isinstance(m, profile_pb2.CustomerUnmerged)
    ]
    assert len(unmerged) == 1 and (unmerged[0].restored_id, unmerged[0].survivor_id) == (b, a)
    assert_problem(await client.post(f"/v1/merges/{merge['id']}/unmerge", headers=AGENT), 409)
    ledger = (await client.get(f"/v1/merges/{merge['id']}", headers=VIEWER)).json()
    assert ledger["decisions"]["first_name"].startswith("merged: newest")


async def test_handlers_follow_a_merged_id(client: httpx.AsyncClient, db: Database) -> None:
    a = await new_customer(client)
    b = await new_customer(client)
    r = await client.post(
        f"/v1/customers/{a['id']}/merge", json={"merged_id": b["id"]}, headers=MARKETER
    )
    assert r.status_code == 201
    # Loyalty still speaks of b: the entry lands on a's timeline.
    async with db.sessionmaker() as s, s.begin():
        added = await timeline.record_points(
            s,
            kind="points.earned",
            customer_id=b["id"],
            points=10,
            balance=10,
            reason="order",
            order_ref="",
            entry_id="x",
            occurred_at=AT,
            source_id=unique("pts-"),
        )
    assert added is not None
    assert (await file(client, a["id"]))["timeline"][0]["kind"] == "points.earned"
    # A later order naming b's email is attributed to a.
    cid = await paid_order(db, email=b["identities"]["emails"][0])
    assert str(cid) == a["id"]


async def test_the_duplicate_queue(client: httpx.AsyncClient, db: Database) -> None:
    surname = unique("z")
    # Arabic yeh and kaf against Persian forms, and ZWNJ: the same folded name.
    a = await new_customer(client, first_name="علي", last_name=f"كريمي {surname}")
    b = await new_customer(client, first_name="علی", last_name=f"کریمی {surname}")
    page = (await client.get("/v1/duplicates", params={"limit": 100}, headers=VIEWER)).json()
    pairs = {frozenset((c["customer_a"]["id"], c["customer_b"]["id"])): c for c in page["items"]}
    while page["next_cursor"]:
        page = (
            await client.get(
                "/v1/duplicates",
                params={"limit": 100, "cursor": page["next_cursor"]},
                headers=VIEWER,
            )
        ).json()
        pairs.update(
            {frozenset((c["customer_a"]["id"], c["customer_b"]["id"])): c for c in page["items"]}
        )
    candidate = pairs[frozenset((a["id"], b["id"]))]
    assert candidate["reason"] == "similar_name" and candidate["score"] > 0.7
    assert candidate["details"]["name_similarity"] == 1.0

    # Exact: one order names a's email and b's phone.
    phone = "0912" + str(uuid.uuid4().int)[:7]
    r = await client.post(
        f"/v1/customers/{b['id']}/identities",
        json={"kind": "phone", "value": phone},
        headers=MARKETER,
    )
    assert r.status_code == 201
    c = await new_customer(client, first_name=unique("x"), last_name=unique("y"))
    await paid_order(db, email=c["identities"]["emails"][0], phone=phone)
    async with db.sessionmaker() as s:
        reason = await s.scalar(
            text(
                "SELECT reason FROM duplicate_candidates WHERE customer_a = :a AND customer_b = :b"
            ),
            dict(zip(("a", "b"), sorted((uuid.UUID(b["id"]), uuid.UUID(c["id"]))), strict=True)),
        )
    assert reason == "shared_identity"

    # Dismissed: gone from the open queue, never suggested again.
    r = await client.post(f"/v1/duplicates/{candidate['id']}/dismiss", headers=AGENT)
    assert r.json()["status"] == "dismissed" and r.json()["resolved_by"] == "staff:a"
    r = await client.post("/v1/duplicates/scan", json={"customer_id": a["id"]}, headers=AGENT)
    assert candidate["id"] not in {x["id"] for x in r.json()}
    assert_problem(
        await client.post(f"/v1/duplicates/{candidate['id']}/merge", json={}, headers=AGENT), 409
    )

    # Merged from the queue: the older file survives.
    async with db.sessionmaker() as s:
        exact_id = await s.scalar(
            text(
                "SELECT id FROM duplicate_candidates WHERE reason = 'shared_identity' AND (customer_a = :b OR customer_b = :b)"
            ),
            {"b": uuid.UUID(b["id"])},
        )
    r = await client.post(f"/v1/duplicates/{exact_id}/merge", json={}, headers=AGENT)
    assert r.status_code == 201, r.text
    assert r.json()["survivor_id"] == b["id"] and r.json()["merged_id"] == c["id"]
    merged_page = (
        await client.get(
            "/v1/duplicates", params={"status": "merged", "limit": 100}, headers=VIEWER
        )
    ).json()
    assert exact_id in {x["id"] for x in merged_page["items"]} or merged_page["next_cursor"]


async def test_concurrent_merges_of_one_file_merge_it_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    a, b, c = [await new_customer(client) for _ in range(3)]
    results = await asyncio.gather(
        client.post(f"/v1/customers/{a['id']}/merge", json={"merged_id": c["id"]}, headers=AGENT),
        client.post(f"/v1/customers/{b['id']}/merge", json={"merged_id": c["id"]}, headers=AGENT),
    )
    assert sorted(r.status_code for r in results) == [201, 404]
    async with db.sessionmaker() as s:
        n = await s.scalar(
            text("SELECT count(*) FROM merges WHERE merged_id = :c"), {"c": uuid.UUID(c["id"])}
        )
    assert n == 1


async def test_merge_events_reach_the_broker(
    client: httpx.AsyncClient, db: Database, settings: ServiceSettings, worker: asyncio.Event
) -> None:
    a = await new_customer(client)
    b = await new_customer(client)
    merge = (
        await client.post(
            f"/v1/customers/{a['id']}/merge", json={"merged_id": b["id"]}, headers=AGENT
        )
    ).json()
    await client.post(f"/v1/merges/{merge['id']}/unmerge", headers=AGENT)

    async def published() -> list[Any]:
        envelopes = await consume_all(settings, "profile.customers.v1", idle=1.0)
        found = [
            e.message
            for e in envelopes
            if isinstance(e.message, profile_pb2.CustomerMerged | profile_pb2.CustomerUnmerged)
            and e.message.merge_id == merge["id"]
        ]
        return found if len(found) == 2 else []

    got = await eventually(published, within=40, what="CustomerMerged and CustomerUnmerged")
    assert [type(m).__name__ for m in got] == ["CustomerMerged", "CustomerUnmerged"]


async def test_files_opened_by_orders_are_scanned_later(
    client: httpx.AsyncClient, db: Database
) -> None:
    surname = unique("q")
    start = datetime.now(UTC)
    a = await paid_order(
        db, email=f"{unique()}@example.com", first_name="Narek", last_name=f"Hakobyan{surname}"
    )
    b = await paid_order(
        db, email=f"{unique()}@example.com", first_name="NAREK", last_name=f"Hakobyan{surname}"
    )
    async with db.sessionmaker() as s, s.begin():
        queued = await duplicates.scan_recent(s, since=start, threshold=0.6)
    assert queued >= 1
    async with db.sessionmaker() as s:
        reason = await s.scalar(
            text(
                "SELECT reason FROM duplicate_candidates WHERE customer_a = :a AND customer_b = :b"
            ),
            dict(zip(("a", "b"), sorted((a, b)), strict=True)),
        )
    assert reason == "similar_name"


async def apply_with_retries(db: Database, events: list[orders.OrderEvent]) -> int:
    """Applies the events as the consumer does: rolled back and retried on MergedMeanwhile.
    Returns the attempts it took."""
    for attempt in range(1, 6):
        try:
            async with db.sessionmaker() as s, s.begin():
                await orders.apply_order_events(s, events, default_region="IR")
            return attempt
        except customers.MergedMeanwhile:
            continue
    raise AssertionError("never applied")


async def test_order_events_during_a_merge_end_on_the_survivor(db: Database) -> None:
    """An uncommitted merge holds both files; order events about the merged file wait for it
    (no deadlock), and end on the survivor: an event for an order the merge moved re-reads it;
    an event that read the old holder of an email retries once."""
    mail_b = f"{unique()}@example.com"
    existing = make_order(email=mail_b)
    a = await paid_order(db, email=f"{unique()}@example.com")
    async with db.sessionmaker() as s, s.begin():
        row = await orders.record_order_event(
            s,
            kind=PurchaseKind.placed,
            order=existing,
            event_id=unique("e-"),
            occurred_at=AT,
            default_region="IR",
        )
        assert row is not None
        b = row.customer_id
    new_order = make_order(email=mail_b)

    async with db.sessionmaker() as merging:
        await merging.begin()
        await merges.merge(merging, survivor_id=a, merged_id=b, by="test")
        moved = asyncio.create_task(
            apply_with_retries(
                db, [orders.OrderEvent(PurchaseKind.paid, existing, unique("e-"), AT)]
            )
        )
        fresh = asyncio.create_task(
            apply_with_retries(
                db, [orders.OrderEvent(PurchaseKind.placed, new_order, unique("e-"), AT)]
            )
        )
        await asyncio.sleep(1.0)
        assert not moved.done() and not fresh.done()  # both wait for the merge
        await merging.commit()
    assert await asyncio.wait_for(moved, 30) == 1
    assert await asyncio.wait_for(fresh, 30) == 2  # read b as the holder, retried
    async with db.sessionmaker() as s:
        for ref in (existing.order_ref, new_order.order_ref):
            assert (
                await s.scalar(
                    text("SELECT customer_id FROM orders WHERE order_ref = :r"), {"r": ref}
                )
                == a
            )
