"""profile.purchases.v1 into the feature store, through the real batch handler on the real
database: what counts, what a cancel, a refund or a replay does, the windows, and the months and
weekdays in the shop's time zone."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit.cloudevents import Envelope
from vafa.segmentation.config import Settings
from vafa.segmentation.features.handlers import purchases_handler

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
)

__all__ = ["reevaluations"]

SETTINGS = Settings()
HANDLER = purchases_handler(SETTINGS, clock=lambda: NOW)


def ref() -> str:
    return f"shopify:s:{uuid.uuid4().hex[:10]}"


async def add_product(
    session: AsyncSession, sku: str, brand: str, category: str, tags: list[str]
) -> None:
    await session.execute(
        text(
            "INSERT INTO products (sku, brand, category, tags, updated_at) "
            "VALUES (:sku, :brand, :category, :tags, :at)"
        ),
        {"sku": sku, "brand": brand, "category": category, "tags": tags, "at": NOW},
    )


async def test_placed_records_the_order_without_counting_it(
    session: AsyncSession, reevaluations: Reevaluations
) -> None:
    c = uuid.uuid4()
    r = ref()
    await HANDLER(session, [purchase(c, "placed", order(r, 5000))])

    f = await features(session, c)
    assert (f["orders_count"], f["total_spent"], f["cohort"]) == (0, 0, "")
    status = (
        await session.execute(text("SELECT status FROM orders WHERE order_ref = :r"), {"r": r})
    ).scalar_one()
    assert status == "placed"
    assert await lines_of(session, c) == []
    # The row is new, so the customer is re-evaluated (a "never ordered" segment may take them).
    assert reevaluations.calls == [(frozenset({c}), "event", NOW)]


async def test_paid_counts_with_lines_labelled_from_the_catalogue(
    session: AsyncSession, reevaluations: Reevaluations
) -> None:
    c = uuid.uuid4()
    r = ref()
    await add_product(session, "BK-1", "نشر چشمه", "کتاب فانتزی", ["فانتزی", "رمان"])
    o = order(
        r,
        12000,
        placed_at=NOW - timedelta(days=3),
        lines=[
            line("1", "BK-1", 8000, quantity=2, vendor="vendor-ignored"),
            line("2", "UNKNOWN", 4000, vendor="Acme"),
        ],
        codes=("SPRING",),
    )
    await HANDLER(session, [purchase(c, "placed", o), purchase(c, "paid", o)])

    f = await features(session, c)
    assert f["orders_count"] == 1
    assert f["total_spent"] == 12000
    assert f["avg_order_value"] == 12000
    assert f["currency"] == "USD"
    assert f["orders_30d"] == f["orders_90d"] == f["orders_365d"] == 1
    assert f["spent_30d"] == 12000
    assert f["discount_orders"] == 1 and f["discount_share"] == 1.0
    assert f["first_order_at"] == f["last_order_at"] == NOW - timedelta(days=3)
    assert f["mean_interval_days"] is None and f["next_expected_at"] is None
    assert f["cohort"] == "2026-06"
    assert f["next_window_at"] == NOW - timedelta(days=3) + timedelta(days=30)
    assert await lines_of(session, c) == [
        {
            "order_ref": r,
            "line_id": "1",
            "sku": "BK-1",
            "brand": "نشر چشمه",
            "category": "کتاب فانتزی",
            "tags": ["فانتزی", "رمان"],
            "quantity": 2,
            "amount_minor": 8000,
            "discounted": True,
        },
        {
            "order_ref": r,
            "line_id": "2",
            "sku": "UNKNOWN",
            "brand": "Acme",
            "category": "",
            "tags": [],
            "quantity": 1,
            "amount_minor": 4000,
            "discounted": True,
        },
    ]
    assert reevaluations.customers == {c}


async def test_a_replayed_batch_changes_nothing(
    session: AsyncSession, reevaluations: Reevaluations
) -> None:
    c = uuid.uuid4()
    r1, r2 = ref(), ref()
    batch = [
        purchase(c, "paid", order(r1, 3000, lines=[line("a", "S1", 3000)])),
        purchase(c, "paid", order(r2, 5000, placed_at=NOW - timedelta(days=40))),
        purchase(c, "refunded", order(r2, 5000), refund_id="rf-1", refund=1000),
        purchase(c, "cancelled", order(r1, 3000)),
    ]
    await HANDLER(session, batch)
    before = await features(session, c)
    lines_before = await lines_of(session, c)
    assert (before["orders_count"], before["total_spent"], before["refunds_count"]) == (1, 4000, 1)
    reevaluations.clear()

    # The same events again under new event ids (the inbox would not stop them).
    await HANDLER(session, [envelope(e.message, at=e.time) for e in batch])
    after = await features(session, c)
    assert after == before
    assert await lines_of(session, c) == lines_before
    assert reevaluations.calls == []


async def test_fulfilled_counts_when_paid_never_came_and_never_twice(
    session: AsyncSession,
) -> None:
    c = uuid.uuid4()
    r1, r2 = ref(), ref()
    o1 = order(r1, 2000, lines=[line("1", "S", 2000)])
    o2 = order(r2, 7000, lines=[line("1", "T", 7000)])
    await HANDLER(session, [purchase(c, "placed", o1), purchase(c, "fulfilled", o1)])
    await HANDLER(session, [purchase(c, "paid", o2)])
    await HANDLER(session, [purchase(c, "fulfilled", o2), purchase(c, "paid", o1)])

    f = await features(session, c)
    assert (f["orders_count"], f["total_spent"]) == (2, 9000)
    assert len(await lines_of(session, c)) == 2
    statuses = dict(
        (
            await session.execute(
                text("SELECT order_ref, status FROM orders WHERE customer_id = :c"), {"c": c}
            )
        ).all()
    )
    assert statuses == {r1: "fulfilled", r2: "fulfilled"}


async def test_cancel_after_pay_uncounts_and_a_late_paid_does_not_revive(
    session: AsyncSession, reevaluations: Reevaluations
) -> None:
    c = uuid.uuid4()
    r = ref()
    o = order(r, 9900, lines=[line("1", "S", 9900)])
    await HANDLER(session, [purchase(c, "paid", o)])
    assert (await features(session, c))["orders_count"] == 1
    reevaluations.clear()

    await HANDLER(session, [purchase(c, "cancelled", o)])
    f = await features(session, c)
    assert (f["orders_count"], f["total_spent"], f["orders_30d"]) == (0, 0, 0)
    assert f["first_order_at"] is None and f["next_window_at"] is None
    assert await lines_of(session, c) == []
    assert reevaluations.calls == [(frozenset({c}), "event", NOW)]

    # PAID delivered late (out of order): a cancelled order stays cancelled.
    reevaluations.clear()
    await HANDLER(session, [purchase(c, "paid", o)])
    assert (await features(session, c))["orders_count"] == 0
    assert await lines_of(session, c) == []
    assert reevaluations.calls == []


async def test_refunds_partial_and_repeated(session: AsyncSession) -> None:
    c = uuid.uuid4()
    r = ref()
    o = order(r, 10000, placed_at=NOW - timedelta(days=5))
    await HANDLER(session, [purchase(c, "paid", o)])
    await HANDLER(session, [purchase(c, "refunded", o, refund_id="rf-1", refund=2500)])
    f = await features(session, c)
    assert (f["total_spent"], f["spent_30d"], f["refunds_count"]) == (7500, 7500, 1)
    assert f["orders_count"] == 1  # a refunded order still happened; its value is net

    # The same refund again, in a batch with a second one: applied once, the second added.
    await HANDLER(
        session,
        [
            purchase(c, "refunded", o, refund_id="rf-1", refund=2500),
            purchase(c, "refunded", o, refund_id="rf-2", refund=1500),
            purchase(c, "refunded", o, refund_id="rf-2", refund=1500),
        ],
    )
    f = await features(session, c)
    assert (f["total_spent"], f["avg_order_value"], f["refunds_count"]) == (6000, 6000, 2)
    row = (
        await session.execute(
            text("SELECT refunded_minor, refund_ids FROM orders WHERE order_ref = :r"), {"r": r}
        )
    ).one()
    assert (row.refunded_minor, row.refund_ids) == (4000, ["rf-1", "rf-2"])

    # Refunds beyond the total never make the spend negative.
    await HANDLER(session, [purchase(c, "refunded", o, refund_id="rf-3", refund=99999)])
    assert (await features(session, c))["total_spent"] == 0


async def test_windows_intervals_and_next_window(session: AsyncSession) -> None:
    c = uuid.uuid4()
    ages = [10, 60, 200, 400]  # days before NOW
    batch = [
        purchase(c, "paid", order(ref(), 1000 * (i + 1), placed_at=NOW - timedelta(days=d)))
        for i, d in enumerate(ages)
    ]
    await HANDLER(session, batch)
    f = await features(session, c)
    assert f["orders_count"] == 4
    assert f["total_spent"] == 1000 + 2000 + 3000 + 4000
    assert f["avg_order_value"] == 2500
    assert (f["orders_30d"], f["spent_30d"]) == (1, 1000)
    assert (f["orders_90d"], f["spent_90d"]) == (2, 3000)
    assert (f["orders_365d"], f["spent_365d"]) == (3, 6000)
    assert f["mean_interval_days"] == (400 - 10) / 3
    assert f["next_expected_at"] == NOW - timedelta(days=10) + timedelta(days=130)
    # The soonest window exit: the 10-day-old order leaves the 30-day window in 20 days.
    assert f["next_window_at"] == NOW + timedelta(days=20)
    assert f["discount_orders"] == 0 and f["discount_share"] == 0.0


async def test_months_weekdays_and_cohort_in_the_shops_time_zone(session: AsyncSession) -> None:
    tehran = purchases_handler(Settings(timezone="Asia/Tehran"), clock=lambda: NOW)
    utc = purchases_handler(Settings(timezone="UTC"), clock=lambda: NOW)
    # 21:00 UTC on Friday 2026-01-30 is 00:30 on Saturday 2026-01-31 in Tehran (UTC+03:30);
    # 21:00 UTC on Saturday 2026-02-28 is 00:30 on Sunday 2026-03-01 there.
    times = [datetime(2026, 1, 30, 21, 0, tzinfo=UTC), datetime(2026, 2, 28, 21, 0, tzinfo=UTC)]
    a, b = uuid.uuid4(), uuid.uuid4()
    await tehran(session, [purchase(a, "paid", order(ref(), 100, placed_at=t)) for t in times])
    await utc(session, [purchase(b, "paid", order(ref(), 100, placed_at=t)) for t in times])

    fa, fb = await features(session, a), await features(session, b)
    assert (fa["purchase_months"], fa["purchase_weekdays"]) == ([1, 3], [6, 7])
    assert (fb["purchase_months"], fb["purchase_weekdays"]) == ([1, 2], [5, 6])
    # 2025-12-31 21:00 UTC is already January in Tehran.
    c = uuid.uuid4()
    at = datetime(2025, 12, 31, 21, 0, tzinfo=UTC)
    await tehran(session, [purchase(c, "paid", order(ref(), 100, placed_at=at))])
    assert (await features(session, c))["cohort"] == "2026-01"


async def test_a_batch_is_the_same_as_its_events_one_by_one(session: AsyncSession) -> None:
    customers = [uuid.uuid4() for _ in range(3)]
    refs = [ref() for _ in range(4)]
    orders = {
        r: order(
            r,
            1000 * (n + 1),
            placed_at=NOW - timedelta(days=7 * n),
            discount=100 * (n % 2),
            lines=[line("1", f"S{n}", 1000 * (n + 1))],
        )
        for n, r in enumerate(refs)
    }
    plan = [
        (0, "placed", refs[0]),
        (0, "paid", refs[0]),
        (1, "paid", refs[1]),
        (2, "fulfilled", refs[2]),
        (1, "refunded", refs[1]),
        (0, "paid", refs[3]),
        (1, "cancelled", refs[1]),
        (2, "paid", refs[2]),
        (0, "refunded", refs[3]),
    ]

    def events() -> list[Envelope]:
        return [
            purchase(customers[c], kind, orders[r], refund_id=f"rf-{r}", refund=300)
            for c, kind, r in plan
        ]

    await HANDLER(session, events())
    together = [await features(session, c) for c in customers]
    lines_together = [await lines_of(session, c) for c in customers]

    for table in ("orders", "purchase_lines", "features"):
        await session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names
    for e in events():
        await HANDLER(session, [e])
    alone = [await features(session, c) for c in customers]
    ignore = {"updated_at"}
    assert [{k: v for k, v in f.items() if k not in ignore} for f in together] == [
        {k: v for k, v in f.items() if k not in ignore} for f in alone
    ]
    assert lines_together == [await lines_of(session, c) for c in customers]
    assert together[0]["orders_count"] == 2 and together[1]["orders_count"] == 0


async def test_a_batch_with_a_broken_event_raises_before_writing(session: AsyncSession) -> None:
    """The consumer then replays the batch one event at a time and dead-letters the broken one;
    nothing of the batch may be written before the check."""
    c = uuid.uuid4()
    good = purchase(c, "paid", order(ref(), 100))
    no_ref = purchase(c, "paid", order("", 100))
    bad_customer = envelope(
        profile_pb2.PurchaseAttributed(
            customer_id="not-a-uuid", kind=profile_pb2.PURCHASE_KIND_PAID, order=order(ref(), 1)
        )
    )
    for broken in (no_ref, bad_customer):
        with pytest.raises(ValueError):
            await HANDLER(session, [good, broken])
        count = (await session.execute(text("SELECT count(*) FROM orders"))).scalar_one()
        assert count == 0


async def test_a_late_placed_does_not_undo_the_paid_amounts(session: AsyncSession) -> None:
    c = uuid.uuid4()
    r = ref()
    await HANDLER(
        session, [purchase(c, "paid", order(r, 5000)), purchase(c, "placed", order(r, 4000))]
    )
    assert (await features(session, c))["total_spent"] == 5000
