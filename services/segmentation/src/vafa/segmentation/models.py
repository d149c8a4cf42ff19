"""Segmentation's tables: the feature store (what each customer has done, kept from events),
segment definitions, memberships with their history, and the scores (RFM, CLV, clusters).

The feature store is wide on purpose: one row per customer holds every feature a segment can
test, so a full evaluation is one scan of one table plus, for behavioural conditions, a
semi-join on `purchase_lines`. `orders` is the per-order projection the features are
recomputed from, exactly, for one customer at a time."""

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    Text,
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


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Features(Base):
    """One row per customer: the feature store. Money is in minor units of `currency` (the
    currency of the customer's orders; a shop sells in one). Counts and sums cover paid orders
    that were not cancelled; refunds are subtracted from the sums."""

    __tablename__ = "features"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)

    # From profile (CustomerSnapshot, ConsentChanged, InteractionRecorded).
    kind: Mapped[str] = mapped_column(Text, nullable=False, server_default="lead")
    lifecycle_stage: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    gender: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    birth_date: Mapped[date | None] = mapped_column(Date)
    # Next occurrence of the birthday / of any effective date (anniversary...), so "in the
    # next N days" is a range test; rolled forward when passed (see next_window_at).
    next_birthday: Mapped[date | None] = mapped_column(Date)
    next_effective_date: Mapped[date | None] = mapped_column(Date)
    effective_dates: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default="[]"
    )
    country_code: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    province: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    city: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    education: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    acquisition_channel: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    acquisition_campaign: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    referred_by_code: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    club_status: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    household_id: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    custom_fields: Mapped[dict[str, str]] = mapped_column(
        JSONB, nullable=False, server_default="{}"
    )
    consent_sms: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    consent_email: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    consent_phone: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    consent_push: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    registered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Acquisition cohort: "YYYY-MM" of the first paid order, else of registration.
    cohort: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    interactions: Mapped[dict[str, int]] = mapped_column(JSONB, nullable=False, server_default="{}")
    interactions_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_interaction_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # From profile.purchases.v1 (recomputed from `orders` for the customer on each change).
    currency: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    orders_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    total_spent: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    avg_order_value: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    orders_30d: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    spent_30d: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    orders_90d: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    spent_90d: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    orders_365d: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    spent_365d: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    discount_orders: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # discount_orders / orders_count, 0 without orders.
    discount_share: Mapped[float] = mapped_column(Double, nullable=False, server_default="0")
    refunds_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Distinct months (1-12) and ISO weekdays (1 = Monday ... 7) of purchase, shop time zone.
    purchase_months: Mapped[list[int]] = mapped_column(
        ARRAY(SmallInteger), nullable=False, server_default="{}"
    )
    purchase_weekdays: Mapped[list[int]] = mapped_column(
        ARRAY(SmallInteger), nullable=False, server_default="{}"
    )
    # Mean days between consecutive orders (null under two orders), and last + that.
    mean_interval_days: Mapped[float | None] = mapped_column(Double)
    next_expected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # From loyalty.events.v1.
    points_balance: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    tier: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    referrals_made: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    coupons_redeemed: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")

    # Scores, written by the RFM and CLV jobs (null until first computed).
    rfm_r: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_f: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_m: Mapped[int | None] = mapped_column(SmallInteger)
    rfm_segment: Mapped[str | None] = mapped_column(Text)
    clv_expected_purchases: Mapped[float | None] = mapped_column(Double)
    clv_probability_alive: Mapped[float | None] = mapped_column(Double)
    clv_value: Mapped[int | None] = mapped_column(BigInteger)
    # Expected value of one future order (Gamma-Gamma), minor units.
    clv_order_value: Mapped[int | None] = mapped_column(BigInteger)
    clv_band: Mapped[str | None] = mapped_column(Text)

    # Earliest moment a time-based feature changes with no event (an order leaving the 30/90/365
    # day window, a birthday or effective date passing). The window job recomputes the
    # customer then and re-evaluates their segments.
    next_window_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when profile merged this customer into another or erased them: kept so replays of
    # their older events are recognised, excluded from every segment.
    removed: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index(
            "ix_features_next_window_at",
            "next_window_at",
            postgresql_where=text("next_window_at IS NOT NULL"),
        ),
    )


class Order(Base):
    """Per-order projection of profile.purchases.v1: what the customer's order features are
    recomputed from."""

    __tablename__ = "orders"

    order_ref: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    # "placed", "paid", "fulfilled", "cancelled"; refunds reduce refunded_minor.
    status: Mapped[str] = mapped_column(Text, nullable=False)
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    total_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    discount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # A discount total above zero or a discount code: the order counts in discount_orders.
    discounted: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    refunded_minor: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # Refund ids already applied, so a replayed refund has no second effect.
    refund_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (Index("ix_orders_customer_id_placed_at", "customer_id", "placed_at"),)


class PurchaseLine(Base):
    """Each line of a paid, not cancelled order, with the product's brand/category/tags as known
    when it was bought (or learnt later from the catalogue). Behavioural conditions ("bought a
    fantasy book twice in 90 days") are semi-joins on this table."""

    __tablename__ = "purchase_lines"

    order_ref: Mapped[str] = mapped_column(Text, primary_key=True)
    line_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    purchased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    sku: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    brand: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    category: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    quantity: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    discounted: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")

    __table_args__ = (
        Index("ix_purchase_lines_customer_id_purchased_at", "customer_id", "purchased_at"),
        Index("ix_purchase_lines_sku", "sku"),
        Index("ix_purchase_lines_brand", "brand"),
        Index("ix_purchase_lines_category", "category"),
        Index("ix_purchase_lines_tags", "tags", postgresql_using="gin"),
    )


class Product(Base):
    """inventory.catalog.v1 projection: what a SKU is, for lines bought before or after."""

    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    brand: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    category: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Identity(Base):
    """Emails (lower-cased) and E.164 phones from profile's snapshots, so a static segment's CSV
    can name customers the way a marketer has them."""

    __tablename__ = "identities"

    value: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)

    __table_args__ = (Index("ix_identities_customer_id", "customer_id"),)


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # Stable slug other services and templates refer to ("fantasy-readers").
    key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    # "dynamic" (a definition) or "static" (an uploaded list).
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    # The template it was made from, if any.
    template: Mapped[str | None] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    member_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    evaluated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint("kind IN ('dynamic', 'static')", name="kind"),
        CheckConstraint("kind = 'static' OR definition IS NOT NULL", name="dynamic_has_definition"),
    )


class SegmentVersion(Base):
    """Every definition a segment has had, immutable: which rule admitted whom, and when."""

    __tablename__ = "segment_versions"

    segment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    author: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    created_at: Mapped[datetime] = _now()


class Membership(Base):
    """One row per stay of a customer in a segment: open while `exited_at` is null. The open
    rows are the current members ("since when"); the closed ones are the history."""

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    segment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("segments.id", ondelete="CASCADE"), nullable=False
    )
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    segment_version: Mapped[int] = mapped_column(Integer, nullable=False)
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # MembershipCause names: "event", "window", "evaluation", "upload", "removed".
    entered_cause: Mapped[str] = mapped_column(Text, nullable=False)
    exited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    exited_cause: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "uq_memberships_open",
            "segment_id",
            "customer_id",
            unique=True,
            postgresql_where=text("exited_at IS NULL"),
        ),
        Index("ix_memberships_customer_id", "customer_id"),
    )


class Recheck(Base):
    """When a customer's verdict in some segment will change by the clock alone (a relative date
    condition such as "last order more than 60 days ago" turning true). The window job
    re-evaluates the customer then, like an expired feature window."""

    __tablename__ = "rechecks"

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_rechecks_due_at", "due_at"),)


class ClvModel(Base):
    """A fit of BG/NBD (purchase frequency, dropout) and Gamma-Gamma (order value) on the
    purchase history; the newest is the one in use."""

    __tablename__ = "clv_models"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    fitted_at: Mapped[datetime] = _now()
    # {"bgnbd": {"r":..,"alpha":..,"a":..,"b":..}, "gamma_gamma": {"p":..,"q":..,"gamma":..}}
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    customers: Mapped[int] = mapped_column(Integer, nullable=False)
    repeat_customers: Mapped[int] = mapped_column(Integer, nullable=False)
    horizon_days: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    # Log-likelihoods and convergence, for whoever must trust the numbers.
    diagnostics: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}")


class ClusterRun(Base):
    """A k-means proposal: k clusters over standardised features, each with a readable profile
    (means, sizes, what sets it apart) and a suggested segment definition."""

    __tablename__ = "cluster_runs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_at: Mapped[datetime] = _now()
    k: Mapped[int] = mapped_column(Integer, nullable=False)
    features: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    customers: Mapped[int] = mapped_column(Integer, nullable=False)
    clusters: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    inertia: Mapped[float] = mapped_column(Double, nullable=False)
    # {k: silhouette} of the candidates tried when k was left to the run; null when given.
    silhouette: Mapped[dict[str, float] | None] = mapped_column(JSONB)
