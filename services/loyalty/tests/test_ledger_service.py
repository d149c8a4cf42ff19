"""The ledger against the real database, inside a transaction rolled back per test."""

import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, loyalty_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.errors import NotFound
from vafa.loyalty.config import Settings
from vafa.loyalty.models import Account, LedgerEntry
from vafa.loyalty.points import service

RATES = Settings().points_per_unit
K = profile_pb2


def order(ref: str, total_minor: int, currency: str = "USD") -> shop_orders_pb2.Order:
    return shop_orders_pb2.Order(
        order_ref=ref,
        currency=currency,
        total=common_pb2.Money(amount_minor=total_minor, currency=currency),
    )


def purchase(
    customer: uuid.UUID,
    kind: int,
    o: shop_orders_pb2.Order,
    *,
    refund_id: str = "",
    refund_minor: int = 0,
) -> profile_pb2.PurchaseAttributed:
    msg = profile_pb2.PurchaseAttributed(customer_id=str(customer), kind=kind, order=o)  # type: ignore[arg-type]
    if kind == K.PURCHASE_KIND_REFUNDED:
        msg.refund.CopyFrom(
            shop_orders_pb2.Refund(
                refund_id=refund_id,
                amount=common_pb2.Money(amount_minor=refund_minor, currency=o.total.currency),
            )
        )
    return msg


async def apply(session: AsyncSession, msg: profile_pb2.PurchaseAttributed) -> None:
    await service.apply_purchase(session, purchase=msg, rates=RATES)


async def balance(session: AsyncSession, customer: uuid.UUID) -> int:
    account = await session.scalar(
        select(Account)
        .where(Account.customer_id == customer)
        .execution_options(populate_existing=True)
    )
    assert account is not None
    return account.balance


async def ledger_sum(session: AsyncSession, customer: uuid.UUID) -> int:
    return int(
        await session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.delta), 0)).where(
                LedgerEntry.customer_id == customer
            )
        )
        or 0
    )


async def entries(session: AsyncSession, customer: uuid.UUID) -> list[tuple[str, int, str]]:
    rows = await session.execute(
        select(LedgerEntry.kind, LedgerEntry.delta, LedgerEntry.idempotency_key)
        .where(LedgerEntry.customer_id == customer)
        .order_by(LedgerEntry.id)
    )
    return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def events(session: AsyncSession, customer: uuid.UUID) -> list[cloudevents.Envelope]:
    rows = await session.execute(
        text("SELECT headers, payload FROM outbox WHERE key = :k ORDER BY id"),
        {"k": str(customer)},
    )
    return [
        cloudevents.decode([(k, v.encode()) for k, v in r.headers], r.payload) for r in rows.all()
    ]


async def assert_sound(session: AsyncSession, customer: uuid.UUID, expected: int) -> None:
    assert await balance(session, customer) == expected
    assert await ledger_sum(session, customer) == expected


async def test_paid_order_earns_once_despite_replays(session: AsyncSession) -> None:
    c = uuid.uuid4()
    o = order("shopify:s:1001", 40495)
    await apply(session, purchase(c, K.PURCHASE_KIND_PLACED, o))
    await assert_sound(session, c, 0)  # placed: known customer, nothing earned
    for _ in range(3):
        await apply(session, purchase(c, K.PURCHASE_KIND_PAID, o))
    await assert_sound(session, c, 404)
    assert await entries(session, c) == [("earn", 404, "earn:order:shopify:s:1001")]

    [env] = await events(session, c)
    assert env.type == "vafa.events.v1.PointsEarned"
    assert env.subject == str(c)
    assert env.id == cloudevents.deterministic_id("loyalty", "earn:order:shopify:s:1001")
    msg = env.message
    assert isinstance(msg, loyalty_pb2.PointsEarned)
    assert (msg.customer_id, msg.points, msg.balance, msg.reason, msg.order_ref) == (
        str(c),
        404,
        404,
        "order",
        "shopify:s:1001",
    )
    assert msg.entry_id.isdigit() and msg.occurred_at.seconds > 0


async def test_cancel_reverses_exactly_what_was_earned(session: AsyncSession) -> None:
    c = uuid.uuid4()
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, order("o:1", 12_000)))  # 120
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, order("o:2", 5_050)))  # 50
    cancel = purchase(c, K.PURCHASE_KIND_CANCELLED, order("o:1", 12_000))
    await apply(session, cancel)
    await apply(session, cancel)
    await assert_sound(session, c, 50)
    assert (await entries(session, c))[-1] == ("reverse", -120, "reverse:cancel:o:1")

    env = (await events(session, c))[-1]
    msg = env.message
    assert isinstance(msg, loyalty_pb2.PointsReversed)
    assert (msg.points, msg.balance, msg.reason, msg.order_ref) == (
        120,
        50,
        "order_cancelled",
        "o:1",
    )


async def test_cancel_after_partial_refund_takes_only_the_rest(session: AsyncSession) -> None:
    c = uuid.uuid4()
    o = order("o:3", 10_000)  # 100 points
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, o))
    await apply(
        session, purchase(c, K.PURCHASE_KIND_REFUNDED, o, refund_id="r1", refund_minor=2_500)
    )
    await apply(session, purchase(c, K.PURCHASE_KIND_CANCELLED, o))
    await assert_sound(session, c, 0)
    assert [d for _, d, _ in await entries(session, c)] == [100, -25, -75]


async def test_partial_refunds_are_proportional_and_never_exceed_the_earned(
    session: AsyncSession,
) -> None:
    c = uuid.uuid4()
    o = order("o:4", 40495)  # 404 points
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, o))
    r1 = purchase(c, K.PURCHASE_KIND_REFUNDED, o, refund_id="r1", refund_minor=10_000)
    await apply(session, r1)
    await apply(session, r1)  # replayed: no second reversal
    # floor(404 × 10000 / 40495) = 99
    await assert_sound(session, c, 404 - 99)
    # A second refund of more than what is left takes only what the order still has earned.
    r2 = purchase(c, K.PURCHASE_KIND_REFUNDED, o, refund_id="r2", refund_minor=40495)
    await apply(session, r2)
    await assert_sound(session, c, 0)
    assert [(d, k) for _, d, k in await entries(session, c)] == [
        (404, "earn:order:o:4"),
        (-99, "reverse:refund:o:4:r1"),
        (-305, "reverse:refund:o:4:r2"),
    ]
    # A third refund finds nothing left: recorded as 0, balance and events unchanged.
    await apply(session, purchase(c, K.PURCHASE_KIND_REFUNDED, o, refund_id="r3", refund_minor=1))
    await apply(session, purchase(c, K.PURCHASE_KIND_CANCELLED, o))
    await assert_sound(session, c, 0)
    assert len(await events(session, c)) == 3


async def test_refunds_never_take_the_points_of_another_order(session: AsyncSession) -> None:
    c = uuid.uuid4()
    a, b = order("o:a", 10_000), order("o:b", 20_000)  # 100 and 200 points
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, a))
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, b))
    for rid in ("r1", "r2", "r3"):  # three full refunds of the same order
        await apply(
            session, purchase(c, K.PURCHASE_KIND_REFUNDED, a, refund_id=rid, refund_minor=10_000)
        )
    await assert_sound(session, c, 200)
    assert [d for _, d, _ in await entries(session, c)] == [100, 200, -100, 0, 0]


async def test_refund_in_another_currency_is_refused(session: AsyncSession) -> None:
    c = uuid.uuid4()
    o = order("o:5", 10_000)
    msg = purchase(c, K.PURCHASE_KIND_REFUNDED, o, refund_id="r1", refund_minor=100)
    msg.refund.amount.currency = "EUR"
    with pytest.raises(ValueError, match="EUR"):
        await apply(session, msg)


@pytest.mark.parametrize("broken", ["customer", "order_ref", "refund_id"])
async def test_broken_purchases_raise_for_the_dead_letter_topic(
    session: AsyncSession, broken: str
) -> None:
    c = uuid.uuid4()
    msg = purchase(c, K.PURCHASE_KIND_REFUNDED, order("o:x", 100), refund_id="r", refund_minor=1)
    if broken == "customer":
        msg.customer_id = "not-a-uuid"
    elif broken == "order_ref":
        msg.order.order_ref = ""
    else:
        msg.refund.refund_id = ""
    with pytest.raises(ValueError):
        await apply(session, msg)


async def test_reversal_is_capped_at_the_balance(session: AsyncSession) -> None:
    c = uuid.uuid4()
    o = order("o:6", 10_000)  # 100 points
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, o))
    await service.adjust(
        session,
        customer_id=c,
        points=-70,
        reason="goodwill error",
        idempotency_key="k1",
        author="t",
    )
    await assert_sound(session, c, 30)
    await apply(session, purchase(c, K.PURCHASE_KIND_CANCELLED, o))
    await assert_sound(session, c, 0)
    assert (await entries(session, c))[-1] == ("reverse", -30, "reverse:cancel:o:6")
    msg = (await events(session, c))[-1].message
    assert isinstance(msg, loyalty_pb2.PointsReversed) and (msg.points, msg.balance) == (30, 0)


async def test_reversal_of_an_order_that_earned_nothing_takes_nothing(
    session: AsyncSession,
) -> None:
    c = uuid.uuid4()
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, order("o:7", 10_000)))
    await apply(session, purchase(c, K.PURCHASE_KIND_CANCELLED, order("never-paid", 5_000)))
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, order("o:8", 10_000, "JPY")))
    await apply(session, purchase(c, K.PURCHASE_KIND_CANCELLED, order("o:8", 10_000, "JPY")))
    await assert_sound(session, c, 100)


async def test_cancel_replayed_after_a_late_payment_takes_nothing_twice(
    session: AsyncSession,
) -> None:
    c = uuid.uuid4()
    o = order("o:9", 10_000)
    cancel = purchase(c, K.PURCHASE_KIND_CANCELLED, o)
    await apply(session, cancel)  # nothing earned yet: recorded as a reversal of 0
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, o))
    await apply(session, cancel)  # a replay: the key is claimed, so still nothing
    await assert_sound(session, c, 100)


async def test_adjustments(session: AsyncSession) -> None:
    c = uuid.uuid4()
    with pytest.raises(NotFound):
        await service.adjust(
            session, customer_id=c, points=5, reason="x", idempotency_key="a", author="t"
        )
    await service.open_account(session, customer_id=c)
    await service.open_account(session, customer_id=c)
    first = await service.adjust(
        session, customer_id=c, points=50, reason="welcome", idempotency_key="a", author="staff:m"
    )
    again = await service.adjust(
        session, customer_id=c, points=50, reason="welcome", idempotency_key="a", author="staff:m"
    )
    assert (first.replayed, again.replayed) == (False, True)
    assert again.entry.id == first.entry.id and again.balance == 50
    await assert_sound(session, c, 50)
    with pytest.raises(service.IdempotencyKeyReused):
        await service.adjust(
            session, customer_id=c, points=60, reason="welcome", idempotency_key="a", author="t"
        )
    with pytest.raises(service.InsufficientBalance) as refused:
        await service.adjust(
            session, customer_id=c, points=-51, reason="oops", idempotency_key="b", author="t"
        )
    assert refused.value.status == 409 and refused.value.extensions["balance"] == 50
    taken = await service.adjust(
        session, customer_id=c, points=-50, reason="oops", idempotency_key="b", author="staff:m"
    )
    assert taken.balance == 0 and taken.entry.author == "staff:m"
    await assert_sound(session, c, 0)
    adjusted = [e.message for e in await events(session, c)]
    assert [type(m).__name__ for m in adjusted] == ["PointsAdjusted", "PointsAdjusted"]
    assert [(m.points, m.balance, m.reason, m.author) for m in adjusted] == [  # type: ignore[attr-defined]
        (50, 50, "welcome", "staff:m"),
        (-50, 0, "oops", "staff:m"),
    ]


async def test_reconcile_finds_a_tampered_balance(session: AsyncSession) -> None:
    c = uuid.uuid4()
    await apply(session, purchase(c, K.PURCHASE_KIND_PAID, order("o:10", 10_000)))
    before = await service.reconcile(session)
    assert before.mismatch_count == 0 and before.mismatches == []
    assert before.balance_total == before.ledger_total
    await session.execute(
        text("UPDATE accounts SET balance = balance + 1 WHERE customer_id = :c"), {"c": c}
    )
    after = await service.reconcile(session)
    assert after.mismatch_count == 1
    assert [(m.customer_id, m.balance, m.ledger_sum) for m in after.mismatches] == [(c, 101, 100)]


async def test_the_database_refuses_a_negative_balance(session: AsyncSession) -> None:
    from sqlalchemy.exc import IntegrityError

    c = uuid.uuid4()
    await service.open_account(session, customer_id=c)
    with pytest.raises(IntegrityError, match="balance_not_negative"):
        async with session.begin_nested():
            await session.execute(
                text("UPDATE accounts SET balance = -1 WHERE customer_id = :c"), {"c": c}
            )
