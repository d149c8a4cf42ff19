from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vafa.kit.db import new_metadata
from vafa.kit.inbox import inbox_table
from vafa.kit.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)

DEFAULT_LOCATION = "default"


class Product(Base):
    """The catalogue: what a SKU is. Independent of stock (a SKU may be counted before it is
    described, and described before any unit arrives)."""

    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(Text, primary_key=True)
    product_id: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    name: Mapped[str] = mapped_column(Text, nullable=False)
    brand: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    category: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    price_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("price_minor >= 0", name="price_not_negative"),
        Index("ix_products_category", "category"),
    )


class Location(Base):
    """A warehouse or store. Reservations take units from active locations in ascending
    `priority` (then id), splitting a line when one location is short."""

    __tablename__ = "locations"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, server_default="100")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (CheckConstraint("kind IN ('warehouse', 'store')", name="kind"),)


class StockItem(Base):
    """A SKU's totals over all locations, and the row every stock writer locks first (in sku
    order), so the per-location rows need no locks of their own."""

    __tablename__ = "stock_items"

    sku: Mapped[str] = mapped_column(Text, primary_key=True)
    on_hand: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    low_stock_threshold: Mapped[int | None] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0", default=0)
    # The last status announced, so a change of status is seen (and published) exactly once.
    status: Mapped[str] = mapped_column(
        Text, nullable=False, server_default="out_of_stock", default="out_of_stock"
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )

    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )


class StockLevel(Base):
    __tablename__ = "stock_levels"

    sku: Mapped[str] = mapped_column(
        Text, ForeignKey("stock_items.sku", ondelete="CASCADE"), primary_key=True
    )
    location_id: Mapped[str] = mapped_column(Text, ForeignKey("locations.id"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    reserved: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")

    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )


class StockMovement(Base):
    """Append-only: a location's on_hand is the sum of its movements' `delta`, its reserved
    units the sum of their `reserved_delta`."""

    __tablename__ = "stock_movements"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # The business key of the movement ("sale:<order_ref>:<sku>:<location>"), so a replay moves
    # nothing.
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    sku: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    delta: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The movement's kind (see `kind`'s check); historically the only reason column.
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    order_ref: Mapped[str | None] = mapped_column(Text, index=True)
    author: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    location_id: Mapped[str] = mapped_column(Text, nullable=False, server_default=DEFAULT_LOCATION)
    reserved_delta: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # Free text: the staff's reason or the event that caused it.
    note: Mapped[str] = mapped_column(Text, nullable=False, server_default="")


class Reservation(Base):
    """One per order_ref: `new` (claimed, being decided) -> `held` -> `confirmed` | `released`;
    `confirmed` -> `released` when a paid order is cancelled. The units are in the ledger
    (movements carrying the order_ref), so what an order holds or took is never a second copy."""

    __tablename__ = "reservations"

    order_ref: Mapped[str] = mapped_column(Text, primary_key=True)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False, server_default="order")
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint(
            "state IN ('new', 'held', 'confirmed', 'released', 'expired')", name="state"
        ),
        # The expiry sweep reads only live holds.
        Index(
            "ix_reservations_held_expiry",
            "expires_at",
            postgresql_where=text("state = 'held'"),
        ),
    )


class ReservationLine(Base):
    """What the order asked for per SKU and what could be held: the rest is a backorder."""

    __tablename__ = "reservation_lines"

    order_ref: Mapped[str] = mapped_column(
        Text, ForeignKey("reservations.order_ref", ondelete="CASCADE"), primary_key=True
    )
    sku: Mapped[str] = mapped_column(Text, primary_key=True)
    requested: Mapped[int] = mapped_column(BigInteger, nullable=False)
    allocated: Mapped[int] = mapped_column(BigInteger, nullable=False)


class BackInStockSubscription(Base):
    __tablename__ = "back_in_stock_subscriptions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(Text, nullable=False)
    customer_id: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # One waiting subscription per customer and SKU; once notified they may subscribe again.
        Index(
            "uq_back_in_stock_waiting",
            "sku",
            "customer_id",
            unique=True,
            postgresql_where=text("notified_at IS NULL"),
        ),
    )
