"""The segments API on the real app, database and broker: definitions rejected with pointers to
the offending node, cycles and references, the segment lifecycle with its memberships, history
and events read back from Kafka, preview, explanation, templates, static CSV uploads."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select, text

from vafa.events.v1 import segmentation_pb2 as pb
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.settings import ServiceSettings
from vafa.kit.testing.plugin import principal_headers
from vafa.segmentation.models import Membership, Segment
from vafa.segmentation.segments.evaluation import reevaluate_customers

from .segments_fixtures import customer, identity, purchase, set_features, unique

MARKETER = principal_headers("staff", "m", "marketer")
VIEWER = principal_headers("staff", "v", "viewer")


def f(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


async def create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    body.setdefault("key", unique("seg-"))
    body.setdefault("name", body["key"])
    return await client.post("/v1/segments", json=body, headers=MARKETER)


async def pointers(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [e["pointer"] for e in r.json()["errors"]]


async def test_invalid_definitions_point_at_the_node(client: httpx.AsyncClient) -> None:
    bad = {
        "all": [
            f("orders_count", "gte", 1),
            f("no_such_feature", "eq", 1),
            f("city", "gt", "Tehran"),  # a text has no order
            f("orders_count", "gte", "five"),
            {"rfm": ["champions", "heroes"]},
            {"segment": "no-such-segment"},
            {"purchased": {"brand": "x"}, "op": "between", "value": [5, 1]},
            {"field": "tags", "op": "contains", "value": "a", "rfm": ["lost"]},
            f("last_order_at", "in_last_days", -3),
            f("custom_fields.club", "gt", "a"),
            {"bucket": {"salt": "s", "from": 60, "to": 10}},
        ]
    }
    r = await create(client, definition=bad)
    assert await pointers(r) == [
        "/body/definition/all/1/field",
        "/body/definition/all/2/op",
        "/body/definition/all/3/value",
        "/body/definition/all/4/rfm/1",
        "/body/definition/all/5/segment",
        "/body/definition/all/6/value",
        "/body/definition/all/7",
        "/body/definition/all/8/value",
        "/body/definition/all/9/op",
        "/body/definition/all/10/bucket/from",
    ]
    assert r.json()["detail"].startswith("/body/definition/all/1/field: unknown field")
    # Too deep.
    deep: dict[str, Any] = f("orders_count", "gte", 1)
    for _ in range(15):
        deep = {"not": deep}
    assert (await pointers(await create(client, definition=deep)))[0].startswith(
        "/body/definition/not/not"
    )
    # Not an object; a dynamic segment without one; a static one with one.
    assert await pointers(await create(client, definition=[1])) == ["/body/definition"]
    assert await pointers(await create(client)) == ["/body/definition"]
    assert await pointers(await create(client, kind="static", definition=f("city", "eq", "x"))) == [
        "/body/definition"
    ]
    # The preview validates the same way.
    r = await client.post(
        "/v1/segments/preview", json={"definition": {"not": f("x", "eq", 1)}}, headers=MARKETER
    )
    assert await pointers(r) == ["/body/definition/not/field"]


async def test_cycles_self_references_archived_references(client: httpx.AsyncClient) -> None:
    key_a, key_b = unique("a-"), unique("b-")
    r = await create(client, key=key_a, definition={"segment": key_a})
    assert await pointers(r) == ["/body/definition/segment"]
    assert "itself" in r.json()["errors"][0]["detail"]
    a = (await create(client, key=key_a, definition=f("tags", "contains", unique()))).json()
    b = (await create(client, key=key_b, definition={"any": [{"segment": key_a}]})).json()
    # A → B → A.
    r = await client.patch(
        f"/v1/segments/{a['id']}",
        json={"definition": {"all": [f("orders_count", "gte", 0), {"segment": key_b}]}},
        headers=MARKETER,
    )
    assert await pointers(r) == ["/body/definition/all/1/segment"]
    assert f"{key_a} → {key_b} → {key_a}" in r.json()["errors"][0]["detail"]
    # A is used by B: it cannot be archived.
    r = await client.delete(f"/v1/segments/{a['id']}", headers=MARKETER)
    assert r.status_code == 409 and r.json()["referenced_by"] == [key_b], r.text
    assert (await client.delete(f"/v1/segments/{b['id']}", headers=MARKETER)).status_code == 200
    assert (await client.delete(f"/v1/segments/{a['id']}", headers=MARKETER)).status_code == 200
    r = await create(client, definition={"not": {"segment": key_a}})
    assert await pointers(r) == ["/body/definition/not/segment"]
    assert "archived" in r.json()["errors"][0]["detail"]
    # Keys are unique, archived or not.
    assert (await create(client, key=key_a, definition=f("city", "eq", "x"))).status_code == 409


async def read_events(settings: ServiceSettings, keys: set[str], *, want: int) -> list[Any]:
    """The run's segmentation.memberships.v1 records with these keys, from the beginning."""
    consumer = AIOKafkaConsumer(
        settings.kafka.topic("segmentation.memberships.v1"),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"test-{uuid.uuid4().hex}",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        quiet_until = None
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    if r.key.decode() in keys:
                        out.append(cloudevents.decode(r.headers, r.value).message)
            if len(out) >= want and quiet_until is None:
                # A duplicate would arrive right behind.
                quiet_until = asyncio.get_running_loop().time() + 1.5
            if quiet_until is not None and asyncio.get_running_loop().time() > quiet_until:
                break
    finally:
        await consumer.stop()
    return out


async def test_lifecycle_with_events_on_the_broker(
    client: httpx.AsyncClient, db: Database, settings: ServiceSettings, worker: asyncio.Event
) -> None:
    genre = unique("genre-")
    async with db.sessionmaker() as s, s.begin():
        fan = await customer(s, city="Shiraz", orders_count=2)
        await purchase(s, fan, category=genre, at=datetime.now(UTC) - timedelta(days=3))
        await purchase(s, fan, category=genre, at=datetime.now(UTC) - timedelta(days=40))
        casual = await customer(s, orders_count=1)
        await purchase(s, casual, category=genre, at=datetime.now(UTC) - timedelta(days=2))
        other = await customer(s)
    ids = {fan, casual, other}
    definition = {"purchased": {"category": genre}, "value": 2}
    r = await create(client, definition=definition, name="Fantasy readers")
    assert r.status_code == 201, r.text
    seg = r.json()
    assert (seg["version"], seg["member_count"], seg["kind"]) == (1, 1, "dynamic")
    assert seg["versions"][0]["definition"]["measure"] == "count"  # stored canonical
    sid = seg["id"]

    listed = (await client.get("/v1/segments", headers=VIEWER)).json()
    assert any(s["id"] == sid and s["member_count"] == 1 for s in listed)
    members = (await client.get(f"/v1/segments/{sid}/members", headers=VIEWER)).json()
    assert [m["customer_id"] for m in members["items"]] == [str(fan)]

    # An order moves `casual` in (the features consumer's part, done by hand here).
    async with db.sessionmaker() as s, s.begin():
        await purchase(s, casual, category=genre)
        await set_features(s, casual, orders_count=2)
        await reevaluate_customers(s, customer_ids=[casual], now=datetime.now(UTC), cause="event")
        # Delivered twice: no second effect.
        await reevaluate_customers(s, customer_ids=[casual], now=datetime.now(UTC), cause="event")

    # A new definition: a new version, fully re-evaluated (fan's older order leaves the window).
    r = await client.patch(
        f"/v1/segments/{sid}",
        json={"definition": {**definition, "within_days": 30}},
        headers=MARKETER,
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and len(r.json()["versions"]) == 2
    assert r.json()["member_count"] == 1

    mine = (await client.get(f"/v1/customers/{fan}/segments", headers=VIEWER)).json()
    assert mine["current"] == [] and mine["past"][0]["segment_id"] == sid
    assert mine["past"][0]["exited_cause"] == "evaluation"
    hist = (
        await client.get(f"/v1/segments/{sid}/history", params={"limit": 1}, headers=VIEWER)
    ).json()
    assert len(hist["items"]) == 1 and hist["next_cursor"]
    rest = (
        await client.get(
            f"/v1/segments/{sid}/history",
            params={"limit": 10, "cursor": hist["next_cursor"]},
            headers=VIEWER,
        )
    ).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    only_fan = (
        await client.get(
            f"/v1/segments/{sid}/history", params={"customer_id": str(fan)}, headers=VIEWER
        )
    ).json()
    assert [(h["entered_cause"], h["exited_cause"]) for h in only_fan["items"]] == [
        ("evaluation", "evaluation")
    ]

    ev = (await client.post(f"/v1/segments/{sid}/evaluate", headers=MARKETER)).json()
    assert (ev["entered"], ev["exited"]) == (0, 0)

    r = await client.delete(f"/v1/segments/{sid}", headers=MARKETER)
    assert r.status_code == 200 and r.json()["archived"] and r.json()["member_count"] == 0

    events = await read_events(settings, {str(c) for c in ids} | {sid}, want=6)
    seen = [
        (type(e).__name__, getattr(e, "customer_id", ""), e.cause if hasattr(e, "cause") else None)
        for e in events
    ]
    assert seen.count(("SegmentEntered", str(fan), pb.MEMBERSHIP_CAUSE_EVALUATION)) == 1
    assert seen.count(("SegmentExited", str(fan), pb.MEMBERSHIP_CAUSE_EVALUATION)) == 1
    assert seen.count(("SegmentEntered", str(casual), pb.MEMBERSHIP_CAUSE_EVENT)) == 1
    assert seen.count(("SegmentExited", str(casual), pb.MEMBERSHIP_CAUSE_REMOVED)) == 1
    assert not [e for e in seen if e[1] == str(other)]
    published = [e for e in events if isinstance(e, pb.SegmentPublished)]
    assert [(p.segment_version, p.archived) for p in published] == [
        (1, False),
        (2, False),
        (2, True),
    ]
    assert published[0].segment_name == "Fantasy readers" and published[0].member_count == 1


async def test_preview_explain_fields_and_auth(client: httpx.AsyncClient, db: Database) -> None:
    city = unique("city-")
    async with db.sessionmaker() as s, s.begin():
        yes = await customer(s, city=city, orders_count=4, tags=["vip"])
        no = await customer(s, city=city, orders_count=1)
    definition = {"all": [f("city", "eq", city), {"not": f("orders_count", "lt", 3)}]}
    async with db.sessionmaker() as s:
        before = await s.scalar(select(func.count()).select_from(Membership))
    r = await client.post("/v1/segments/preview", json={"definition": definition}, headers=VIEWER)
    assert r.json() == {"count": 1, "sample": [str(yes)]}
    async with db.sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(Membership)) == before

    seg = (await create(client, definition=definition)).json()
    for who, verdict in ((yes, True), (no, False)):
        x = (await client.get(f"/v1/segments/{seg['id']}/explain/{who}", headers=VIEWER)).json()
        assert x["verdict"] is verdict and x["member"] is verdict and x["known"]
        assert (x["member_since"] is not None) is verdict
        tree = x["tree"]
        assert tree["kind"] == "all" and tree["result"] is verdict
        city_node, not_node = tree["children"]
        assert city_node["path"] == "/all/0" and city_node["seen"] == city and city_node["result"]
        assert not_node["children"][0]["seen"] == (4 if verdict else 1)
        assert not_node["children"][0]["result"] is not verdict
    unknown = (
        await client.get(f"/v1/segments/{seg['id']}/explain/{uuid.uuid4()}", headers=VIEWER)
    ).json()
    assert unknown["known"] is False and unknown["verdict"] is False

    catalogue = (await client.get("/v1/segments/fields", headers=VIEWER)).json()
    by_name = {x["name"]: x for x in catalogue["fields"]}
    assert by_name["last_order_at"]["type"] == "datetime"
    assert "in_last_days" in by_name["last_order_at"]["operators"]
    assert by_name["total_spent"]["type"] == "money"
    assert by_name["tags"]["operators"] == ["contains", "in", "exists"]
    assert "custom_fields.<key>" in by_name and "customer_id" not in by_name
    assert "champions" in catalogue["rfm_segments"]

    assert (await create_as(client, VIEWER)).status_code == 403
    assert (await client.get("/v1/segments")).status_code == 401
    assert (await client.get(f"/v1/segments/{uuid.uuid4()}", headers=VIEWER)).status_code == 404


async def create_as(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    body = {"key": unique("x-"), "name": "x", "definition": f("city", "eq", "x")}
    return await client.post("/v1/segments", json=body, headers=headers)


async def test_templates(client: httpx.AsyncClient, db: Database) -> None:
    listed = (await client.get("/v1/segment-templates", headers=VIEWER)).json()
    keys = {t["key"] for t in listed}
    assert {
        "brand-loyal",
        "discount-only",
        "seasonal-shoppers",
        "special-day-shoppers",
        "influencers-referrers",
        "high-value",
        "low-value",
        "category-affinity",
    } <= keys
    # Every template's example makes a valid definition (validated as any other).
    for t in listed:
        r = await client.post(
            "/v1/segments/preview", json={"definition": t["example_definition"]}, headers=VIEWER
        )
        assert r.status_code == 200, (t["key"], r.text)

    category = unique("fantasy-")
    async with db.sessionmaker() as s, s.begin():
        reader = await customer(s)
        for _ in range(2):
            await purchase(s, reader, category=category)
        once = await customer(s)
        await purchase(s, once, category=category)
    r = await create(
        client,
        template="category-affinity",
        parameters={"category": category, "min_orders": 2},
    )
    assert r.status_code == 201, r.text
    assert r.json()["template"] == "category-affinity" and r.json()["member_count"] == 1
    members = (await client.get(f"/v1/segments/{r.json()['id']}/members", headers=VIEWER)).json()
    assert [m["customer_id"] for m in members["items"]] == [str(reader)]

    r = await create(client, template="category-affinity", parameters={"min_orders": 0})
    assert sorted(await pointers(r)) == ["/body/parameters/category", "/body/parameters/min_orders"]
    r = await create(client, template="no-such-template")
    assert await pointers(r) == ["/body/template"]


async def test_static_segment_csv(client: httpx.AsyncClient, db: Database) -> None:
    mail = f"{unique()}@example.com"
    phone = "+98912" + str(uuid.uuid4().int)[:7]
    async with db.sessionmaker() as s, s.begin():
        by_id = await customer(s)
        by_mail = await customer(s)
        by_phone = await customer(s)
        await identity(s, mail, by_mail)
        await identity(s, phone, by_phone)
    local = "۰" + phone[3:].translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    seg = (await create(client, kind="static")).json()
    # A dynamic segment built on the static one follows its uploads.
    dyn = (await create(client, definition={"segment": seg["key"]})).json()
    csv = (
        "customer_id,email,phone\n"
        f"{by_id},,\n"
        f",{mail.upper()},\n"
        f",,{local}\n"
        ",,12\n"
        f"{uuid.uuid4()},,\n"
        ",nobody@example.com,\n"
        "\n"
    )
    r = await client.post(
        f"/v1/segments/{seg['id']}/members/import",
        content=csv.encode(),
        headers={**MARKETER, "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["rows"], body["matched"], body["added"], body["removed"]) == (6, 3, 3, 0)
    assert [(x["line"], x["column"]) for x in body["rejected"]] == [
        (5, "phone"),
        (6, "customer_id"),
        (7, "email"),
    ]
    assert body["rejected"][0]["detail"] == "not a valid phone"
    assert body["rejected"][1]["detail"] == "no such customer"
    got = (await client.get(f"/v1/segments/{dyn['id']}", headers=VIEWER)).json()
    assert got["member_count"] == 3
    async with db.sessionmaker() as s:
        dyn_members = set(
            await s.scalars(
                select(Membership.customer_id).where(
                    Membership.segment_id == uuid.UUID(dyn["id"]), Membership.exited_at.is_(None)
                )
            )
        )
    assert dyn_members == {by_id, by_mail, by_phone}

    # Replace with one row: the other two exit (cause upload); a second upload adds nothing.
    for _ in range(2):
        r = await client.post(
            f"/v1/segments/{seg['id']}/members/import",
            params={"mode": "replace"},
            content=f"email\n{mail}\n".encode(),
            headers={**MARKETER, "content-type": "text/csv"},
        )
    assert (r.json()["added"], r.json()["removed"]) == (0, 0)
    members = (await client.get(f"/v1/segments/{seg['id']}/members", headers=VIEWER)).json()
    assert [m["customer_id"] for m in members["items"]] == [str(by_mail)]
    r = await client.delete(f"/v1/segments/{seg['id']}/members/{by_mail}", headers=MARKETER)
    assert r.status_code == 204
    r = await client.delete(f"/v1/segments/{seg['id']}/members/{by_mail}", headers=MARKETER)
    assert r.status_code == 404
    async with db.sessionmaker() as s:
        causes = (
            await s.execute(
                select(Membership.exited_cause, func.count())
                .where(Membership.segment_id == uuid.UUID(seg["id"]))
                .group_by(Membership.exited_cause)
            )
        ).all()
        count = await s.scalar(
            select(Segment.member_count).where(Segment.id == uuid.UUID(seg["id"]))
        )
        outbox = await s.scalar(
            text("SELECT count(*) FROM outbox WHERE key = :k"), {"k": str(by_mail)}
        )
    assert dict(causes) == {"upload": 3}
    assert count == 0
    # by_mail: entered and exited the static list and the dynamic segment.
    assert outbox == 4

    r = await client.post(
        f"/v1/segments/{seg['id']}/members/import",
        content=b"name\nx\n",
        headers={**MARKETER, "content-type": "text/csv"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["line"] == 1
