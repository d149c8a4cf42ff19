"""The customer file: attributes and custom fields validated on write, tags and the tag cloud,
notes, identities added and removed, lead versus customer."""

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import text

from vafa.events.v1 import profile_pb2
from vafa.kit.db import Database
from vafa.profile.orders import service as orders
from vafa.profile.orders.service import PurchaseKind

from .factories import make_order, unique
from .test_api import MARKETER, PROBLEM, VIEWER, assert_problem, random_phone
from .test_orders import outbox_messages


async def new_customer(client: httpx.AsyncClient, **body: object) -> dict:  # type: ignore[type-arg]
    body.setdefault("email", f"{unique()}@example.com")
    body.setdefault("first_name", unique("n"))
    body.setdefault("last_name", unique("f"))
    r = await client.post("/v1/customers", json=body, headers=MARKETER)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def customer_events(db: Database, cid: str) -> list:  # type: ignore[type-arg]
    async with db.sessionmaker() as s:
        return await outbox_messages(s, cid)


async def define(
    client: httpx.AsyncClient, key: str, type_: str, options: list[str] | None = None
) -> None:
    r = await client.post(
        "/v1/custom-fields",
        json={"key": key, "label": key.title(), "type": type_, "options": options or []},
        headers=MARKETER,
    )
    assert r.status_code == 201, r.text


async def test_custom_fields_are_validated_on_write(
    client: httpx.AsyncClient, db: Database
) -> None:
    p = unique("f_")
    await define(client, f"{p}_genre", "picklist", ["fantasy", "crime", "poetry"])
    await define(client, f"{p}_tastes", "multi_picklist", ["tea", "coffee"])
    await define(client, f"{p}_children", "number")
    await define(client, f"{p}_vip", "boolean")
    await define(client, f"{p}_since", "date")
    await define(client, f"{p}_nick", "text")
    c = await new_customer(client)

    good = {
        f"{p}_genre": "poetry",
        f"{p}_tastes": ["tea", "coffee", "tea"],
        f"{p}_children": "۳",  # Persian digits from a form
        f"{p}_vip": True,
        f"{p}_since": "2024-03-20",
        f"{p}_nick": "  Sari ",
    }
    r = await client.patch(
        f"/v1/customers/{c['id']}", json={"custom_fields": good}, headers=MARKETER
    )
    assert r.status_code == 200, r.text
    assert r.json()["custom_fields"] == {
        f"{p}_genre": "poetry",
        f"{p}_tastes": ["tea", "coffee"],
        f"{p}_children": 3,
        f"{p}_vip": True,
        f"{p}_since": "2024-03-20",
        f"{p}_nick": "Sari",
    }
    updated = [
        m for m in await customer_events(db, c["id"]) if isinstance(m, profile_pb2.CustomerUpdated)
    ]
    assert list(updated[-1].changed_fields) == ["custom_fields"]
    assert updated[-1].customer.custom_fields[f"{p}_tastes"] == '["tea", "coffee"]'
    assert updated[-1].customer.custom_fields[f"{p}_children"] == "3"

    # Every wrong value is named by its pointer; nothing is written.
    bad = {
        f"{p}_genre": "jazz",
        f"{p}_children": True,
        f"{p}_vip": "yes",
        f"{p}_since": "1403-13-01",
        f"{p}_tastes": ["tea", "milk"],
        "no_such_field": 1,
    }
    r = await client.patch(
        f"/v1/customers/{c['id']}",
        json={"first_name": "Changed", "custom_fields": bad},
        headers=MARKETER,
    )
    body = assert_problem(r, 422)
    assert {e["pointer"] for e in body["errors"]} == {f"/body/custom_fields/{k}" for k in bad}
    genre = next(e for e in body["errors"] if e["pointer"].endswith("_genre"))
    assert "fantasy, crime, poetry" in genre["detail"]
    after = (await client.get(f"/v1/customers/{c['id']}", headers=VIEWER)).json()
    assert (
        after["first_name"] == c["first_name"] and after["custom_fields"][f"{p}_genre"] == "poetry"
    )

    # null removes one value; a deleted definition takes its values with it.
    r = await client.patch(
        f"/v1/customers/{c['id']}", json={"custom_fields": {f"{p}_nick": None}}, headers=MARKETER
    )
    assert f"{p}_nick" not in r.json()["custom_fields"]
    assert (await client.delete(f"/v1/custom-fields/{p}_vip", headers=MARKETER)).status_code == 204
    after = (await client.get(f"/v1/customers/{c['id']}", headers=VIEWER)).json()
    assert f"{p}_vip" not in after["custom_fields"]


async def test_custom_field_definitions(client: httpx.AsyncClient) -> None:
    key = unique("k_")
    await define(client, key, "picklist", ["a", "b"])
    assert_problem(
        await client.post(
            "/v1/custom-fields",
            json={"key": key, "label": "Again", "type": "text"},
            headers=MARKETER,
        ),
        409,
    )
    body = assert_problem(
        await client.post(
            "/v1/custom-fields",
            json={"key": "Bad Key", "label": "x", "type": "text"},
            headers=MARKETER,
        ),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/key"
    assert_problem(
        await client.post(
            "/v1/custom-fields",
            json={"key": unique("k_"), "label": "x", "type": "picklist"},
            headers=MARKETER,
        ),
        422,
    )
    r = await client.patch(
        f"/v1/custom-fields/{key}", json={"options": ["a", "b", "c"]}, headers=MARKETER
    )
    assert r.json()["options"] == ["a", "b", "c"]
    listed = (await client.get("/v1/custom-fields", headers=VIEWER)).json()
    assert key in {f["key"] for f in listed}
    # Viewers read, never define.
    assert_problem(
        await client.post(
            "/v1/custom-fields",
            json={"key": unique("k_"), "label": "x", "type": "text"},
            headers=VIEWER,
        ),
        403,
    )


async def test_demographics_and_jalali_birth_date(client: httpx.AsyncClient, db: Database) -> None:
    c = await new_customer(client)
    r = await client.patch(
        f"/v1/customers/{c['id']}",
        json={
            "birth_date": "۱۳۷۰/۰۱/۰۱",
            "gender": "female",
            "province": "Tehran",
            "education": "master",
            "personality_type": "INFJ",
            "acquisition_channel": "social",
        },
        headers=MARKETER,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["birth_date"] == "1991-03-21"  # 1 Farvardin 1370
    assert (body["gender"], body["province"], body["acquisition_channel"]) == (
        "female",
        "Tehran",
        "social",
    )
    snap = [
        m for m in await customer_events(db, c["id"]) if isinstance(m, profile_pb2.CustomerUpdated)
    ][-1]
    assert snap.customer.birth_date == "1991-03-21" and snap.customer.personality_type == "INFJ"
    body = assert_problem(
        await client.patch(f"/v1/customers/{c['id']}", json={"gender": "x"}, headers=MARKETER), 422
    )
    assert body["errors"][0]["pointer"] == "/body/gender"
    body = assert_problem(
        await client.patch(
            f"/v1/customers/{c['id']}", json={"birth_date": "1404-12-30"}, headers=MARKETER
        ),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/birth_date"


async def test_tags_and_the_tag_cloud(client: httpx.AsyncClient, db: Database) -> None:
    tag, other = unique("vip-"), unique("خوش‌حساب-")
    a, b = await new_customer(client), await new_customer(client)
    r = await client.put(
        f"/v1/customers/{a['id']}/tags", json={"tags": [tag, f"  {other} ", tag]}, headers=MARKETER
    )
    assert sorted(r.json()) == sorted([tag, other])
    r = await client.post(f"/v1/customers/{b['id']}/tags", json={"tags": [tag]}, headers=MARKETER)
    assert r.json() == [tag]
    cloud = {
        t["tag"]: t["count"]
        for t in (await client.get("/v1/tags", params={"limit": 1000}, headers=VIEWER)).json()
    }
    assert cloud[tag] == 2 and cloud[other] == 1
    r = await client.delete(f"/v1/customers/{a['id']}/tags/{tag}", headers=MARKETER)
    assert r.json() == [other]
    cloud = {
        t["tag"]: t["count"]
        for t in (await client.get("/v1/tags", params={"limit": 1000}, headers=VIEWER)).json()
    }
    assert cloud[tag] == 1
    snap = [
        m for m in await customer_events(db, a["id"]) if isinstance(m, profile_pb2.CustomerUpdated)
    ][-1]
    assert list(snap.customer.tags) == [other] and list(snap.changed_fields) == ["tags"]
    body = assert_problem(
        await client.post(
            f"/v1/customers/{a['id']}/tags", json={"tags": ["x" * 65]}, headers=MARKETER
        ),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/tags"


async def test_notes_have_author_and_time(client: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    r = await client.post(
        f"/v1/customers/{c['id']}/notes", json={"body": "Prefers calls after 5pm"}, headers=MARKETER
    )
    assert r.status_code == 201, r.text
    assert r.json()["author"] == "staff:m"
    await client.post(f"/v1/customers/{c['id']}/notes", json={"body": "Second"}, headers=MARKETER)
    notes = (await client.get(f"/v1/customers/{c['id']}/notes", headers=VIEWER)).json()
    assert [n["body"] for n in notes] == ["Second", "Prefers calls after 5pm"]


async def test_identities_added_and_removed(client: httpx.AsyncClient, db: Database) -> None:
    a, b = await new_customer(client), await new_customer(client)
    url = f"/v1/customers/{a['id']}/identities"
    r = await client.post(url, json={"kind": "phone", "value": "۰۹۱۲ ۳۳۳ ۴۴۵۵"}, headers=MARKETER)
    assert r.status_code == 201, r.text
    assert "+989123334455" in r.json()["phones"]
    # The same again: 200, nothing new.
    r = await client.post(
        url, json={"kind": "phone", "value": "+98 912 333 4455"}, headers=MARKETER
    )
    assert r.status_code == 200
    r = await client.post(
        url,
        json={"kind": "phone", "value": "+374 10 123456", "country_code": "AM"},
        headers=MARKETER,
    )
    assert r.status_code == 201 and "+37410123456" in r.json()["phones"]
    r = await client.post(
        url, json={"kind": "shop", "value": "shopify:Demo.myshopify.com:42"}, headers=MARKETER
    )
    assert r.json()["shop_ids"] == ["shopify:demo.myshopify.com:42"]
    # An unparseable phone names the field.
    body = assert_problem(
        await client.post(url, json={"kind": "phone", "value": "12ab"}, headers=MARKETER), 422
    )
    assert body["errors"][0]["pointer"] == "/body/value"
    assert body["errors"][0]["type"] == "value_error.phone"
    body = assert_problem(
        await client.post(url, json={"kind": "email", "value": "nope"}, headers=MARKETER), 422
    )
    assert body["errors"][0]["pointer"] == "/body/value"
    # Another file's email: 409 naming that file.
    body = assert_problem(
        await client.post(
            url,
            json={"kind": "email", "value": b["identities"]["emails"][0].upper()},
            headers=MARKETER,
        ),
        409,
    )
    assert body["customer_id"] == b["id"]
    # Removed by any form of the value.
    r = await client.delete(url, params={"kind": "phone", "value": "09123334455"}, headers=MARKETER)
    assert r.status_code == 204
    assert_problem(
        await client.delete(
            url, params={"kind": "phone", "value": "09123334455"}, headers=MARKETER
        ),
        404,
    )
    got = (await client.get(f"/v1/customers/{a['id']}", headers=VIEWER)).json()["identities"]
    assert got["phones"] == ["+37410123456"]
    snap = [
        m for m in await customer_events(db, a["id"]) if isinstance(m, profile_pb2.CustomerUpdated)
    ][-1]
    assert list(snap.customer.phones) == ["+37410123456"] and list(snap.changed_fields) == [
        "phones"
    ]
    r = await client.get("/v1/customers/lookup", params={"phone": "+37410123456"}, headers=VIEWER)
    assert r.json()["id"] == a["id"]


async def test_a_lead_becomes_a_customer_at_the_first_paid_order(
    client: httpx.AsyncClient, db: Database
) -> None:
    mail = f"{unique()}@example.com"
    lead = await new_customer(
        client, email=mail, acquisition_channel="campaign", acquisition_campaign="NOWRUZ"
    )
    assert (lead["kind"], lead["lifecycle_stage"]) == ("lead", "lead")
    order = make_order(email=mail)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    async with db.sessionmaker() as s, s.begin():
        await orders.record_order_event(
            s,
            kind=PurchaseKind.placed,
            order=order,
            event_id=unique("e-"),
            occurred_at=at,
            default_region="IR",
        )
    placed = (await client.get(f"/v1/customers/{lead['id']}", headers=VIEWER)).json()
    # An order was placed: a customer in the lifecycle, still a lead until it is paid.
    assert (placed["kind"], placed["lifecycle_stage"]) == ("lead", "customer")
    async with db.sessionmaker() as s, s.begin():
        await orders.record_order_event(
            s,
            kind=PurchaseKind.paid,
            order=order,
            event_id=unique("e-"),
            occurred_at=at,
            default_region="IR",
        )
        await orders.record_order_event(
            s,
            kind=PurchaseKind.fulfilled,
            order=order,
            event_id=unique("e-"),
            occurred_at=at,
            default_region="IR",
        )
    paid = (await client.get(f"/v1/customers/{lead['id']}", headers=VIEWER)).json()
    assert paid["kind"] == "customer" and paid["first_paid_at"].startswith("2026-03-01")
    assert (paid["acquisition_channel"], paid["acquisition_campaign"]) == ("campaign", "NOWRUZ")
    events = await customer_events(db, lead["id"])
    kinds = [m.customer.kind for m in events if isinstance(m, profile_pb2.CustomerUpdated)]
    assert kinds[-1] == "customer"
    purchases = [m.kind for m in events if isinstance(m, profile_pb2.PurchaseAttributed)]
    assert purchases == [
        profile_pb2.PURCHASE_KIND_PLACED,
        profile_pb2.PURCHASE_KIND_PAID,
        profile_pb2.PURCHASE_KIND_FULFILLED,
    ]
    # Fulfilment is on the timeline and does not change the (financial) status.
    assert paid["timeline"][0]["kind"] in ("order.fulfilled", "order.paid")
    async with db.sessionmaker() as s:
        status = await s.scalar(
            text("SELECT status FROM orders WHERE order_ref = :r"), {"r": order.order_ref}
        )
        registered_only = await s.scalar(
            text("SELECT count(*) FROM customers WHERE id = :id AND kind = 'lead'"),
            {"id": uuid.UUID(lead["id"])},
        )
    assert status == "paid" and registered_only == 0


async def test_unknown_file_problems(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    r = await client.patch(f"/v1/customers/{missing}", json={"city": "Yerevan"}, headers=MARKETER)
    assert_problem(r, 404)
    assert r.headers["content-type"] == PROBLEM
    assert_problem(
        await client.post(
            f"/v1/customers/{missing}/identities",
            json={"kind": "phone", "value": random_phone()},
            headers=MARKETER,
        ),
        404,
    )


async def test_one_identity_added_to_two_files_at_once(client: httpx.AsyncClient) -> None:
    a, b = await new_customer(client), await new_customer(client)
    phone = random_phone()
    results = await asyncio.gather(
        *(
            client.post(
                f"/v1/customers/{c['id']}/identities",
                json={"kind": "phone", "value": phone},
                headers=MARKETER,
            )
            for c in (a, b)
        )
    )
    assert sorted(r.status_code for r in results) == [201, 409]
    winner = next(r for r in results if r.status_code == 201)
    loser = next(r for r in results if r.status_code == 409)
    owner = (
        await client.get("/v1/customers/lookup", params={"phone": phone}, headers=VIEWER)
    ).json()["id"]
    assert loser.json()["customer_id"] == owner
    assert winner.json()["phones"] == [f"+98{phone[1:]}"]


async def test_lifecycle_stage_cannot_be_cleared(client: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    body = assert_problem(
        await client.patch(
            f"/v1/customers/{c['id']}", json={"lifecycle_stage": None}, headers=MARKETER
        ),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/lifecycle_stage"
    r = await client.patch(
        f"/v1/customers/{c['id']}", json={"lifecycle_stage": "lapsed"}, headers=MARKETER
    )
    assert r.json()["lifecycle_stage"] == "lapsed"
