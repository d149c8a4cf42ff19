import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Text, Uuid, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vafa.kit.db import new_metadata
from vafa.kit.inbox import inbox_table
from vafa.kit.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


class EntryKind(StrEnum):
    earn = "earn"
    reverse = "reverse"
    adjust = "adjust"


class Account(Base):
    """A club member's points account. `balance` is a cached total: it always equals the sum of
    the account's ledger entries, and is changed only in the transaction that appends an entry,
    under this row's lock (`GET /v1/loyalty/reconciliation` proves the equality)."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)

    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now()
    )


class LedgerEntry(Base):
    """Append-only: never updated, never deleted. Every change of a balance is one entry, and
    each entry carries the business key of what caused it ("earn:order:<order_ref>",
    "reverse:refund:<order_ref>:<refund_id>", "adjust:<customer_id>:<client key>"), so a
    replayed event or a retried request appends nothing."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("kind IN ('earn', 'reverse', 'adjust')", name="kind_known"),
        # A reversal capped at a zero balance is recorded with delta 0 (see points/service.py).
        CheckConstraint(
            "(kind = 'earn' AND delta > 0) OR (kind = 'reverse' AND delta <= 0)"
            " OR (kind = 'adjust' AND delta <> 0)",
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
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    order_ref: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    # Who made a manual adjustment ("staff:<id>"); empty for entries caused by events.
    author: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
