import uuid

import httpx

from vafa.events.v1 import common_pb2, profile_pb2, shop_orders_pb2
from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.loyalty.config import Settings
from vafa.loyalty.points import service

VIEWER = principal_headers("staff", "v", "viewer")
MARKETER = principal_headers("staff", "m", "marketer")
ADMIN = principal_headers("staff", "a", "admin")
PROBLEM = "application/problem+json"


def member(customer: uuid.UUID) -> dict[str, str]:
    return principal_headers("member", str(customer), "")


async def customer_with_points(db: Database, total_minor: int) -> uuid.UUID:
    """A customer who paid an order of `total_minor` USD cents, committed."""
    customer = uuid.uuid4()
    async with db.sessionmaker() as s:
        await service.apply_purchase(
            s,
            purchase=profile_pb2.PurchaseAttributed(
                customer_id=str(customer),
                kind=profile_pb2.PURCHASE_KIND_PAID,
                order=shop_orders_pb2.Order(
                    order_ref=f"api:{customer}",
                    total=common_pb2.Money(amount_minor=total_minor, currency="USD"),
                ),
            ),
            rates=Settings().points_per_unit,
        )
        await s.commit()
    return customer


async def test_staff_reads_balance_and_entries(client: httpx.AsyncClient, db: Database) -> None:
    c = await customer_with_points(db, 40495)
    r = await client.get(f"/v1/customers/{c}/points", headers=VIEWER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["customer_id"] == str(c) and body["balance"] == 404
    [entry] = body["entries"]
    assert (entry["delta"], entry["kind"], entry["reason"], entry["order_ref"]) == (
        404,
        "earn",
        "order",
        f"api:{c}",
    )
    assert entry["created_at"]


async def test_known_customer_with_no_points_is_not_a_404(
    client: httpx.AsyncClient, db: Database
) -> None:
    c = uuid.uuid4()
    async with db.sessionmaker() as s:
        await service.open_account(s, customer_id=c)
        await s.commit()
    r = await client.get(f"/v1/customers/{c}/points", headers=VIEWER)
    assert r.status_code == 200 and r.json() == {
        "customer_id": str(c),
        "balance": 0,
        "pending": 0,
        "next_expiry_at": None,
        "next_expiry_points": 0,
        "entries": [],
    }


async def test_unknown_customer_is_a_404_problem(client: httpx.AsyncClient) -> None:
    c = uuid.uuid4()
    r = await client.get(f"/v1/customers/{c}/points", headers=VIEWER)
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 404 and body["customer_id"] == str(c)
    assert body["instance"] == f"/v1/customers/{c}/points"


async def test_a_customer_id_that_is_not_a_uuid_is_a_422_problem(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/v1/customers/not-a-uuid/points", headers=VIEWER)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert r.json()["errors"][0]["pointer"] == "/path/customer_id"


async def test_member_sees_only_their_own_points(client: httpx.AsyncClient, db: Database) -> None:
    alice = await customer_with_points(db, 10_000)
    bob = await customer_with_points(db, 25_000)
    r = await client.get("/v1/club/me/points", headers=member(alice))
    assert r.status_code == 200
    assert r.json()["customer_id"] == str(alice) and r.json()["balance"] == 100
    r = await client.get("/v1/club/me/points", headers=member(bob))
    assert r.json()["customer_id"] == str(bob) and r.json()["balance"] == 250
    # A member cannot use the staff route, not even for their own id, nor adjust.
    for url in (f"/v1/customers/{bob}/points", f"/v1/customers/{alice}/points"):
        r = await client.get(url, headers=member(alice))
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    r = await client.post(
        f"/v1/customers/{alice}/points/adjustments",
        json={"points": 5, "reason": "me", "idempotency_key": "x"},
        headers=member(alice),
    )
    assert r.status_code == 403
    # Staff and anonymous callers have no "me".
    assert (await client.get("/v1/club/me/points", headers=VIEWER)).status_code == 401
    assert (await client.get("/v1/club/me/points")).status_code == 401
    # A member without an account (or with an id that is not a customer id) gets a 404.
    r = await client.get("/v1/club/me/points", headers=member(uuid.uuid4()))
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = await client.get("/v1/club/me/points", headers=principal_headers("member", "nope", ""))
    assert r.status_code == 404


async def test_adjustment_applies_once_per_idempotency_key(
    client: httpx.AsyncClient, db: Database
) -> None:
    c = await customer_with_points(db, 10_000)  # 100 points
    url = f"/v1/customers/{c}/points/adjustments"
    body = {"points": 25, "reason": "birthday gift", "idempotency_key": "req-1"}
    first = await client.post(url, json=body, headers=MARKETER)
    assert first.status_code == 201, first.text
    created = first.json()
    assert (created["delta"], created["kind"], created["reason"], created["balance"]) == (
        25,
        "adjust",
        "birthday gift",
        125,
    )
    retry = await client.post(url, json=body, headers=MARKETER)
    assert retry.status_code == 201 and retry.json() == created
    assert retry.headers["idempotent-replayed"] == "true"
    r = await client.get(f"/v1/customers/{c}/points", headers=VIEWER)
    assert r.json()["balance"] == 125 and len(r.json()["entries"]) == 2
    # The same key for a different adjustment is a conflict, not a silent no-op.
    r = await client.post(url, json={**body, "points": 30}, headers=MARKETER)
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert r.json()["idempotency_key"] == "req-1"


async def test_adjustment_below_zero_is_a_409_problem_saying_the_balance(
    client: httpx.AsyncClient, db: Database
) -> None:
    c = await customer_with_points(db, 10_000)  # 100 points
    url = f"/v1/customers/{c}/points/adjustments"
    r = await client.post(
        url, json={"points": -101, "reason": "fraud", "idempotency_key": "k"}, headers=MARKETER
    )
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["balance"] == 100 and "100" in body["detail"]
    r = await client.post(
        url, json={"points": -100, "reason": "fraud", "idempotency_key": "k"}, headers=ADMIN
    )
    assert r.status_code == 201 and r.json()["balance"] == 0


async def test_adjustment_validation_problems(client: httpx.AsyncClient, db: Database) -> None:
    c = await customer_with_points(db, 10_000)
    url = f"/v1/customers/{c}/points/adjustments"
    cases = [
        ({"points": 0, "reason": "r", "idempotency_key": "k"}, "/body/points"),
        ({"points": 5, "idempotency_key": "k"}, "/body/reason"),
        ({"points": 5, "reason": "   ", "idempotency_key": "k"}, "/body/reason"),
        ({"points": 5, "reason": "r"}, "/body/idempotency_key"),
        ({"points": 1.5, "reason": "r", "idempotency_key": "k"}, "/body/points"),
        ({"points": 10**12, "reason": "r", "idempotency_key": "k"}, "/body/points"),
    ]
    for payload, pointer in cases:
        r = await client.post(url, json=payload, headers=MARKETER)
        assert r.status_code == 422, (payload, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert pointer in [e["pointer"] for e in r.json()["errors"]], (payload, r.json())
    r = await client.get(f"/v1/customers/{c}/points", headers=VIEWER)
    assert r.json()["balance"] == 100  # nothing applied


async def test_adjusting_an_unknown_customer_is_a_404(client: httpx.AsyncClient) -> None:
    r = await client.post(
        f"/v1/customers/{uuid.uuid4()}/points/adjustments",
        json={"points": 5, "reason": "r", "idempotency_key": "k"},
        headers=MARKETER,
    )
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM


async def test_roles(client: httpx.AsyncClient, db: Database) -> None:
    c = await customer_with_points(db, 100)
    r = await client.post(
        f"/v1/customers/{c}/points/adjustments",
        json={"points": 5, "reason": "r", "idempotency_key": "k"},
        headers=VIEWER,
    )
    assert r.status_code == 403
    assert (await client.get(f"/v1/customers/{c}/points")).status_code == 401
    r = await client.get("/v1/loyalty/reconciliation", headers=MARKETER)
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM


async def test_reconciliation_is_empty(client: httpx.AsyncClient, db: Database) -> None:
    await customer_with_points(db, 123_456)
    r = await client.get("/v1/loyalty/reconciliation", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accounts"] >= 1
    assert body["mismatch_count"] == 0 and body["mismatches"] == []
    assert body["lot_mismatch_count"] == 0
    assert body["balance_total"] == body["ledger_total"] > 0


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {
        "/v1/customers/{customer_id}/points",
        "/v1/club/me/points",
        "/v1/customers/{customer_id}/points/adjustments",
        "/v1/loyalty/reconciliation",
    } <= set(paths)
