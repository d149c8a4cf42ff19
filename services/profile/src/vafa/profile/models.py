"""The profile database: customers, their identities, purchase history and timeline.

Built to grow: merges (a `merged_into` pointer), custom fields, tags, consents and club accounts
hang off `customers.id` later without reshaping what is here.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vafa.kit.db import new_metadata
from vafa.kit.inbox import inbox_table
from vafa.kit.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint("lifecycle_stage IN ('lead', 'customer')", name="lifecycle_stage"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    # 'lead': known to us, never bought; 'customer': at least one shop order is attributed.
    lifecycle_stage: Mapped[str] = mapped_column(Text, nullable=False, default="lead")
    # ISO 3166-1 alpha-2, from the latest billing address or staff.
    country_code: Mapped[str | None] = mapped_column(Text)
    city: Mapped[str | None] = mapped_column(Text)
    # Set in Python as well as in the database, so a flushed row is readable without a refresh.
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        nullable=False,
        default=utcnow,
        onupdate=utcnow,
        server_default=func.now(),
    )


class CustomerIdentity(Base):
    """One way to recognise a customer. Each (kind, value) belongs to at most one customer: the
    unique constraint is what makes concurrent resolution of the same new person safe."""

    __tablename__ = "customer_identities"
    __table_args__ = (
        UniqueConstraint("kind", "value"),
        CheckConstraint("kind IN ('email', 'phone', 'shop')", name="kind"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    # Normalised: emails lower-cased, phones E.164, shop ids "<platform>:<shop>:<shop_customer_id>".
    value: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


Index("ix_customer_identities_customer_id", CustomerIdentity.customer_id)


class Order(Base):
    """Purchase history: one row per shop order, attributed to the customer who placed it."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("status IN ('placed', 'paid', 'cancelled', 'refunded')", name="status"),
    )

    # "<platform>:<shop>:<order_id>", as the gateway builds it.
    order_ref: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(Text, nullable=False)
    total_minor: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    order_number: Mapped[str | None] = mapped_column(Text)
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        nullable=False,
        default=utcnow,
        onupdate=utcnow,
        server_default=func.now(),
    )


Index("ix_orders_customer_id", Order.customer_id)


class TimelineEntry(Base):
    """Append-only: every touchpoint of a customer, newest first on the file. `source_id` is the
    id of what caused the entry (an event's ce_id), so a redelivery adds nothing."""

    __tablename__ = "timeline_entries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    # "order.placed", "order.paid", "order.cancelled", "order.refunded", "points.earned", ...
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # Who told us: "shop", "loyalty", "api", ...
    source: Mapped[str] = mapped_column(Text, nullable=False)
    source_id: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


# The file and the timeline page read a customer's entries newest first, by keyset.
Index(
    "ix_timeline_entries_customer_recent",
    TimelineEntry.customer_id,
    TimelineEntry.occurred_at.desc(),
    TimelineEntry.id.desc(),
)
