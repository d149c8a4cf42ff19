"""The HTTP API: the customer file, lookup, create, timeline pages, the member's own file, and
problem+json for every error."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.profile.orders import service as orders
from vafa.profile.orders.service import PurchaseKind

from .factories import make_order, unique

VIEWER = principal_headers("staff", "v", "viewer")
MARKETER = principal_headers("staff", "m", "marketer")
SHOP = principal_headers("shop", "storefront", "shop")
AGENT = principal_headers("staff", "a", "agent")
PROBLEM = "application/problem+json"


def member(customer_id: str) -> dict[str, str]:
    return principal_headers("member", customer_id, "")


def assert_problem(r: httpx.Response, status: int) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"]
    return body  # type: ignore[no-any-return]


def random_phone() -> str:
    return "0912" + str(uuid.uuid4().int)[:7]


async def buyer_with_orders(db: Database, *, email: str, phone: str = "") -> str:
    """A customer created the way the worker does it: two orders, one paid, one cancelled."""
    at = datetime(2026, 2, 1, tzinfo=UTC)
    async with db.sessionmaker() as s, s.begin():
        paid = make_order(email=email, phone=phone, total_minor=40495, currency="USD")
        row = await orders.record_order_event(
            s,
            kind=PurchaseKind.paid,
            order=paid,
            event_id=unique("evt-"),
            occurred_at=at,
            default_region="IR",
        )
        cancelled = make_order(email=email, total_minor=999, currency="USD", number="#1002")
        await orders.record_order_event(
            s,
            kind=PurchaseKind.cancelled,
            order=cancelled,
            event_id=unique("evt-"),
            occurred_at=at + timedelta(hours=1),
            default_region="IR",
        )
        assert row is not None
        return str(row.customer_id)


async def test_the_customer_file(client: httpx.AsyncClient, db: Database) -> None:
    mail = f"{unique()}@example.com"
    cid = await buyer_with_orders(db, email=mail, phone="۰۹۱۲۵۵۵۰۰۰۱")
    r = await client.get(f"/v1/customers/{cid}", headers=VIEWER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == cid
    assert (body["first_name"], body["last_name"], body["lifecycle_stage"]) == (
        "Sara",
        "Ahmadi",
        "customer",
    )
    assert body["identities"]["emails"] == [mail]
    assert body["identities"]["phones"] == ["+989125550001"]
    assert body["order_count"] == 1
    assert body["total_spend"] == [{"currency": "USD", "amount_minor": 40495, "amount": "404.95"}]
    assert [e["kind"] for e in body["timeline"]] == ["order.cancelled", "order.paid"]
    assert body["timeline_next_cursor"] is None


async def test_unknown_customer_and_bad_id_are_problems(client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    body = assert_problem(await client.get(f"/v1/customers/{missing}", headers=VIEWER), 404)
    assert body["customer_id"] == str(missing) and body["instance"] == f"/v1/customers/{missing}"
    body = assert_problem(await client.get("/v1/customers/not-a-uuid", headers=VIEWER), 422)
    assert body["errors"][0]["pointer"] == "/path/customer_id"
    body = assert_problem(await client.get("/v1/customers/123/timeline", headers=VIEWER), 422)
    assert body["errors"][0]["pointer"] == "/path/customer_id"


async def test_lookup_by_email_and_by_phone_in_any_form(
    client: httpx.AsyncClient, db: Database
) -> None:
    mail = f"{unique()}@example.com"
    local = random_phone()
    cid = await buyer_with_orders(db, email=mail, phone=local)
    persian = local.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    international = "0098" + local[1:]
    for params in (
        {"email": mail.upper()},
        {"email": f"  {mail} "},
        {"phone": local},
        {"phone": persian},
        {"phone": international},
        {"phone": "+98 " + local[1:]},
    ):
        r = await client.get("/v1/customers/lookup", params=params, headers=SHOP)
        assert r.status_code == 200, (params, r.text)
        assert r.json()["id"] == cid
    match = r.json()
    assert match["identities"]["emails"] == [mail]
    assert match["identities"]["phones"] == ["+98" + local[1:]]
    whole = (await client.get(f"/v1/customers/{cid}", headers=SHOP)).json()
    assert match["order_count"] == whole["order_count"] > 0
    assert match["kind"] == whole["kind"] and match["first_name"] == whole["first_name"]


async def test_lookup_problems(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.get(
            "/v1/customers/lookup", params={"email": f"{unique()}@example.com"}, headers=VIEWER
        ),
        404,
    )
    assert body["kind"] == "email"
    assert_problem(
        await client.get("/v1/customers/lookup", params={"phone": "09120000000"}, headers=VIEWER),
        404,
    )
    body = assert_problem(
        await client.get("/v1/customers/lookup", params={"phone": "12-ab"}, headers=VIEWER), 422
    )
    assert body["type"].endswith("/validation")
    assert body["errors"][0]["pointer"] == "/query/phone"
    assert body["detail"].startswith("/query/phone")
    body = assert_problem(
        await client.get("/v1/customers/lookup", params={"email": "nope"}, headers=VIEWER), 422
    )
    assert body["errors"][0]["pointer"] == "/query/email"
    assert_problem(await client.get("/v1/customers/lookup", headers=VIEWER), 422)
    assert_problem(
        await client.get(
            "/v1/customers/lookup",
            params={"email": "a@example.com", "phone": "09121234567"},
            headers=VIEWER,
        ),
        422,
    )


async def test_create_a_customer(client: httpx.AsyncClient, db: Database) -> None:
    mail = f"{unique()}@Example.com"
    phone = random_phone()
    r = await client.post(
        "/v1/customers",
        json={
            "first_name": "Ani",
            "last_name": "Petrosyan",
            "email": mail,
            "phone": phone.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
            "country_code": "ir",
            "city": "Tehran",
        },
        headers=MARKETER,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/customers/{body['id']}"
    assert body["lifecycle_stage"] == "lead" and body["country_code"] == "IR"
    assert body["identities"] == {
        "emails": [mail.lower()],
        "phones": ["+98" + phone[1:]],
        "shop_ids": [],
    }
    assert body["order_count"] == 0 and body["total_spend"] == [] and body["timeline"] == []
    # Committed with its CustomerRegistered in the outbox.
    async with db.sessionmaker() as s:
        rows = (
            await s.execute(
                text("SELECT topic, headers, payload FROM outbox WHERE key = :k"),
                {"k": body["id"]},
            )
        ).all()
    assert [row.topic for row in rows] == ["profile.customers.v1"]
    env = cloudevents.decode([(k, v.encode()) for k, v in rows[0].headers], rows[0].payload)
    assert isinstance(env.message, profile_pb2.CustomerRegistered)
    assert env.message.source == "api" and env.message.customer.customer_id == body["id"]
    assert (await client.get(f"/v1/customers/{body['id']}", headers=AGENT)).status_code == 200


async def test_create_conflicts_name_the_existing_customer(client: httpx.AsyncClient) -> None:
    mail = f"{unique()}@example.com"
    phone = random_phone()
    r = await client.post("/v1/customers", json={"email": mail, "phone": phone}, headers=SHOP)
    assert r.status_code == 201, r.text
    existing = r.json()["id"]
    for payload, kind in (
        ({"email": mail.upper()}, "email"),
        ({"email": f"{unique()}@example.com", "phone": "+98" + phone[1:]}, "phone"),
    ):
        body = assert_problem(
            await client.post("/v1/customers", json=payload, headers=MARKETER), 409
        )
        assert body["customer_id"] == existing and body["kind"] == kind
    # The refused request left nothing behind: the new email of the second try is free.
    r = await client.get("/v1/customers/lookup", params={"email": mail}, headers=VIEWER)
    assert r.json()["id"] == existing


async def test_create_validation_problems(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.post("/v1/customers", json={"phone": "0912"}, headers=MARKETER), 422
    )
    assert body["errors"][0]["pointer"] == "/body/phone"
    body = assert_problem(
        await client.post("/v1/customers", json={"email": "x@"}, headers=MARKETER), 422
    )
    assert body["errors"][0]["pointer"] == "/body/email"
    assert_problem(
        await client.post("/v1/customers", json={"first_name": "No contact"}, headers=MARKETER),
        422,
    )
    body = assert_problem(
        await client.post(
            "/v1/customers",
            json={"email": f"{unique()}@example.com", "country_code": "Iran"},
            headers=MARKETER,
        ),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/country_code"


async def test_roles(client: httpx.AsyncClient) -> None:
    payload = {"email": f"{unique()}@example.com"}
    assert_problem(await client.post("/v1/customers", json=payload, headers=VIEWER), 403)
    assert_problem(await client.post("/v1/customers", json=payload, headers=AGENT), 403)
    assert_problem(await client.post("/v1/customers", json=payload), 401)
    assert_problem(await client.get(f"/v1/customers/{uuid.uuid4()}"), 401)
    # Members never reach staff routes, not even their own file by id.
    me = str(uuid.uuid4())
    assert_problem(await client.get(f"/v1/customers/{me}", headers=member(me)), 403)
    assert_problem(
        await client.get("/v1/customers/lookup", params=payload, headers=member(me)), 403
    )


async def test_timeline_pages(client: httpx.AsyncClient, db: Database) -> None:
    cid = await buyer_with_orders(db, email=f"{unique()}@example.com")
    r = await client.get(f"/v1/customers/{cid}/timeline", params={"limit": 1}, headers=VIEWER)
    assert r.status_code == 200, r.text
    first = r.json()
    assert [e["kind"] for e in first["items"]] == ["order.cancelled"]
    assert first["next_cursor"]
    r = await client.get(
        f"/v1/customers/{cid}/timeline",
        params={"limit": 1, "cursor": first["next_cursor"]},
        headers=VIEWER,
    )
    second = r.json()
    assert [e["kind"] for e in second["items"]] == ["order.paid"]
    assert second["items"][0]["data"]["total_minor"] == 40495
    assert second["next_cursor"] is None
    r = await client.get(
        f"/v1/customers/{cid}/timeline", params={"kind": "order.paid"}, headers=VIEWER
    )
    assert [e["kind"] for e in r.json()["items"]] == ["order.paid"]

    body = assert_problem(
        await client.get(
            f"/v1/customers/{cid}/timeline", params={"cursor": "bogus"}, headers=VIEWER
        ),
        422,
    )
    assert body["errors"][0]["pointer"] == "/query/cursor"
    body = assert_problem(
        await client.get(f"/v1/customers/{cid}/timeline", params={"limit": 0}, headers=VIEWER),
        422,
    )
    assert body["errors"][0]["pointer"] == "/query/limit"
    assert_problem(await client.get(f"/v1/customers/{uuid.uuid4()}/timeline", headers=VIEWER), 404)


async def test_a_member_sees_only_their_own_file(client: httpx.AsyncClient, db: Database) -> None:
    a_mail, b_mail = f"{unique()}@example.com", f"{unique()}@example.com"
    a = await buyer_with_orders(db, email=a_mail)
    b = await buyer_with_orders(db, email=b_mail)
    r = await client.get("/v1/club/me", headers=member(a))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == a and r.json()["identities"]["emails"] == [a_mail]
    r = await client.get("/v1/club/me", headers=member(b))
    assert r.json()["id"] == b and r.json()["identities"]["emails"] == [b_mail]
    # Query parameters cannot widen the scope.
    r = await client.get("/v1/club/me", params={"customer_id": b}, headers=member(a))
    assert r.json()["id"] == a
    assert_problem(await client.get("/v1/club/me", headers=member(str(uuid.uuid4()))), 404)
    assert_problem(await client.get("/v1/club/me", headers=member("not-a-uuid")), 404)
    # Staff and anonymous callers have no "me".
    assert_problem(await client.get("/v1/club/me", headers=VIEWER), 401)
    assert_problem(await client.get("/v1/club/me"), 401)


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    # The club's routes come on top of these (another part of the service).
    assert set(spec["paths"]) >= {
        "/v1/customers",
        "/v1/customers/lookup",
        "/v1/customers/{customer_id}",
        "/v1/customers/{customer_id}/timeline",
        "/v1/customers/{customer_id}/identities",
        "/v1/customers/{customer_id}/tags",
        "/v1/customers/{customer_id}/tags/{tag}",
        "/v1/customers/{customer_id}/notes",
        "/v1/customers/{customer_id}/consents",
        "/v1/customers/{customer_id}/unsubscribe-links",
        "/v1/customers/{customer_id}/effective-dates",
        "/v1/customers/{customer_id}/effective-dates/{date_id}",
        "/v1/customers/{customer_id}/merge",
        "/v1/customers/{customer_id}/export",
        "/v1/customers/{customer_id}/erasure",
        "/v1/custom-fields",
        "/v1/custom-fields/{key}",
        "/v1/tags",
        "/v1/unsubscribe/{token}",
        "/v1/consents/inbound-sms",
        "/v1/effective-dates/upcoming",
        "/v1/households",
        "/v1/households/{household_id}",
        "/v1/households/{household_id}/members",
        "/v1/households/{household_id}/members/{customer_id}",
        "/v1/duplicates",
        "/v1/duplicates/scan",
        "/v1/duplicates/{candidate_id}/dismiss",
        "/v1/duplicates/{candidate_id}/merge",
        "/v1/merges/{merge_id}",
        "/v1/merges/{merge_id}/unmerge",
        "/v1/club/me",
    }
    # Unsubscribe links are opened by anyone holding one: public to the gateway.
    for op in spec["paths"]["/v1/unsubscribe/{token}"].values():
        assert op["security"] == []
    for name, path in spec["paths"].items():
        for op in path.values():
            assert op["tags"] == ["club" if name.startswith("/v1/club") else "customers"]
    create = spec["components"]["schemas"]["CustomerCreate"]["properties"]
    assert all(p.get("description") for p in create.values())
    param = spec["paths"]["/v1/customers/{customer_id}"]["get"]["parameters"][0]
    assert param["schema"]["format"] == "uuid"
