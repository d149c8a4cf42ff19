"""The rewards catalogue, redemption and the shop's checkout, through the API on the real
database (and the outbox rows the redemptions write)."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from vafa.events.v1 import common_pb2, loyalty_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import ServiceSettings
from vafa.kit.testing.plugin import principal_headers
from vafa.kit.testing.poll import eventually
from vafa.loyalty import ledger
from vafa.loyalty.rewards import service

MARKETER = principal_headers("staff", "m", "marketer")
VIEWER = principal_headers("staff", "v", "viewer")
SHOP = principal_headers("shop", "storefront", "shop")
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
async def no_after_purchase_rewards(db: Database) -> AsyncIterator[None]:
    """After-purchase rewards apply to every paid order: none is left active for other tests."""
    yield
    async with db.sessionmaker() as s:
        await s.execute(text("UPDATE rewards SET active = false WHERE after_purchase"))
        await s.commit()


def member(customer: uuid.UUID) -> dict[str, str]:
    return principal_headers("member", str(customer), "")


async def member_with(db: Database, points: int) -> uuid.UUID:
    customer = uuid.uuid4()
    async with db.sessionmaker() as s:
        await ledger.grant(
            s, customer_id=customer, points=points, idempotency_key=f"t:{customer}", reason="test"
        )
        await s.commit()
    return customer


async def balance(db: Database, customer: uuid.UUID) -> int:
    async with db.sessionmaker() as s:
        value = await s.scalar(
            text("SELECT balance FROM accounts WHERE customer_id = :c"), {"c": customer}
        )
    return int(value or 0)


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    payload = {
        "name": "15% off",
        "kind": "percent_discount",
        "percent_off": 15,
        "points_price": 100,
    }
    r = await client.post("/v1/loyalty/rewards", json={**payload, **body}, headers=MARKETER)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def redeem(
    client: httpx.AsyncClient, customer: uuid.UUID, reward_id: str, key: str
) -> httpx.Response:
    return await client.post(
        "/v1/club/me/redemptions",
        json={"reward_id": reward_id},
        headers={**member(customer), "Idempotency-Key": key},
    )


async def events(db: Database, type_: str, customer: uuid.UUID) -> list[cloudevents.Envelope]:
    async with db.sessionmaker() as s:
        rows = (
            await s.execute(
                text("SELECT headers, payload FROM outbox WHERE key = :k ORDER BY id"),
                {"k": str(customer)},
            )
        ).all()
    out = []
    for headers, payload in rows:
        env = cloudevents.decode([(k, v.encode()) for k, v in headers], payload)
        if env.type == type_:
            out.append(env)
    return out


async def test_reward_crud_and_validation(client: httpx.AsyncClient) -> None:
    reward = await create(client, stock=5, per_member_limit=2, coupon_valid_days=30)
    assert (reward["stock"], reward["issued"], reward["codes_left"]) == (5, 0, None)
    r = await client.get(f"/v1/loyalty/rewards/{reward['id']}", headers=VIEWER)
    assert r.status_code == 200 and r.json()["name"] == "15% off"
    updated = {**{k: reward[k] for k in ("name", "kind", "percent_off")}, "points_price": 80}
    r = await client.put(f"/v1/loyalty/rewards/{reward['id']}", json=updated, headers=MARKETER)
    assert r.status_code == 200 and r.json()["points_price"] == 80 and r.json()["stock"] is None
    cases = [
        ({"kind": "percent_discount", "points_price": 1}, "/body/percent_off"),
        ({"kind": "fixed_discount", "points_price": 1, "currency": "USD"}, "/body/amount_minor"),
        ({"kind": "fixed_discount", "points_price": 1, "amount_minor": 5}, "/body/currency"),
        ({"kind": "gift_product", "points_price": 1}, "/body/gift_sku"),
        ({"kind": "percent_discount", "percent_off": 101, "points_price": 1}, "/body/percent_off"),
        ({"kind": "free_shipping", "points_price": -1}, "/body/points_price"),
        ({"kind": "free_shipping", "points_price": 1, "stock": -1}, "/body/stock"),
        ({"kind": "coupon", "points_price": 1}, "/body/kind"),
        (
            {"kind": "free_shipping", "points_price": 5, "after_purchase": True},
            "/body/points_price",
        ),
    ]
    for body, pointer in cases:
        r = await client.post("/v1/loyalty/rewards", json={"name": "x", **body}, headers=MARKETER)
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, (body, r.text)
        assert pointer in [e["pointer"] for e in r.json()["errors"]], (body, r.json())
    assert (await client.post("/v1/loyalty/rewards", json={}, headers=VIEWER)).status_code == 403
    # Withdrawn: kept (coupons refer to it), no longer on offer.
    r = await client.delete(f"/v1/loyalty/rewards/{reward['id']}", headers=MARKETER)
    assert r.status_code == 204
    r = await client.get(f"/v1/loyalty/rewards/{reward['id']}", headers=VIEWER)
    assert r.status_code == 200 and r.json()["active"] is False
    r = await client.delete(f"/v1/loyalty/rewards/{uuid.uuid4()}", headers=MARKETER)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM


async def test_redeem_spends_points_and_issues_a_coupon_once_per_key(
    client: httpx.AsyncClient, db: Database
) -> None:
    reward = await create(client, stock=3, coupon_valid_days=30)
    c = await member_with(db, 250)
    first = await redeem(client, c, reward["id"], "k-1")
    assert first.status_code == 201, first.text
    body = first.json()
    code = body["coupon"]["code"]
    assert (body["points"], body["balance"], body["coupon"]["status"]) == (100, 150, "active")
    assert len(code) == 10 and not set(code) & set("0O1I")
    assert body["coupon"]["expires_at"] is not None
    # The same key again: the same redemption, nothing spent or issued twice.
    again = await redeem(client, c, reward["id"], "k-1")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == body["id"] and again.json()["coupon"]["code"] == code
    assert await balance(db, c) == 150
    # The key may come in the body too.
    r = await client.post(
        "/v1/club/me/redemptions",
        json={"reward_id": reward["id"], "idempotency_key": "k-2"},
        headers=member(c),
    )
    assert r.status_code == 201 and r.json()["balance"] == 50
    second = r.json()["coupon"]["code"]
    # Short of points: 409, nothing taken from stock.
    r = await redeem(client, c, reward["id"], "k-3")
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("/insufficient-points") and r.json()["balance"] == 50
    staff = (await client.get(f"/v1/loyalty/rewards/{reward['id']}", headers=VIEWER)).json()
    assert (staff["stock"], staff["issued"]) == (1, 2)
    # Events: RewardIssued from here, PointsRedeemed from the ledger, in the same transactions.
    issued = await events(db, "vafa.events.v1.RewardIssued", c)
    assert len(issued) == 2
    msg = issued[0].message
    assert isinstance(msg, loyalty_pb2.RewardIssued)
    assert (msg.coupon_code, msg.points_spent, msg.reward_kind) == (code, 100, "percent_discount")
    assert len(await events(db, "vafa.events.v1.PointsRedeemed", c)) == 2
    # The member sees the coupons and the catalogue with affordability.
    mine = (await client.get("/v1/club/me/coupons", headers=member(c))).json()
    assert [x["code"] for x in mine] == [second, code]  # newest first
    staff_view = (await client.get(f"/v1/customers/{c}/coupons", headers=VIEWER)).json()
    assert staff_view == mine
    assert (await client.get(f"/v1/customers/{c}/coupons", headers=member(c))).status_code == 403
    offers = (await client.get("/v1/club/me/rewards", headers=member(c))).json()
    offer = next(o for o in offers if o["id"] == reward["id"])
    assert (offer["affordable"], offer["points_short"], offer["redeemed"]) == (False, 50, 2)


async def test_redemption_problems(client: httpx.AsyncClient, db: Database) -> None:
    c = await member_with(db, 1000)
    r = await client.post(
        "/v1/club/me/redemptions", json={"reward_id": str(uuid.uuid4())}, headers=member(c)
    )
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/body/idempotency_key"
    r = await redeem(client, c, str(uuid.uuid4()), "x")
    assert r.status_code == 404 and r.json()["pointer"] == "/body/reward_id"
    r = await client.post(
        "/v1/club/me/redemptions",
        json={"reward_id": "nope"},
        headers={**member(c), "Idempotency-Key": "y"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/body/reward_id"
    off = await create(client, active=False)
    r = await redeem(client, c, off["id"], "z")
    assert r.status_code == 409 and r.json()["type"].endswith("/reward-not-available")
    limited = await create(client, per_member_limit=1, points_price=10)
    assert (await redeem(client, c, limited["id"], "a")).status_code == 201
    r = await redeem(client, c, limited["id"], "b")
    assert r.status_code == 409 and r.json()["type"].endswith("/reward-limit-reached")
    # A key used for one reward cannot buy another.
    r = await redeem(client, c, off["id"], "a")
    assert r.status_code == 409
    assert await balance(db, c) == 990
    staff = principal_headers("staff", "m", "marketer")
    assert (await client.post("/v1/club/me/redemptions", json={}, headers=staff)).status_code == 401


async def test_pool_codes_import_and_run_out(client: httpx.AsyncClient, db: Database) -> None:
    reward = await create(client, code_source="pool", points_price=10)
    url = f"/v1/loyalty/rewards/{reward['id']}/codes"
    r = await client.post(url, json={"codes": ["pool-aaa-۱", "POOL-BBB-2"]}, headers=MARKETER)
    assert r.status_code == 201 and r.json() == {"imported": 2, "codes_left": 2}
    # All or none: a duplicate (after normalising) and a known code, each named by position.
    r = await client.post(
        url, json={"codes": ["NEW-1", "poolaaa1", "new 1", "  "]}, headers=MARKETER
    )
    assert r.status_code == 422
    assert [e["pointer"] for e in r.json()["errors"]] == [
        "/body/codes/1",
        "/body/codes/2",
        "/body/codes/3",
    ]
    c = await member_with(db, 100)
    got = set()
    for key in ("1", "2"):
        r = await redeem(client, c, reward["id"], key)
        assert r.status_code == 201, r.text
        got.add(r.json()["coupon"]["code"])
    assert got == {"POOLAAA1", "POOLBBB2"}
    r = await redeem(client, c, reward["id"], "3")
    assert r.status_code == 409 and r.json()["type"].endswith("/reward-out-of-stock")
    assert await balance(db, c) == 80  # the refused one took nothing
    generated = await create(client)
    r = await client.post(
        f"/v1/loyalty/rewards/{generated['id']}/codes", json={"codes": ["A"]}, headers=MARKETER
    )
    assert r.status_code == 409


async def test_checkout_validates_and_consumes_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    reward = await create(
        client,
        name="5 USD off",
        kind="fixed_discount",
        percent_off=None,
        amount_minor=500,
        currency="USD",
        min_order_minor=2000,
    )
    c = await member_with(db, 100)
    code = (await redeem(client, c, reward["id"], "k")).json()["coupon"]["code"]
    typed = code[:4].lower() + "-" + code[4:]  # how a person might type it
    r = await client.post(
        f"/v1/coupons/{typed}/validate", json={"total_minor": 4999, "currency": "usd"}, headers=SHOP
    )
    assert r.status_code == 200, r.text
    assert (r.json()["valid"], r.json()["discount_minor"], r.json()["reason"]) == (True, 500, None)
    r = await client.post(
        f"/v1/coupons/{code}/validate", json={"total_minor": 1999, "currency": "USD"}, headers=SHOP
    )
    assert (r.json()["valid"], r.json()["reason"]) == (False, "minimum_order")
    r = await client.post(
        f"/v1/coupons/{code}/consume", json={"order_ref": "shop:o-1"}, headers=SHOP
    )
    assert r.status_code == 200 and r.json()["status"] == "used"
    assert r.json()["consumed_order_ref"] == "shop:o-1"
    # The same order again: a replay, no second event.
    r = await client.post(
        f"/v1/coupons/{code}/consume", json={"order_ref": "shop:o-1"}, headers=SHOP
    )
    assert r.status_code == 200 and r.headers["idempotent-replayed"] == "true"
    # Another order: refused, naming the order it was used on.
    r = await client.post(
        f"/v1/coupons/{code}/consume", json={"order_ref": "shop:o-2"}, headers=SHOP
    )
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["type"].endswith("/coupon-already-used")
    assert problem["order_ref"] == "shop:o-1" and "shop:o-1" in problem["detail"]
    assert problem["instance"] == f"/v1/coupons/{code}/consume"
    r = await client.post(
        f"/v1/coupons/{code}/validate", json={"total_minor": 4999, "currency": "USD"}, headers=SHOP
    )
    assert (r.json()["valid"], r.json()["reason"]) == (False, "used")
    redeemed = await events(db, "vafa.events.v1.CouponRedeemed", c)
    assert [e.message.order_ref for e in redeemed] == ["shop:o-1"]  # type: ignore[attr-defined]
    # Unknown code, missing order, roles.
    r = await client.post("/v1/coupons/NOPE/consume", json={"order_ref": "o"}, headers=SHOP)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = await client.post(f"/v1/coupons/{code}/consume", json={}, headers=SHOP)
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/body/order_ref"
    r = await client.post(f"/v1/coupons/{code}/consume", json={"order_ref": "o"}, headers=VIEWER)
    assert r.status_code == 403
    r = await client.post(f"/v1/coupons/{code}/consume", json={"order_ref": "o"}, headers=member(c))
    assert r.status_code == 403


async def test_after_purchase_reward_once_per_order(
    client: httpx.AsyncClient, db: Database
) -> None:
    reward = await create(
        client, name="Next order 10%", percent_off=10, points_price=0, after_purchase=True
    )
    c = uuid.uuid4()
    for _ in range(2):  # a replayed order issues nothing more
        async with db.sessionmaker() as s:
            await service.after_purchase(s, customer_id=c, order_ref="shop:paid-1")
            await s.commit()
    async with db.sessionmaker() as s:
        await service.after_purchase(s, customer_id=c, order_ref="shop:paid-2")
        await s.commit()
    coupons = (await client.get("/v1/club/me/coupons", headers=member(c))).json()
    assert len(coupons) == 2 and {x["reward_id"] for x in coupons} == {reward["id"]}
    issued = await events(db, "vafa.events.v1.RewardIssued", c)
    assert [e.message.reward_kind for e in issued] == ["next_purchase_discount"] * 2  # type: ignore[attr-defined]
    # Members cannot redeem it for nothing, nor see it in the catalogue.
    r = await redeem(client, c, reward["id"], "free")
    assert r.status_code == 409
    offers = (await client.get("/v1/club/me/rewards", headers=member(c))).json()
    assert reward["id"] not in [o["id"] for o in offers]


async def test_an_expired_coupon_is_refused_at_checkout(
    client: httpx.AsyncClient, db: Database
) -> None:
    reward = await create(client, coupon_valid_days=1, points_price=10)
    c = await member_with(db, 10)
    async with db.sessionmaker() as s:
        issued = await service.issue(
            s,
            customer_id=c,
            reward_id=uuid.UUID(reward["id"]),
            key=f"redeem:{c}:old",
            spend_points=True,
            now=datetime.now(UTC) - timedelta(days=2),  # issued two days ago: expired
        )
        await s.commit()
    code = issued.coupon.code
    r = await client.post(
        f"/v1/coupons/{code}/validate", json={"total_minor": 5000, "currency": "USD"}, headers=SHOP
    )
    assert (r.json()["valid"], r.json()["reason"], r.json()["coupon"]["status"]) == (
        False,
        "expired",
        "expired",
    )
    r = await client.post(f"/v1/coupons/{code}/consume", json={"order_ref": "o-x"}, headers=SHOP)
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("/coupon-expired") and r.json()["expires_at"]


async def test_a_paid_order_gets_the_next_purchase_coupon_through_the_worker(
    client: httpx.AsyncClient, db: Database, settings: ServiceSettings, worker: object
) -> None:
    reward = await create(
        client, name="Next 5%", percent_off=5, points_price=0, after_purchase=True
    )
    c = uuid.uuid4()
    paid = profile_pb2.PurchaseAttributed(
        customer_id=str(c),
        kind=profile_pb2.PURCHASE_KIND_PAID,
        order=shop_orders_pb2.Order(
            order_ref=f"next:{c}", total=common_pb2.Money(amount_minor=1000, currency="USD")
        ),
    )
    producer = make_producer(settings.kafka, client_id="rewards-test")
    await producer.start()
    try:
        for event_id in ("e-1", "e-2"):  # the same order twice, under two event ids
            headers, value = cloudevents.encode(
                paid, source="/vafa/profile", subject=str(c), event_id=f"{event_id}-{c}"
            )
            await producer.send_and_wait(
                settings.kafka.topic("profile.purchases.v1"),
                value=value,
                key=str(c).encode(),
                headers=headers,
            )
    finally:
        await producer.stop()

    async def two_events_consumed() -> bool:
        async with db.sessionmaker() as s:
            n = await s.scalar(
                text(
                    "SELECT count(*) FROM inbox WHERE consumer = 'loyalty.rewards' "
                    "AND event_id = ANY(CAST(:ids AS text[]))"
                ),
                {"ids": [f"e-1-{c}", f"e-2-{c}"]},
            )
        return n == 2

    await eventually(two_events_consumed, within=60, what="loyalty.rewards consumed both")
    coupons = (await client.get("/v1/club/me/coupons", headers=member(c))).json()
    assert [x["reward_id"] for x in coupons] == [reward["id"]]
