"""loyalty.events.v1 and inventory.catalog.v1 into the feature store, through the real batch
handlers on the real database."""

import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, inventory_pb2, loyalty_pb2
from vafa.segmentation.config import Settings
from vafa.segmentation.features.handlers import (
    catalog_handler,
    loyalty_handler,
    purchases_handler,
)

from .features_fixtures import (
    NOW,
    Reevaluations,
    envelope,
    features,
    line,
    lines_of,
    order,
    purchase,
    reevaluations,
    ts,
)

__all__ = ["reevaluations"]

SETTINGS = Settings()
LOYALTY = loyalty_handler(SETTINGS, clock=lambda: NOW)
CATALOG = catalog_handler(SETTINGS, clock=lambda: NOW)
PURCHASES = purchases_handler(SETTINGS, clock=lambda: NOW)


async def test_points_tier_referrals_and_coupons(
    session: AsyncSession, reevaluations: Reevaluations
) -> None:
    a, b, referred = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await LOYALTY(
        session,
        [
            envelope(loyalty_pb2.PointsEarned(customer_id=str(a), points=100, balance=100)),
            envelope(loyalty_pb2.PointsUnlocked(customer_id=str(a), points=20, balance=120)),
            envelope(loyalty_pb2.PointsRedeemed(customer_id=str(a), points=50, balance=70)),
            envelope(loyalty_pb2.PointsExpired(customer_id=str(b), points=5, balance=15)),
            envelope(loyalty_pb2.PointsAdjusted(customer_id=str(b), points=-5, balance=10)),
            envelope(loyalty_pb2.PointsReversed(customer_id=str(a), points=10, balance=60)),
            envelope(loyalty_pb2.TierChanged(customer_id=str(a), tier="silver")),
            envelope(loyalty_pb2.TierChanged(customer_id=str(a), tier="gold")),
            envelope(loyalty_pb2.ReferralCompleted(referrer_id=str(b), referred_id=str(referred))),
            envelope(loyalty_pb2.ReferralCompleted(referrer_id=str(b), referred_id=str(a))),
            envelope(loyalty_pb2.CouponRedeemed(customer_id=str(a), coupon_code="X1")),
        ],
    )
    fa, fb, fr = [await features(session, c) for c in (a, b, referred)]
    assert (fa["points_balance"], fa["tier"], fa["coupons_redeemed"]) == (60, "gold", 1)
    assert (fb["points_balance"], fb["referrals_made"]) == (10, 2)
    # Named by an event (the referred side): the row exists, with nothing on it.
    assert (fr["referrals_made"], fr["points_balance"]) == (0, 0)
    assert reevaluations.customers == {a, b, referred}

    # The same balance again changes nothing and re-evaluates no one.
    reevaluations.clear()
    await LOYALTY(
        session,
        [envelope(loyalty_pb2.PointsEarned(customer_id=str(a), points=0, balance=60))],
    )
    assert reevaluations.calls == []


def product(sku: str, brand: str, category: str, tags: list[str], minutes: int) -> object:
    return envelope(
        inventory_pb2.ProductUpserted(
            sku=sku,
            name=f"product {sku}",
            brand=brand,
            category=category,
            tags=tags,
            price=common_pb2.Money(amount_minor=100, currency="USD"),
            active=True,
            updated_at=ts(NOW + timedelta(minutes=minutes)),
        )
    )


async def test_a_product_update_relabels_lines_already_bought(
    session: AsyncSession, reevaluations: Reevaluations
) -> None:
    buyer, other = uuid.uuid4(), uuid.uuid4()
    await PURCHASES(
        session,
        [
            purchase(buyer, "paid", order("o:p1", 500, lines=[line("1", "FB-9", 500, vendor="V")])),
            purchase(other, "paid", order("o:p2", 700, lines=[line("1", "ZZ-1", 700)])),
        ],
    )
    assert (await lines_of(session, buyer))[0]["brand"] == "V"
    reevaluations.clear()

    await CATALOG(
        session,
        [
            product("FB-9", "", "کتاب فانتزی", ["فانتزی"], 1),
            product("FB-9", "نشر ققنوس", "کتاب فانتزی", ["فانتزی", "جلد سخت"], 2),
            product("NEW-1", "Acme", "toys", [], 1),  # nobody bought it yet
        ],
    )
    li = (await lines_of(session, buyer))[0]
    assert (li["brand"], li["category"], li["tags"]) == (
        "نشر ققنوس",
        "کتاب فانتزی",
        ["فانتزی", "جلد سخت"],
    )
    assert (await lines_of(session, other))[0]["category"] == ""
    assert reevaluations.calls == [(frozenset({buyer}), "event", NOW)]
    products = (await session.execute(text("SELECT count(*) FROM products"))).scalar_one()
    assert products == 2

    # An older version redelivered after the newer one changes nothing.
    reevaluations.clear()
    await CATALOG(session, [product("FB-9", "Old", "old", [], 0)])
    assert (await lines_of(session, buyer))[0]["brand"] == "نشر ققنوس"
    assert reevaluations.calls == []

    # A product without a brand leaves the vendor the line was bought under.
    await PURCHASES(
        session,
        [purchase(other, "paid", order("o:p3", 100, lines=[line("1", "NB", 100, vendor="Ven")]))],
    )
    await CATALOG(session, [product("NB", "", "misc", ["x"], 5)])
    nb = next(r for r in await lines_of(session, other) if r["sku"] == "NB")
    assert (nb["brand"], nb["category"], nb["tags"]) == ("Ven", "misc", ["x"])
    # Bought after the catalogue knew it: labelled at once.
    await PURCHASES(
        session,
        [purchase(buyer, "paid", order("o:p4", 100, lines=[line("1", "NEW-1", 100)]))],
    )
    new = next(r for r in await lines_of(session, buyer) if r["sku"] == "NEW-1")
    assert (new["brand"], new["category"]) == ("Acme", "toys")
    assert (await features(session, buyer))["orders_count"] == 2
