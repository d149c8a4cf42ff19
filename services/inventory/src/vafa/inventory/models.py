from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vafa.kit.db import new_metadata
from vafa.kit.inbox import inbox_table
from vafa.kit.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


class StockItem(Base):
    __tablename__ = "stock_items"

    sku: Mapped[str] = mapped_column(Text, primary_key=True)
    # Units physically held. A shop sale of a unit we did not have shows as a negative level:
    # the truth, for staff to correct, rather than a silently clamped zero.
    on_hand: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    low_stock_threshold: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


class StockMovement(Base):
    """Append-only: the stock level is the sum of a SKU's movements."""

    __tablename__ = "stock_movements"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # The business key of the movement ("sale:<order_ref>:<line_id>"), so a replay moves nothing.
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    sku: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    delta: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    order_ref: Mapped[str | None] = mapped_column(Text, index=True)
    author: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
