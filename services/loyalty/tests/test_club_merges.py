"""Two files of one customer merged: the survivor gets the merged file's coupons, referral code
and orders, and a tier that counts the points both earned."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from vafa.events.v1 import loyalty_pb2, profile_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.loyalty import ledger
from vafa.loyalty.config import Settings
from vafa.loyalty.models import Reward
from vafa.loyalty.points import members
from vafa.loyalty.referrals.handlers import referrals_handler
from vafa.loyalty.rewards import service as rewards
from vafa.loyalty.tiers.handlers import tiers_handler

MARKETER = principal_headers("staff", "m", "marketer")


@pytest.fixture(autouse=True)
async def no_ladder(db: Database) -> AsyncIterator[None]:
    async def clear() -> None:
        async with db.sessionmaker() as s:
            await s.execute(text("DELETE FROM tiers"))
            await s.commit()

    await clear()
    yield
    await clear()


def member(customer: uuid.UUID) -> dict[str, str]:
    return principal_headers("member", str(customer), "")


async def test_merge_moves_coupons_codes_and_counts_both_files_for_the_tier(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    for code, threshold in (("silver", 500), ("gold", 2000)):
        r = await client.post(
            "/v1/loyalty/tiers",
            json={
                "code": code,
                "name": code.title(),
                "threshold": threshold,
                "measure": "points",
                "window": "lifetime",
            },
            headers=MARKETER,
        )
        assert r.status_code == 201, r.text
    survivor, merged = uuid.uuid4(), uuid.uuid4()
    async with db.sessionmaker() as s:
        reward = Reward(name="M 5%", kind="percent_discount", percent_off=5, points_price=100)
        s.add(reward)
        await s.flush()
        await ledger.grant(
            s, customer_id=survivor, points=600, idempotency_key=f"m:{survivor}", reason="order"
        )
        await ledger.grant(
            s, customer_id=merged, points=1500, idempotency_key=f"m:{merged}", reason="order"
        )
        issued = await rewards.issue(
            s,
            customer_id=merged,
            reward_id=reward.id,
            key=f"redeem:{merged}:x",
            spend_points=True,
        )
        await s.commit()
    code = (await client.get("/v1/club/me/referral", headers=member(merged))).json()["code"]
    tiers = tiers_handler(settings)
    referrals = referrals_handler(settings)

    async def deliver(handler: object, message: object) -> None:
        assert callable(handler)
        async with db.sessionmaker() as s:
            env = Envelope(
                id=str(uuid.uuid4()),
                source="/test",
                type=message.DESCRIPTOR.full_name,  # type: ignore[attr-defined]
                time=datetime.now(UTC),
                subject="",
                message=message,  # type: ignore[arg-type]
            )
            await handler(s, [env])
            await s.commit()

    await deliver(tiers, loyalty_pb2.PointsEarned(customer_id=str(survivor), points=600))
    tier = (await client.get(f"/v1/customers/{survivor}/tier", headers=MARKETER)).json()
    assert tier["tier"]["code"] == "silver"

    async with db.sessionmaker() as s:
        await members.merge(s, survivor_id=survivor, merged_id=merged, merge_id="mg-1")
        await s.commit()
    merge_event = profile_pb2.CustomerMerged(
        survivor_id=str(survivor), merged_id=str(merged), merge_id="mg-1"
    )
    for _ in range(2):  # a replay changes nothing
        await deliver(referrals, merge_event)
    await deliver(tiers, loyalty_pb2.PointsAdjusted(customer_id=str(survivor), points=1400))

    tier = (await client.get(f"/v1/customers/{survivor}/tier", headers=MARKETER)).json()
    assert (tier["tier"]["code"], tier["value"]) == ("gold", 2100)
    coupons = (await client.get("/v1/club/me/coupons", headers=member(survivor))).json()
    assert [c["code"] for c in coupons] == [issued.coupon.code]
    assert (await client.get("/v1/club/me/coupons", headers=member(merged))).json() == []
    mine = (await client.get("/v1/club/me/referral", headers=member(survivor))).json()
    assert mine["code"] == code
