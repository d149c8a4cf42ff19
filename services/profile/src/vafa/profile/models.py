"""The profile database: customers, their identities, purchase history and timeline; the file's
attributes (demographics, custom fields, tags, notes, effective dates, households, consents);
duplicates, merges and their audit ledger.

Club accounts hang off `customers.id` (the club's own tables, migration 0003_club).
"""

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
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


class Household(Base):
    """Customers who joined together (a family): members point at it by `household_id`."""

    __tablename__ = "households"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint(
            "lifecycle_stage IN ('lead', 'customer', 'repeat', 'lapsed')", name="lifecycle_stage"
        ),
        CheckConstraint("kind IN ('lead', 'customer')", name="kind"),
        CheckConstraint(
            "acquisition_channel IN ('direct', 'social', 'referral', 'campaign')",
            name="acquisition_channel",
        ),
        CheckConstraint("gender IN ('female', 'male', 'other')", name="gender"),
        CheckConstraint("merged_into IS NULL OR merged_into <> id", name="not_merged_into_self"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    # 'lead': known to us, never bought; 'customer': at least one shop order is attributed;
    # 'repeat': two or more paid orders; 'lapsed': set by staff (or a later job).
    lifecycle_stage: Mapped[str] = mapped_column(Text, nullable=False, default="lead")
    # Registered-only versus purchased: 'customer' from the first PAID order on, never back.
    kind: Mapped[str] = mapped_column(Text, nullable=False, default="lead", server_default="lead")
    first_paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acquisition_channel: Mapped[str | None] = mapped_column(Text)
    acquisition_campaign: Mapped[str | None] = mapped_column(Text)
    # The referral code given when joining (loyalty owns the codes).
    referred_by_code: Mapped[str | None] = mapped_column(Text)
    # ISO 3166-1 alpha-2, from the latest billing address or staff.
    country_code: Mapped[str | None] = mapped_column(Text)
    city: Mapped[str | None] = mapped_column(Text)
    province: Mapped[str | None] = mapped_column(Text)
    # Normalised one-line postal address.
    address: Mapped[str | None] = mapped_column(Text)
    birth_date: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(Text)
    education: Mapped[str | None] = mapped_column(Text)
    personality_type: Mapped[str | None] = mapped_column(Text)
    # Values of the shop's custom fields by key, validated on write against
    # custom_field_definitions (JSON types: string, number, boolean, ISO date string, list).
    custom_fields: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, default=dict, server_default=text("'{}'::jsonb")
    )
    household_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("households.id", ondelete="SET NULL")
    )
    # Set when the file was merged into another: reads and events follow it to the survivor.
    merged_into: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id")
    )
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The name folded for matching (vafa_fold, migration 0002_file): ي/ى and ی, ك and ک,
    # Persian/Arabic digits and ASCII, ZWNJ/tatweel/diacritics all read alike.
    search_name: Mapped[str | None] = mapped_column(
        Text,
        Computed(
            "vafa_fold((COALESCE(first_name, '') || ' ') || COALESCE(last_name, ''))",
            persisted=True,
        ),
    )
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


# Name search and near-duplicate suggestions (similarity on folded names).
Index(
    "ix_customers_search_name_trgm",
    Customer.search_name,
    postgresql_using="gin",
    postgresql_ops={"search_name": "gin_trgm_ops"},
)
Index(
    "ix_customers_custom_fields",
    Customer.custom_fields,
    postgresql_using="gin",
    postgresql_ops={"custom_fields": "jsonb_path_ops"},
)
Index("ix_customers_household_id", Customer.household_id)
Index("ix_customers_merged_into", Customer.merged_into)
Index("ix_customers_kind", Customer.kind)


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
    """Append-only: every touchpoint of a customer, newest first on the file. (source,
    source_id) is what caused the entry (an event's ce_id, a PBX's call id), so a redelivery
    adds nothing."""

    __tablename__ = "timeline_entries"
    __table_args__ = (
        UniqueConstraint("source", "source_id"),
        CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
        CheckConstraint("duration_seconds >= 0", name="duration_seconds"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    # "order.placed", "order.paid", "order.cancelled", "order.refunded", "points.earned", ...
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # Who told us: "shop", "loyalty", "api", ...
    source: Mapped[str] = mapped_column(Text, nullable=False)
    source_id: Mapped[str] = mapped_column(Text, nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
    # Calls and messages: "inbound" / "outbound"; the call's length; the staff member or agent.
    direction: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    agent: Mapped[str | None] = mapped_column(Text)
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


class CustomerTag(Base):
    __tablename__ = "customer_tags"

    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


# The tag cloud counts by tag; list filters find customers by tag.
Index("ix_customer_tags_tag", CustomerTag.tag)


class CustomFieldDefinition(Base):
    """A shop-defined field ("favourite genre"); values live in customers.custom_fields."""

    __tablename__ = "custom_field_definitions"
    __table_args__ = (
        CheckConstraint(
            "type IN ('text', 'number', 'date', 'boolean', 'picklist', 'multi_picklist')",
            name="type",
        ),
        CheckConstraint("key ~ '^[a-z][a-z0-9_]{0,62}$'", name="key"),
    )

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    label: Mapped[str] = mapped_column(Text, nullable=False)
    type: Mapped[str] = mapped_column(Text, nullable=False)
    # The allowed values of a picklist, in display order.
    options: Mapped[list[str]] = mapped_column(
        JSONB, nullable=False, default=list, server_default=text("'[]'::jsonb")
    )
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


class CustomerNote(Base):
    __tablename__ = "customer_notes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    body: Mapped[str] = mapped_column(Text, nullable=False)
    author: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


Index("ix_customer_notes_customer_id", CustomerNote.customer_id, CustomerNote.created_at.desc())


class EffectiveDate(Base):
    """A named date that recurs yearly on its own calendar (year optional)."""

    __tablename__ = "effective_dates"
    __table_args__ = (
        CheckConstraint("calendar IN ('gregorian', 'jalali')", name="calendar"),
        CheckConstraint("month BETWEEN 1 AND 12", name="month"),
        CheckConstraint("day BETWEEN 1 AND 31", name="day"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    # "birthday", "wedding_anniversary", "child_birthday", "company_founding", "trip", ...
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    label: Mapped[str | None] = mapped_column(Text)
    calendar: Mapped[str] = mapped_column(Text, nullable=False)
    year: Mapped[int | None] = mapped_column(SmallInteger)
    month: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    day: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    related_person: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


Index("ix_effective_dates_customer_id", EffectiveDate.customer_id)
# The dates coming up: looked up by the (calendar, month, day) tuples of the window.
Index(
    "ix_effective_dates_recurrence", EffectiveDate.calendar, EffectiveDate.month, EffectiveDate.day
)


class EffectiveDateNotice(Base):
    """EffectiveDateUpcoming was emitted for this occurrence: once per date per occurrence."""

    __tablename__ = "effective_date_notices"

    date_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("effective_dates.id", ondelete="CASCADE"), primary_key=True
    )
    occurs_on: Mapped[date] = mapped_column(Date, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


class Consent(Base):
    """The current consent per channel (the snapshot); the history is in consent_changes."""

    __tablename__ = "consents"
    __table_args__ = (
        CheckConstraint("channel IN ('sms', 'email', 'phone', 'push')", name="channel"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ConsentChange(Base):
    """Append-only history of consent changes."""

    __tablename__ = "consent_changes"
    __table_args__ = (
        CheckConstraint("channel IN ('sms', 'email', 'phone', 'push')", name="channel"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    channel: Mapped[str] = mapped_column(Text, nullable=False)
    granted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    # What proved it: the keyword text, the link's token id, the staff member...
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


Index("ix_consent_changes_customer_id", ConsentChange.customer_id, ConsentChange.changed_at)


class DuplicateCandidate(Base):
    """The review queue: two files that may be one person. customer_a < customer_b."""

    __tablename__ = "duplicate_candidates"
    __table_args__ = (
        UniqueConstraint("customer_a", "customer_b"),
        CheckConstraint("customer_a < customer_b", name="ordered_pair"),
        CheckConstraint("status IN ('open', 'dismissed', 'merged')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    customer_a: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    customer_b: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    # "shared_identity" (exact: one order named identities of both), "similar_name",
    # "similar_phone", "similar_name_phone".
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(Text, nullable=False, default="open")
    resolved_by: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


Index("ix_duplicate_candidates_status", DuplicateCandidate.status, DuplicateCandidate.score.desc())
Index("ix_duplicate_candidates_customer_b", DuplicateCandidate.customer_b)


class Merge(Base):
    """The audit ledger of merges: before-images of both files and what moved, so an unmerge
    restores both exactly."""

    __tablename__ = "merges"
    __table_args__ = (CheckConstraint("status IN ('merged', 'unmerged')", name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    survivor_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id"), nullable=False
    )
    merged_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id"), nullable=False
    )
    status: Mapped[str] = mapped_column(Text, nullable=False, default="merged")
    survivor_before: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    merged_before: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    # Row keys moved from the merged file to the survivor, by table.
    moved: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    # The field-level survivorship decisions: field -> "survivor" / "merged" / "union".
    decisions: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    merged_by: Mapped[str] = mapped_column(Text, nullable=False)
    merged_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )
    unmerged_by: Mapped[str | None] = mapped_column(Text)
    unmerged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Index("ix_merges_survivor_id", Merge.survivor_id)
Index("ix_merges_merged_id", Merge.merged_id)


# -- the club account (0003_club) ------------------------------------------------------------


class ClubAccount(Base):
    """A customer's club membership and credentials. 'member': joined (signed up, or enrolled
    at the first paid purchase) but has not proved a phone or email by a code; 'verified': has."""

    __tablename__ = "club_accounts"
    __table_args__ = (
        CheckConstraint("status IN ('member', 'verified')", name="status"),
        CheckConstraint("joined_via IN ('signup', 'purchase', 'code')", name="joined_via"),
    )

    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(Text, nullable=False, default="member")
    # 'signup': the marketing club; 'purchase': the retention club; 'code': a known customer
    # who redeemed a sign-in or reset code.
    joined_via: Mapped[str] = mapped_column(Text, nullable=False)
    joined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # argon2id; NULL for an enrolled member who has not set a password yet.
    password_hash: Mapped[str | None] = mapped_column(Text)
    # The file this account belonged to before a merge moved it here (an unmerge moves it
    # back); NULL for an account opened on this file.
    merged_from: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
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


class OneTimeCode(Base):
    """A code sent to a member. Only its HMAC is kept; the code itself leaves in the
    OneTimeCodeRequested event and nowhere else."""

    __tablename__ = "one_time_codes"
    __table_args__ = (
        CheckConstraint("purpose IN ('sign_in', 'password_reset', 'verify')", name="purpose"),
        CheckConstraint("channel IN ('sms', 'email')", name="channel"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    purpose: Mapped[str] = mapped_column(Text, nullable=False)
    channel: Mapped[str] = mapped_column(Text, nullable=False)
    destination: Mapped[str] = mapped_column(Text, nullable=False)
    code_hash: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Set when redeemed, spent by wrong tries, or replaced by a newer code.
    spent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


# The live code of a purpose is the customer's newest unspent one.
Index(
    "ix_one_time_codes_live",
    OneTimeCode.customer_id,
    OneTimeCode.purpose,
    OneTimeCode.created_at.desc(),
    postgresql_where=OneTimeCode.spent_at.is_(None),
)


class SignInThrottle(Base):
    """Failed sign-ins per identifier (a normalised email or phone), known to us or not, so a
    lockout says nothing about whether an account exists."""

    __tablename__ = "sign_in_throttle"

    identifier: Mapped[str] = mapped_column(Text, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, server_default=func.now()
    )


# -- CSV imports (0003_club) -----------------------------------------------------------------


class CustomerImport(Base):
    """One uploaded CSV file and how far its import got. The file is kept until the import is
    done, so it can resume after a crash from `next_row` without doing a row twice."""

    __tablename__ = "customer_imports"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # sha256 of the bytes: the same file posted again is the same import.
    content_hash: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    filename: Mapped[str | None] = mapped_column(Text)
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(Text, nullable=False, default="pending")
    total_rows: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Data rows are numbered from 1 (the header is row 0); rows before next_row are done.
    next_row: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Set when the file cannot be read at all (no header, not UTF-8...).
    failure: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(Text)
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
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CustomerImportError(Base):
    """One problem with one row of an import; the row was not written."""

    __tablename__ = "customer_import_errors"

    import_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("customer_imports.id", ondelete="CASCADE"),
        primary_key=True,
    )
    row: Mapped[int] = mapped_column(Integer, primary_key=True)
    column: Mapped[str] = mapped_column(Text, primary_key=True)
    message: Mapped[str] = mapped_column(Text, nullable=False)


# The list's keyset: newest first, ties by id.
Index("ix_customers_created_id", Customer.created_at.desc(), Customer.id.desc())
