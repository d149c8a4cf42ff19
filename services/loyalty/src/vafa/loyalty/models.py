import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vafa.kit.db import new_metadata
from vafa.kit.inbox import inbox_table
from vafa.kit.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


class EntryKind(StrEnum):
    earn = "earn"  # a grant: opens a lot (spendable at once, or pending)
    reverse = "reverse"  # a cancellation or refund takes points back
    adjust = "adjust"  # staff, with a reason and an author
    spend = "spend"  # a redemption or checkout (ledger.spend)
    expire = "expire"  # a lot reached its expiry unspent
    unlock = "unlock"  # a pending lot became spendable
    merge = "merge"  # a merged customer's points moved to the survivor


class LotStatus(StrEnum):
    pending = "pending"  # not spendable yet: counts in accounts.pending
    available = "available"  # spendable: counts in accounts.balance


class Account(Base):
    """A club member's points account. `balance` (spendable) and `pending` (granted, not yet
    spendable) are cached totals: balance == sum(ledger.delta) == sum(remaining of available
    lots) and pending == sum(ledger.pending_delta) == sum(remaining of pending lots). They change
    only in the transaction that appends an entry, under this row's lock (see ledger/)."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("pending >= 0", name="pending_not_negative"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    pending: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    # Maintained by the rewards part (tiers); the earning rules read them.
    tier: Mapped[str | None] = mapped_column(Text)
    tier_multiplier: Mapped[Decimal | None] = mapped_column(Numeric)
    # From CustomerRegistered/CustomerUpdated, for the birthday bonus; dropped on erasure.
    birth_date: Mapped[date | None] = mapped_column(Date)
    # Set when the customer was merged into another: its points moved there.
    merged_into: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


class LedgerEntry(Base):
    """Append-only: never updated, never deleted. Every change of a balance is one entry, and
    each entry carries the business key of what caused it ("earn:order:<order_ref>",
    "reverse:refund:<order_ref>:<refund_id>", "adjust:<customer_id>:<client key>", ...), so a
    replayed event or a retried request appends nothing. `delta` moves the spendable balance,
    `pending_delta` the pending points."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('earn', 'reverse', 'adjust', 'spend', 'expire', 'unlock', 'merge')",
            name="kind_known",
        ),
        # A reversal capped at a zero balance is recorded with delta 0 (see ledger/).
        CheckConstraint(
            "(kind = 'earn' AND delta >= 0 AND pending_delta >= 0 AND delta + pending_delta > 0)"
            " OR (kind = 'reverse' AND delta <= 0 AND pending_delta <= 0)"
            " OR (kind = 'adjust' AND delta <> 0 AND pending_delta = 0)"
            " OR (kind = 'spend' AND delta < 0 AND pending_delta = 0)"
            " OR (kind = 'expire' AND delta <= 0 AND pending_delta <= 0"
            " AND delta + pending_delta < 0)"
            " OR (kind = 'unlock' AND delta > 0 AND pending_delta = -delta)"
            " OR kind = 'merge'",
            name="delta_sign",
        ),
        Index("ix_ledger_entries_customer_id_id", "customer_id", "id"),
        Index("ix_ledger_entries_order_ref", "order_ref"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("accounts.customer_id"), nullable=False
    )
    # Signed: positive adds points, negative takes them away.
    delta: Mapped[int] = mapped_column(BigInteger, nullable=False)
    pending_delta: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    order_ref: Mapped[str | None] = mapped_column(Text)
    # What a spend bought (a redemption id, an order ref), or the merge id.
    ref: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    # The account after this entry, so a replayed write returns its first result.
    balance_after: Mapped[int | None] = mapped_column(BigInteger)
    pending_after: Mapped[int | None] = mapped_column(BigInteger)
    # Who made a manual adjustment ("staff:<id>"); empty for entries caused by events.
    author: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Lot(Base):
    """Points granted together: one per earning entry. Spending, reversals, negative
    adjustments and expiry take from `remaining` (soonest expiry first; draws in lot_draws)."""

    __tablename__ = "lots"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'available')", name="status_known"),
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_in_range"),
        Index(
            "ix_lots_customer_open",
            "customer_id",
            "expires_at",
            "id",
            postgresql_where=text("remaining > 0"),
        ),
        Index("ix_lots_expiring", "expires_at", postgresql_where=text("remaining > 0")),
        Index(
            "ix_lots_pending_until",
            "pending_until",
            postgresql_where=text("status = 'pending' AND remaining > 0"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("accounts.customer_id"), nullable=False
    )
    # The earning entry that opened it (null only for balances carried over by 0002).
    entry_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_entries.id"))
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    remaining: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    order_ref: Mapped[str | None] = mapped_column(Text)
    earned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # Null: never expires.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Pending until this instant; pending with null: until the order is fulfilled.
    pending_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class LotDraw(Base):
    """Which lots an entry took its points from (spend, reverse, negative adjust, expire,
    merge)."""

    __tablename__ = "lot_draws"
    __table_args__ = (
        PrimaryKeyConstraint("entry_id", "lot_id"),
        CheckConstraint("points > 0", name="points_positive"),
        Index("ix_lot_draws_lot_id", "lot_id"),
    )

    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_entries.id"))
    lot_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("lots.id"))
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)


class OrderLinePoints(Base):
    """What each line of an order earned and what of it was reversed, so cancellations and
    refunds reverse per line. line_id '' holds the order-level points (bonuses)."""

    __tablename__ = "order_line_points"
    __table_args__ = (
        PrimaryKeyConstraint("customer_id", "order_ref", "line_id"),
        CheckConstraint("reversed >= 0 AND reversed <= points", name="reversed_in_range"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    order_ref: Mapped[str] = mapped_column(Text)
    line_id: Mapped[str] = mapped_column(Text)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reversed: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    # The line's total (minor units), to reverse a partial refund of it proportionally.
    amount_minor: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )


class FulfilledOrder(Base):
    """Orders reported fulfilled (PurchaseKind FULFILLED), so one paid after its fulfilment
    arrives is not held pending for it, and a redelivered fulfilment unlocks nothing new."""

    __tablename__ = "fulfilled_orders"

    order_ref: Mapped[str] = mapped_column(Text, primary_key=True)
    fulfilled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ExpiryWarning(Base):
    """A PointsExpiryWarning sent: once per lot per days-ahead threshold."""

    __tablename__ = "expiry_warnings"
    __table_args__ = (PrimaryKeyConstraint("lot_id", "days_ahead"),)

    lot_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("lots.id"))
    days_ahead: Mapped[int] = mapped_column(Integer)
    warned_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class EarnCounter(Base):
    """Points a customer earned through the rules in a period of the shop's calendar
    ("D2026-11-22", "W2026-47" / Jalali "WJ2026-11-21", "M2026-11" / "MJ1405-09"), for the caps
    per day/week/month. Changed under the account lock."""

    __tablename__ = "earn_counters"
    __table_args__ = (PrimaryKeyConstraint("customer_id", "period"),)

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    period: Mapped[str] = mapped_column(Text)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)


class RuleStatus(StrEnum):
    draft = "draft"
    published = "published"
    archived = "archived"


class EarningRule(Base):
    """An earning rule. `definition` is the editable draft; publishing copies it into an
    immutable RuleVersion. `budget_used` is increased atomically with a guard, so a budget is
    never exceeded by concurrent earners."""

    __tablename__ = "earning_rules"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'published', 'archived')", name="status_known"),
        CheckConstraint(
            "budget IS NULL OR (budget_used >= 0 AND budget_used <= budget)",
            name="budget_not_exceeded",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="draft")
    priority: Mapped[int] = mapped_column(Integer, nullable=False, server_default="100")
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    current_version: Mapped[int | None] = mapped_column(Integer)
    budget: Mapped[int | None] = mapped_column(BigInteger)
    budget_used: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


class RuleVersion(Base):
    """An immutable published version of a rule, active in [valid_from, valid_to)."""

    __tablename__ = "rule_versions"
    __table_args__ = (
        UniqueConstraint("rule_id", "version"),
        Index("ix_rule_versions_valid", "valid_from", "valid_to"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("earning_rules.id"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    published_by: Mapped[str | None] = mapped_column(Text)


class Product(Base):
    """The catalogue as inventory.catalog.v1 ProductUpserted tells it, for the rules by
    category, brand and tag."""

    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(Text, primary_key=True)
    product_id: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    brand: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(
        ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")
    )
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PurchaseRecord(Base):
    """Paid purchases, kept for the rules' dry run (what a draft would have earned)."""

    __tablename__ = "purchase_history"
    __table_args__ = (Index("ix_purchase_history_paid_at", "paid_at"),)

    order_ref: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    total_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    paid_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # [{"line_id", "sku", "vendor", "quantity", "amount_minor"}]
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


# --- tiers, rewards and coupons, referrals (issue 4, part B) --------------------------------


class TierMeasure(StrEnum):
    points = "points"  # points earned (earn entries, net of their reversals) in the window
    spend = "spend"  # money paid (minor units of the tier's currency), net of refunds


class TierWindow(StrEnum):
    rolling_12_months = "rolling_12_months"
    calendar_year = "calendar_year"
    lifetime = "lifetime"


class Tier(Base):
    """One level of the club's ladder. Every tier measures the same thing over the same window
    (checked on write), so the ladder is ordered by `threshold`; the highest tier whose
    threshold a member's measure reaches is theirs."""

    __tablename__ = "tiers"
    __table_args__ = (
        CheckConstraint("threshold >= 0", name="threshold_not_negative"),
        CheckConstraint("earn_multiplier > 0", name="multiplier_positive"),
        CheckConstraint("measure IN ('points', 'spend')", name="measure_known"),
        CheckConstraint(
            "measure_window IN ('rolling_12_months', 'calendar_year', 'lifetime')",
            name="window_known",
        ),
        CheckConstraint("measure = 'points' OR currency IS NOT NULL", name="spend_has_currency"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    code: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    threshold: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    measure: Mapped[str] = mapped_column(Text, nullable=False)
    currency: Mapped[str | None] = mapped_column(Text)
    # "window" is a reserved word in SQL, hence the column's longer name.
    window: Mapped[str] = mapped_column("measure_window", Text, nullable=False)
    earn_multiplier: Mapped[Decimal] = mapped_column(
        Numeric(6, 3), nullable=False, server_default="1"
    )
    free_shipping: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    # Further benefits in words, shown to members ("birthday gift", "early access").
    perks: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


class RewardKind(StrEnum):
    percent_discount = "percent_discount"
    fixed_discount = "fixed_discount"
    free_shipping = "free_shipping"
    gift_product = "gift_product"


class CodeSource(StrEnum):
    generated = "generated"
    pool = "pool"


class Reward(Base):
    """An item of the rewards catalogue. `stock` (what is left; NULL is unlimited) is
    decremented with a conditional UPDATE in the redeeming transaction, so it never goes below
    zero and two members never get the last one."""

    __tablename__ = "rewards"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('percent_discount', 'fixed_discount', 'free_shipping', 'gift_product')",
            name="kind_known",
        ),
        CheckConstraint("points_price >= 0", name="price_not_negative"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
        CheckConstraint("per_member_limit IS NULL OR per_member_limit >= 1", name="limit_positive"),
        CheckConstraint(
            "kind <> 'percent_discount' OR (percent_off BETWEEN 1 AND 100)", name="percent_set"
        ),
        CheckConstraint(
            "kind <> 'fixed_discount' OR (amount_minor > 0 AND currency IS NOT NULL)",
            name="amount_set",
        ),
        CheckConstraint("kind <> 'gift_product' OR gift_sku IS NOT NULL", name="gift_set"),
        CheckConstraint("code_source IN ('generated', 'pool')", name="code_source_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    percent_off: Mapped[int | None] = mapped_column(Integer)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(Text)
    gift_sku: Mapped[str | None] = mapped_column(Text)
    # The smallest order total the coupon applies to (in `currency` when set).
    min_order_minor: Mapped[int | None] = mapped_column(BigInteger)
    points_price: Mapped[int] = mapped_column(BigInteger, nullable=False)
    stock: Mapped[int | None] = mapped_column(Integer)
    per_member_limit: Mapped[int | None] = mapped_column(Integer)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A coupon expires this many days after it is issued (NULL: never).
    coupon_valid_days: Mapped[int | None] = mapped_column(Integer)
    code_source: Mapped[str] = mapped_column(Text, nullable=False, server_default="generated")
    # Issued at no points to the buyer of every paid order (the next-purchase discount).
    after_purchase: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


class RewardCode(Base):
    """An imported code of a reward's pool; `redemption_id` is set when it is handed out (picked
    with FOR UPDATE SKIP LOCKED, so concurrent redemptions never take the same one)."""

    __tablename__ = "reward_codes"
    __table_args__ = (
        Index(
            "ix_reward_codes_free",
            "reward_id",
            "id",
            postgresql_where=text("redemption_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    reward_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("rewards.id"), nullable=False)
    code: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    redemption_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Redemption(Base):
    """A reward issued to a member, once per idempotency key: the member's key for a points
    redemption, "after-purchase:<order_ref>:<reward_id>" for the automatic one."""

    __tablename__ = "redemptions"
    __table_args__ = (
        CheckConstraint("points >= 0", name="points_not_negative"),
        Index("ix_redemptions_customer_reward", "customer_id", "reward_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    reward_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("rewards.id"), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    points: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The paid order an automatic next-purchase reward was issued for.
    order_ref: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Coupon(Base):
    """A code a member holds. Consumed at most once: `consumed_order_ref` is set by a
    conditional UPDATE, and the same order consuming it again is a harmless replay."""

    __tablename__ = "coupons"
    __table_args__ = (Index("ix_coupons_customer_id", "customer_id"),)

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    reward_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("rewards.id"), nullable=False)
    redemption_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("redemptions.id"), nullable=False, unique=True
    )
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    issued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consumed_order_ref: Mapped[str | None] = mapped_column(Text)
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ClubOrder(Base):
    """The paid orders this part of the service has seen (profile.purchases.v1): the spend a
    tier measures, and a referred customer's first order."""

    __tablename__ = "club_orders"
    __table_args__ = (Index("ix_club_orders_customer_paid", "customer_id", "paid_at"),)

    order_ref: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    total_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    paid_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    cancelled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")


class ClubOrderRefund(Base):
    """A refund of a paid order, once per refund id (a replay adds nothing)."""

    __tablename__ = "club_order_refunds"

    order_ref: Mapped[str] = mapped_column(Text, primary_key=True)
    refund_id: Mapped[str] = mapped_column(Text, primary_key=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CustomerContact(Base):
    """What profile says about a customer's phones, emails and address (normalised), kept to
    refuse a referral between two files of one person."""

    __tablename__ = "customer_contacts"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    phones: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    emails: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    address: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


class ReferralCode(Base):
    __tablename__ = "referral_codes"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    code: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class ReferralStatus(StrEnum):
    pending = "pending"  # registered with a code; waiting for the first paid order
    completed = "completed"  # both sides earned (the referrer possibly capped: 0 points)
    refused = "refused"  # unknown code, self-referral


class Referral(Base):
    """At most one per referred customer: the key of its grants is the referred id."""

    __tablename__ = "referrals"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'completed', 'refused')", name="status_known"),
        Index("ix_referrals_referrer_completed", "referrer_id", "completed_at"),
    )

    referred_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    referrer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    code: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    # Why it was refused, or "referrer_capped" when the referrer's cap left them 0 points.
    note: Mapped[str | None] = mapped_column(Text)
    order_ref: Mapped[str | None] = mapped_column(Text)
    referrer_points: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    referred_points: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Tiers count the points of files merged into a member (tiers/service.py): find them by index.
Index(
    "ix_accounts_merged_into",
    Account.merged_into,
    postgresql_where=text("merged_into IS NOT NULL"),
)
