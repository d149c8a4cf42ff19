"""Customers and identity resolution. Domain logic only: keyword-only functions that take the
session, never commit, and speak no HTTP beyond raising kit problems.

Resolution turns what a shop order says about its buyer (shop customer id, email, phone) into
one customer id: the shop id wins, then the email, then the phone. A new person gets a new file;
a known one gains the identities that are new. An identity that belongs to someone else is never
moved: the conflict is logged and reported, for a person (or the future merge) to settle.

One set of rules, one unit of work: a `Book` loads what a batch of resolutions needs in a few
statements (who holds the identities; the customers that can be matched, locked in id order),
applies the resolutions in order in memory (a later one sees the customers and identities an
earlier one created), and writes back in a few statements. The order worker runs a polled batch
through one Book; `resolve_customer` and `create_customer` (the API) run one resolution through
their own.

Concurrency: two events about the same new person can be handled at once (different orders,
different partitions). Both see no owner and both try to create a file; the unique (kind, value)
constraint lets exactly one claim the identities (the claims of a write-back are one insert in
(kind, value) order, so overlapping claimers cannot deadlock), and the other raises
IdentityRace, which rolls its transaction back. The consumer retries, and the retry finds the
winner's file (or, for an identity a known customer lost, records the conflict).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeAlias

import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.errors import Conflict, NotFound, Problem
from vafa.kit.money import MoneyError, to_major
from vafa.kit.outbox import OutboxEvent
from vafa.profile.consents.schemas import ConsentRead
from vafa.profile.customers.identities import (
    Identity,
    IdentityKind,
    InvalidIdentity,
    normalise_email,
    normalise_phone,
    region_or,
    shop_identity,
    split_shop_identity,
)
from vafa.profile.customers.schemas import (
    CustomerMatch,
    CustomerRead,
    IdentitiesRead,
    Kind,
    LifecycleStage,
    SpendRead,
)
from vafa.profile.customers.snapshot import apply_extras, load_extras
from vafa.profile.dates.schemas import EffectiveDateRead
from vafa.profile.events import CUSTOMERS_TOPIC, outbox
from vafa.profile.models import (
    Consent,
    Customer,
    CustomerIdentity,
    CustomerTag,
    EffectiveDate,
    Order,
)
from vafa.profile.timeline import service as timeline
from vafa.profile.timeline.schemas import TimelineEntryRead

log = structlog.get_logger(__name__)

FILE_TIMELINE_SIZE = 20

# Snapshot field names per identity kind, for CustomerUpdated.changed_fields.
_CHANGED_FIELD = {
    IdentityKind.email: "emails",
    IdentityKind.phone: "phones",
    IdentityKind.shop: "shop_identities",
}


class IdentityRace(RuntimeError):
    """Another transaction claimed an identity we were attaching since we looked. The
    transaction must roll back; a retry resolves against the other transaction's claim."""

    def __init__(self, identity: Identity, context: str = "") -> None:
        super().__init__(f"{identity.kind} claimed concurrently ({context})")
        self.identity = identity


class MergedMeanwhile(RuntimeError):
    """A customer to be matched was merged into another since its identities were read: roll
    back and retry (the retry resolves to the survivor)."""

    def __init__(self, customer_id: uuid.UUID, survivor_id: uuid.UUID) -> None:
        super().__init__(f"customer {customer_id} was merged into {survivor_id} meanwhile")


class IdentityTaken(Conflict):
    def __init__(self, kind: str, owner: uuid.UUID) -> None:
        super().__init__(
            f"This {kind} already belongs to another customer.",
            kind=kind,
            customer_id=str(owner),
        )
        self.kind = kind
        self.owner = owner


@dataclass(frozen=True, slots=True)
class IdentityConflict:
    kind: str
    owner: uuid.UUID


@dataclass(slots=True)
class Details:
    """What a source says about the person besides identities; fills blanks, never overwrites."""

    first_name: str | None = None
    last_name: str | None = None
    country_code: str | None = None
    city: str | None = None
    # How a new file was acquired ("direct", "social", "referral", "campaign") and the campaign.
    acquisition_channel: str | None = None
    acquisition_campaign: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class CustomerState:
    """A customer as a Book holds it: the row's fields, plus what this unit of work did."""

    id: uuid.UUID
    first_name: str | None
    last_name: str | None
    lifecycle_stage: str
    country_code: str | None
    city: str | None
    created_at: datetime
    updated_at: datetime
    # 'lead' until the first paid order, then 'customer' for good.
    kind: str = "lead"
    first_paid_at: datetime | None = None
    # Written for new files only (the earliest acquisition wins).
    acquisition_channel: str | None = None
    acquisition_campaign: str | None = None
    # Opened by this unit of work (so every identity it has is in `added`).
    new: bool = False
    # Identities attached by this unit of work, in the order they were claimed.
    added: list[Identity] = field(default_factory=list)


# What the file and the snapshot read: a row, or a Book's state of one.
AnyCustomer: TypeAlias = Customer | CustomerState


@dataclass(slots=True)
class Resolution:
    customer: CustomerState
    created: bool
    added: list[Identity] = field(default_factory=list)
    conflicts: list[IdentityConflict] = field(default_factory=list)
    # Snapshot fields that changed on a known customer (empty when created).
    changed_fields: list[str] = field(default_factory=list)


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _fill_blanks(customer: CustomerState, details: Details) -> list[str]:
    changed = []
    for name in ("first_name", "last_name", "city"):
        value = _clean(getattr(details, name))
        if value and not getattr(customer, name):
            setattr(customer, name, value)
            changed.append(name)
    country = _clean(details.country_code)
    if country and not customer.country_code:
        customer.country_code = country.upper()
        changed.append("country_code")
    return changed


def _dedupe(identities: Sequence[Identity]) -> list[Identity]:
    return list(dict.fromkeys(identities))


# Hot-path statements, built once. Columns travel as arrays, so each is one prepared statement
# whatever the batch size.
_OWNERS = text(
    "SELECT i.kind, i.value, i.customer_id FROM customer_identities i "
    "JOIN unnest(CAST(:kinds AS text[]), CAST(:values AS text[])) AS q(kind, value) "
    "ON i.kind = q.kind AND i.value = q.value"
)
_LOCK_CUSTOMERS = text(
    "SELECT id, first_name, last_name, lifecycle_stage, country_code, city, created_at, "
    "updated_at, kind, first_paid_at, merged_into FROM customers "
    "WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE"
)
# A Book's whole write-back is one statement: new customers, changed customers and the claims
# (any part may be empty). The identities' foreign key is checked at the end of the statement,
# so they may name customers inserted beside them. A claim waits for an uncommitted claimer of
# the same identity, then skips it if that one committed: what is missing from RETURNING was
# taken concurrently. Claims go in (kind, value) order so overlapping claimers cannot deadlock.
_FLUSH = text(
    "WITH new_customers AS ("
    " INSERT INTO customers"
    " (id, first_name, last_name, lifecycle_stage, country_code, city, created_at, updated_at,"
    " kind, first_paid_at, acquisition_channel, acquisition_campaign)"
    " SELECT * FROM unnest(CAST(:new_ids AS uuid[]), CAST(:new_first_names AS text[]),"
    " CAST(:new_last_names AS text[]), CAST(:new_stages AS text[]),"
    " CAST(:new_countries AS text[]), CAST(:new_cities AS text[]),"
    " CAST(:new_created AS timestamptz[]), CAST(:new_updated AS timestamptz[]),"
    " CAST(:new_kinds AS text[]), CAST(:new_first_paid AS timestamptz[]),"
    " CAST(:new_channels AS text[]), CAST(:new_campaigns AS text[]))"
    "), changed_customers AS ("
    " UPDATE customers c SET first_name = u.first_name, last_name = u.last_name,"
    " lifecycle_stage = u.lifecycle_stage, country_code = u.country_code, city = u.city,"
    " updated_at = u.updated_at, kind = u.kind, first_paid_at = u.first_paid_at"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:first_names AS text[]),"
    " CAST(:last_names AS text[]), CAST(:stages AS text[]), CAST(:countries AS text[]),"
    " CAST(:cities AS text[]), CAST(:updated AS timestamptz[]), CAST(:kinds AS text[]),"
    " CAST(:first_paid AS timestamptz[]))"
    " AS u(id, first_name, last_name, lifecycle_stage, country_code, city, updated_at, kind,"
    " first_paid_at)"
    " WHERE c.id = u.id"
    ") "
    "INSERT INTO customer_identities (customer_id, kind, value) "
    "SELECT c, k, v FROM unnest(CAST(:claim_customer_ids AS uuid[]),"
    " CAST(:claim_kinds AS text[]), CAST(:claim_values AS text[]))"
    " WITH ORDINALITY AS t(c, k, v, n) ORDER BY n "
    "ON CONFLICT (kind, value) DO NOTHING RETURNING kind, value"
)
_IDENTITIES_OF_MANY = text(
    "SELECT customer_id, kind, value FROM customer_identities "
    "WHERE customer_id = ANY(CAST(:ids AS uuid[])) ORDER BY id"
)


async def owners(
    session: AsyncSession, identities: Sequence[Identity]
) -> dict[Identity, uuid.UUID]:
    """Who holds each of these identities (absent when nobody does), in one statement."""
    if not identities:
        return {}
    unique = _dedupe(identities)
    rows = await session.execute(
        _OWNERS, {"kinds": [i.kind.value for i in unique], "values": [i.value for i in unique]}
    )
    return {Identity(IdentityKind(k), v): cid for k, v, cid in rows.all()}


def match(
    identities: Sequence[Identity],
    held: Mapping[Identity, uuid.UUID],
    customer_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """The customer these identities (in precedence order) describe: `customer_id` when forced,
    else the holder of the first identity that has one; None for a new person."""
    return customer_id or next((held[i] for i in identities if i in held), None)


class Book:
    """A unit of work over customers and their identities (see the module docstring).

    `load` (or `Book(held)` then `lock`) reads; `resolve` and `create` decide, in memory and in
    order; `flush` writes what was decided; `snapshots` renders customers as events carry them.
    Every customer a resolution can match must be locked first: `load` works out which."""

    def __init__(self, held: Mapping[Identity, uuid.UUID] | None = None) -> None:
        # Who holds each identity seen: loaded, then claimed here.
        self.owners: dict[Identity, uuid.UUID] = dict(held or {})
        self.customers: dict[uuid.UUID, CustomerState] = {}
        self._claimed: set[Identity] = set()
        self._claims: list[tuple[Identity, uuid.UUID]] = []
        self._unwritten: list[CustomerState] = []
        self._dirty: dict[uuid.UUID, CustomerState] = {}

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        *,
        identities: Sequence[Sequence[Identity]],
        forced: Iterable[uuid.UUID] = (),
    ) -> Book:
        """A Book ready for resolutions of these identity lists (each in precedence order),
        some forced onto these customers: two statements (owners; the customers that can be
        matched, locked in id order), one when nobody is known.

        Which customers can be matched: a resolution matches its forced customer, or the holder
        of its first held identity. What an earlier resolution of the batch claims only adds
        holders that are either new here or matched (so locked) by that earlier resolution; so
        the forced customers and, per list, the holder of the first identity held before the
        batch, are all a batch can match."""
        everything = _dedupe([i for ids in identities for i in ids])
        book = cls(await owners(session, everything))
        targets = set(forced)
        for ids in identities:
            first = match(ids, book.owners)
            if first is not None:
                targets.add(first)
        await book.lock(session, targets)
        return book

    async def lock(self, session: AsyncSession, ids: Iterable[uuid.UUID]) -> None:
        """Loads these customers, locked (FOR UPDATE) in id order, in one statement."""
        wanted = sorted(set(ids) - self.customers.keys())
        if not wanted:
            return
        for row in (await session.execute(_LOCK_CUSTOMERS, {"ids": wanted})).all():
            if row.merged_into is not None:
                # Merged after we read who holds the identities: the retry reads again and
                # finds the survivor holding them.
                raise MergedMeanwhile(row.id, row.merged_into)
            self.customers[row.id] = CustomerState(
                id=row.id,
                first_name=row.first_name,
                last_name=row.last_name,
                lifecycle_stage=row.lifecycle_stage,
                country_code=row.country_code,
                city=row.city,
                created_at=row.created_at,
                updated_at=row.updated_at,
                kind=row.kind,
                first_paid_at=row.first_paid_at,
            )

    def _claim(self, customer: CustomerState, identity: Identity) -> None:
        self.owners[identity] = customer.id
        self._claimed.add(identity)
        self._claims.append((identity, customer.id))
        customer.added.append(identity)

    def create(
        self,
        identities: Sequence[Identity],
        *,
        details: Details,
        stage: LifecycleStage,
        paid_at: datetime | None = None,
    ) -> CustomerState:
        """A new file holding these identities (none of which anybody holds); a customer (kind)
        when `paid_at` says a paid order made it."""
        now = utcnow()
        customer = CustomerState(
            id=uuid.uuid4(),
            first_name=None,
            last_name=None,
            lifecycle_stage=stage.value,
            country_code=None,
            city=None,
            created_at=now,
            updated_at=now,
            new=True,
            kind="customer" if paid_at else "lead",
            first_paid_at=paid_at,
            acquisition_channel=details.acquisition_channel,
            acquisition_campaign=details.acquisition_campaign,
        )
        _fill_blanks(customer, details)
        self.customers[customer.id] = customer
        self._unwritten.append(customer)
        # Claimed in a stable order so two creators of overlapping people cannot deadlock.
        for identity in sorted(identities):
            self._claim(customer, identity)
        return customer

    def resolve(
        self,
        identities: Sequence[Identity],
        *,
        details: Details,
        stage: LifecycleStage = LifecycleStage.customer,
        customer_id: uuid.UUID | None = None,
        context: str = "",
        paid_at: datetime | None = None,
    ) -> Resolution:
        """The customer these identities describe (the rules of `resolve_customer`), decided in
        memory against what the Book holds. `paid_at` (a paid order's time) turns a lead into
        a customer."""
        identities = _dedupe(identities)
        target = match(identities, self.owners, customer_id)
        if target is None:
            customer = self.create(identities, details=details, stage=stage, paid_at=paid_at)
            return Resolution(customer=customer, created=True, added=list(identities))

        found = self.customers.get(target)
        if found is None:  # a forced id that is gone (or a Book not loaded for this)
            raise LookupError(f"customer {target} does not exist")
        customer = found
        resolution = Resolution(customer=customer, created=False)
        for identity in sorted(identities):
            owner = self.owners.get(identity)
            if owner == customer.id:
                continue
            if owner is None:
                self._claim(customer, identity)
                resolution.added.append(identity)
                continue
            resolution.conflicts.append(IdentityConflict(identity.kind.value, owner))
            log.warning(
                "identity_conflict",
                kind=identity.kind.value,
                customer_id=str(customer.id),
                owner_id=str(owner),
                context=context,
            )
        changed = {_CHANGED_FIELD[i.kind] for i in resolution.added}
        changed.update(_fill_blanks(customer, details))
        # A lead becomes a customer; 'repeat' and 'lapsed' (set by staff) are left alone.
        if stage == LifecycleStage.customer and customer.lifecycle_stage == "lead":
            customer.lifecycle_stage = stage.value
            changed.add("lifecycle_stage")
        if paid_at is not None and customer.kind != "customer":
            customer.kind, customer.first_paid_at = "customer", paid_at
            changed.add("kind")
        resolution.changed_fields = sorted(changed)
        if changed and not customer.new:
            customer.updated_at = utcnow()
            self._dirty[customer.id] = customer
        return resolution

    async def flush(self, session: AsyncSession, *, context: str = "") -> None:
        """Writes what was decided since the last flush (new customers, changed customers,
        claims) in one statement. Raises IdentityRace when a claim was taken by a concurrent
        transaction (roll back and retry)."""
        new = self._unwritten
        dirty = [c for c in self._dirty.values() if not c.new]
        claims = sorted(self._claims)
        if not (new or dirty or claims):
            return
        self._unwritten, self._dirty, self._claims = [], {}, []
        result = await session.execute(
            _FLUSH,
            {
                "new_ids": [c.id for c in new],
                "new_first_names": [c.first_name for c in new],
                "new_last_names": [c.last_name for c in new],
                "new_stages": [c.lifecycle_stage for c in new],
                "new_countries": [c.country_code for c in new],
                "new_cities": [c.city for c in new],
                "new_created": [c.created_at for c in new],
                "new_updated": [c.updated_at for c in new],
                "new_kinds": [c.kind for c in new],
                "new_first_paid": [c.first_paid_at for c in new],
                "new_channels": [c.acquisition_channel for c in new],
                "new_campaigns": [c.acquisition_campaign for c in new],
                "ids": [c.id for c in dirty],
                "first_names": [c.first_name for c in dirty],
                "last_names": [c.last_name for c in dirty],
                "stages": [c.lifecycle_stage for c in dirty],
                "countries": [c.country_code for c in dirty],
                "cities": [c.city for c in dirty],
                "updated": [c.updated_at for c in dirty],
                "kinds": [c.kind for c in dirty],
                "first_paid": [c.first_paid_at for c in dirty],
                "claim_customer_ids": [cid for _, cid in claims],
                "claim_kinds": [i.kind.value for i, _ in claims],
                "claim_values": [i.value for i, _ in claims],
            },
        )
        got = {Identity(IdentityKind(k), v) for k, v in result.all()}
        for identity, _ in claims:
            if identity not in got:
                log.info("identity_race", kind=identity.kind.value, context=context)
                raise IdentityRace(identity, context)

    def capture(self, customer: CustomerState) -> CustomerState:
        """The customer as it stands now, for a snapshot rendered later (`snapshots`)."""
        return replace(customer, added=list(customer.added))

    async def snapshots(
        self, session: AsyncSession, captured: Sequence[CustomerState]
    ) -> list[profile_pb2.CustomerSnapshot]:
        """Captured customers as events carry them. The identities a known customer had before
        this unit of work are read in one statement (none for new customers)."""
        known = sorted({c.id for c in captured if not c.new})
        before: dict[uuid.UUID, list[Identity]] = {}
        if known:
            for cid, kind, value in (
                await session.execute(_IDENTITIES_OF_MANY, {"ids": known})
            ).all():
                identity = Identity(IdentityKind(kind), value)
                if identity not in self._claimed:  # already flushed: it is in `added`
                    before.setdefault(cid, []).append(identity)
        extras = await load_extras(session, [c.id for c in captured])
        return [
            build_snapshot(c, [*before.get(c.id, ()), *c.added], extras.get(c.id)) for c in captured
        ]


async def resolve_customer(
    session: AsyncSession,
    *,
    identities: Sequence[Identity],
    details: Details,
    stage: LifecycleStage = LifecycleStage.customer,
    customer_id: uuid.UUID | None = None,
    context: str = "",
) -> Resolution:
    """The customer these identities describe, created if nobody matches, with the identities
    that are new attached. `identities` are in precedence order (shop id, email, phone).
    `customer_id` forces the match (an order already attributed keeps its customer).
    `stage` is the least lifecycle stage the customer has afterwards. Raises IdentityRace when
    a concurrent transaction claimed one of the identities being attached first."""
    identities = _dedupe(identities)
    book = await Book.load(
        session, identities=[identities], forced=[customer_id] if customer_id else []
    )
    resolution = book.resolve(
        identities, details=details, stage=stage, customer_id=customer_id, context=context
    )
    await book.flush(session, context=context)
    return resolution


async def create_customer(
    session: AsyncSession,
    *,
    first_name: str | None,
    last_name: str | None,
    email: str | None,
    phone: str | None,
    country_code: str | None,
    city: str | None,
    default_region: str,
    acquisition_channel: str | None = None,
    acquisition_campaign: str | None = None,
) -> CustomerState:
    """A lead from staff or the shop's backend. Raises InvalidEmail/InvalidPhone for bad input,
    IdentityTaken (409) when the email or phone belongs to someone, and publishes
    CustomerRegistered."""
    identities = []
    if _clean(email):
        identities.append(Identity(IdentityKind.email, normalise_email(email or "")))
    if _clean(phone):
        region = region_or(country_code, default_region)
        identities.append(Identity(IdentityKind.phone, normalise_phone(phone or "", region=region)))
    held = await owners(session, identities)
    for identity in identities:
        if identity in held:
            raise IdentityTaken(identity.kind.value, held[identity])
    book = Book(held)
    customer = book.create(
        identities,
        details=Details(
            first_name=first_name,
            last_name=last_name,
            country_code=country_code,
            city=city,
            acquisition_channel=acquisition_channel,
            acquisition_campaign=acquisition_campaign,
        ),
        stage=LifecycleStage.lead,
    )
    try:
        await book.flush(session, context="api")
    except IdentityRace as race:
        owner = (await owners(session, [race.identity]))[race.identity]
        raise IdentityTaken(race.identity.kind.value, owner) from None
    await emit_registered(session, customer=customer, source="api")
    return customer


async def get_customer(session: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
    return await session.get(Customer, customer_id)


class CustomerMergedAway(Problem):
    """A merged file is not read or written: 404 with a pointer to the survivor (`merged_into`
    and `location`), so a client re-keys instead of silently acting on another file."""

    def __init__(self, customer_id: uuid.UUID, survivor_id: uuid.UUID) -> None:
        super().__init__(
            404,
            f"The customer {customer_id} was merged into {survivor_id}.",
            type="customer-merged",
            customer_id=str(customer_id),
            merged_into=str(survivor_id),
            location=f"/v1/customers/{survivor_id}",
        )
        self.survivor_id = survivor_id


async def get_file(
    session: AsyncSession, customer_id: uuid.UUID, *, lock: bool = False
) -> Customer:
    """The customer's file (locked FOR UPDATE with `lock`): NotFound for an unknown id,
    CustomerMergedAway for a merged one."""
    query = (
        select(Customer).where(Customer.id == customer_id).execution_options(populate_existing=True)
    )
    if lock:
        query = query.with_for_update()
    customer = await session.scalar(query)
    if customer is None:
        raise NotFound(f"No customer has the id {customer_id}.", customer_id=str(customer_id))
    if customer.merged_into is not None:
        raise CustomerMergedAway(customer_id, await survivor_of(session, customer_id))
    return customer


async def lock_file(session: AsyncSession, customer_id: uuid.UUID) -> Customer:
    """The file, locked for a change: 409 once erased (writing to it would re-identify it)."""
    customer = await get_file(session, customer_id, lock=True)
    if customer.erased_at is not None:
        raise Conflict(
            "This file was erased; it takes no more changes.",
            customer_id=str(customer_id),
            erased_at=customer.erased_at.isoformat(),
        )
    return customer


_SURVIVORS = text(
    "WITH RECURSIVE chain(start, id, merged_into, depth) AS ("
    " SELECT id, id, merged_into, 0 FROM customers WHERE id = ANY(CAST(:ids AS uuid[]))"
    " UNION ALL SELECT ch.start, c.id, c.merged_into, ch.depth + 1 FROM chain ch"
    " JOIN customers c ON c.id = ch.merged_into WHERE ch.depth < 50"
    ") SELECT start, id FROM chain WHERE merged_into IS NULL"
)


async def survivors(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """For each known id, the file it lives on now: itself, or the survivor of its merge(s)
    (followed through chains). Unknown ids are absent. One statement."""
    if not ids:
        return {}
    rows = await session.execute(_SURVIVORS, {"ids": sorted(set(ids))})
    return {start: cid for start, cid in rows.all()}


async def survivor_of(session: AsyncSession, customer_id: uuid.UUID) -> uuid.UUID:
    return (await survivors(session, [customer_id])).get(customer_id, customer_id)


async def find_by_identity(session: AsyncSession, *, identity: Identity) -> Customer | None:
    return await session.scalar(
        select(Customer)
        .join(CustomerIdentity, CustomerIdentity.customer_id == Customer.id)
        .where(
            CustomerIdentity.kind == identity.kind.value,
            CustomerIdentity.value == identity.value,
        )
    )


_MATCH = text(
    """
    SELECT c.id, c.first_name, c.last_name, c.kind, c.lifecycle_stage, c.created_at,
           (SELECT COALESCE(json_agg(json_build_array(i.kind, i.value) ORDER BY i.id), '[]')
              FROM customer_identities i WHERE i.customer_id = c.id) AS identities,
           (SELECT count(*) FROM orders o
             WHERE o.customer_id = c.id AND o.status <> 'cancelled') AS order_count
    FROM customer_identities hit
    JOIN customers c ON c.id = hit.customer_id
    WHERE hit.kind = :kind AND hit.value = :value
    """
)


async def match_identity(session: AsyncSession, *, identity: Identity) -> CustomerMatch | None:
    """The lookup in one statement (the identity's unique index, then the file's identities
    and order count): a storefront calls it on every visit, the whole file is another call."""
    row = (
        await session.execute(_MATCH, {"kind": identity.kind.value, "value": identity.value})
    ).one_or_none()
    if row is None:
        return None
    found: dict[str, list[str]] = {"email": [], "phone": [], "shop": []}
    for kind, value in row.identities:
        found.setdefault(kind, []).append(value)
    return CustomerMatch(
        id=row.id,
        first_name=row.first_name,
        last_name=row.last_name,
        kind=row.kind,
        lifecycle_stage=row.lifecycle_stage,
        identities=IdentitiesRead(
            emails=found["email"], phones=found["phone"], shop_ids=found["shop"]
        ),
        order_count=row.order_count,
        created_at=row.created_at,
    )


async def identities_of(session: AsyncSession, customer_id: uuid.UUID) -> list[Identity]:
    rows = await session.execute(
        select(CustomerIdentity.kind, CustomerIdentity.value)
        .where(CustomerIdentity.customer_id == customer_id)
        .order_by(CustomerIdentity.id)
    )
    return [Identity(IdentityKind(k), v) for k, v in rows.all()]


def build_snapshot(
    customer: AnyCustomer,
    identities: Sequence[Identity],
    extras: Mapping[str, Any] | None = None,
) -> profile_pb2.CustomerSnapshot:
    """The customer as events carry it, with these identities (in the order they were attached)
    and the `extras` of `snapshot.load_extras` (the rest of the file)."""
    shop_ids = []
    for identity in identities:
        if identity.kind == IdentityKind.shop:
            platform, shop, shop_customer_id = split_shop_identity(identity.value)
            shop_ids.append(
                profile_pb2.ShopIdentity(
                    platform=platform, shop=shop, shop_customer_id=shop_customer_id
                )
            )
    created_at = Timestamp()
    created_at.FromDatetime(customer.created_at)
    snap = profile_pb2.CustomerSnapshot(
        customer_id=str(customer.id),
        first_name=customer.first_name or "",
        last_name=customer.last_name or "",
        emails=[i.value for i in identities if i.kind == IdentityKind.email],
        phones=[i.value for i in identities if i.kind == IdentityKind.phone],
        shop_identities=shop_ids,
        lifecycle_stage=customer.lifecycle_stage,
        country_code=customer.country_code or "",
        city=customer.city or "",
        created_at=created_at,
        kind=customer.kind,
        club_status="none",
    )
    if extras:
        apply_extras(snap, extras)
    return snap


async def snapshot(session: AsyncSession, customer: AnyCustomer) -> profile_pb2.CustomerSnapshot:
    """The whole file as events carry it (identities and extras read now)."""
    extras = await load_extras(session, [customer.id])
    return build_snapshot(
        customer, await identities_of(session, customer.id), extras.get(customer.id)
    )


def registered_event(
    snapshot: profile_pb2.CustomerSnapshot, *, source: str, traceparent: str | None = None
) -> OutboxEvent:
    return OutboxEvent(
        CUSTOMERS_TOPIC,
        snapshot.customer_id,
        profile_pb2.CustomerRegistered(customer=snapshot, source=source),
        # One registration per customer, however often the creating event is replayed.
        event_id=cloudevents.deterministic_id("profile", "registered", snapshot.customer_id),
        traceparent=traceparent,
    )


def updated_event(
    snapshot: profile_pb2.CustomerSnapshot,
    *,
    changed_fields: Sequence[str],
    cause_id: str | None,
    traceparent: str | None = None,
) -> OutboxEvent:
    """`cause_id` (the id of the event that caused the change) makes the event id stable."""
    return OutboxEvent(
        CUSTOMERS_TOPIC,
        snapshot.customer_id,
        profile_pb2.CustomerUpdated(customer=snapshot, changed_fields=list(changed_fields)),
        event_id=(
            cloudevents.deterministic_id("profile", "updated", snapshot.customer_id, cause_id)
            if cause_id
            else None
        ),
        traceparent=traceparent,
    )


def resolution_event(
    resolution: Resolution,
    snapshot: profile_pb2.CustomerSnapshot,
    *,
    source: str,
    cause_id: str | None,
    traceparent: str | None = None,
) -> OutboxEvent | None:
    """CustomerRegistered for a new file, CustomerUpdated for a changed one, else nothing."""
    if resolution.created:
        return registered_event(snapshot, source=source, traceparent=traceparent)
    if resolution.changed_fields:
        return updated_event(
            snapshot,
            changed_fields=resolution.changed_fields,
            cause_id=cause_id,
            traceparent=traceparent,
        )
    return None


async def emit_registered(session: AsyncSession, *, customer: AnyCustomer, source: str) -> None:
    await outbox.add_many(
        session, [registered_event(await snapshot(session, customer), source=source)]
    )


async def emit_updated(
    session: AsyncSession,
    *,
    customer: AnyCustomer,
    changed_fields: Sequence[str],
    cause_id: str | None = None,
) -> None:
    """`cause_id` (the id of the event that caused the change) makes the event id stable."""
    event = updated_event(
        await snapshot(session, customer), changed_fields=changed_fields, cause_id=cause_id
    )
    await outbox.add_many(session, [event])


async def emit_resolution(
    session: AsyncSession, *, resolution: Resolution, source: str, cause_id: str | None
) -> None:
    """CustomerRegistered for a new file, CustomerUpdated for a changed one, else nothing
    (after the resolution was flushed)."""
    if not (resolution.created or resolution.changed_fields):
        return
    event = resolution_event(
        resolution, await snapshot(session, resolution.customer), source=source, cause_id=cause_id
    )
    if event is not None:
        await outbox.add_many(session, [event])


def _major(amount_minor: int, currency: str) -> str:
    try:
        return str(to_major(amount_minor, currency))
    except MoneyError:
        return str(amount_minor)


async def read_file(session: AsyncSession, *, customer: AnyCustomer) -> CustomerRead:
    """The customer file: attributes, identities, consents, dates, purchase summary and the
    latest timeline entries."""
    row = customer if isinstance(customer, Customer) else await session.get(Customer, customer.id)
    assert row is not None
    identities = await identities_of(session, customer.id)
    order_count = await session.scalar(
        select(func.count())
        .select_from(Order)
        .where(Order.customer_id == customer.id, Order.status != "cancelled")
    )
    net = func.sum(Order.total_minor - Order.refunded_minor)
    spend_rows = await session.execute(
        select(Order.currency, net)
        .where(Order.customer_id == customer.id, Order.status.in_(("paid", "refunded")))
        .group_by(Order.currency)
        .order_by(Order.currency)
    )
    entries, next_cursor = await timeline.list_entries(
        session, customer_id=customer.id, limit=FILE_TIMELINE_SIZE
    )
    tags = await session.scalars(
        select(CustomerTag.tag).where(CustomerTag.customer_id == row.id).order_by(CustomerTag.tag)
    )
    consents = await session.scalars(
        select(Consent).where(Consent.customer_id == row.id).order_by(Consent.channel)
    )
    dates = await session.scalars(
        select(EffectiveDate)
        .where(EffectiveDate.customer_id == row.id)
        .order_by(EffectiveDate.created_at, EffectiveDate.id)
    )
    return CustomerRead(
        id=row.id,
        first_name=row.first_name,
        last_name=row.last_name,
        lifecycle_stage=LifecycleStage(row.lifecycle_stage),
        kind=Kind(row.kind),
        first_paid_at=row.first_paid_at,
        acquisition_channel=row.acquisition_channel,
        acquisition_campaign=row.acquisition_campaign,
        referred_by_code=row.referred_by_code,
        country_code=row.country_code,
        province=row.province,
        city=row.city,
        address=row.address,
        birth_date=row.birth_date,
        gender=row.gender,
        education=row.education,
        personality_type=row.personality_type,
        custom_fields=row.custom_fields,
        tags=list(tags.all()),
        consents=[ConsentRead.model_validate(c) for c in consents.all()],
        effective_dates=[EffectiveDateRead.model_validate(d) for d in dates.all()],
        household_id=row.household_id,
        erased_at=row.erased_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        identities=IdentitiesRead(
            emails=[i.value for i in identities if i.kind == IdentityKind.email],
            phones=[i.value for i in identities if i.kind == IdentityKind.phone],
            shop_ids=[i.value for i in identities if i.kind == IdentityKind.shop],
        ),
        order_count=order_count or 0,
        total_spend=[
            SpendRead(currency=cur, amount_minor=int(total), amount=_major(int(total), cur))
            for cur, total in spend_rows.all()
        ],
        timeline=[TimelineEntryRead.model_validate(e) for e in entries],
        timeline_next_cursor=next_cursor,
    )


# Attributes PATCH may change, as snapshot field names (custom_fields is handled apart).
_PLAIN_FIELDS = (
    "first_name",
    "last_name",
    "lifecycle_stage",
    "acquisition_channel",
    "acquisition_campaign",
    "referred_by_code",
    "country_code",
    "province",
    "city",
    "address",
    "birth_date",
    "gender",
    "education",
    "personality_type",
)


async def update_customer(
    session: AsyncSession, *, customer_id: uuid.UUID, changes: Mapping[str, Any]
) -> tuple[Customer, list[str]]:
    """Applies attribute changes (only the keys given; None clears) to the locked file and
    publishes CustomerUpdated with the fields that changed. Custom field values are validated
    against their definitions (attributes.service.InvalidFields names each bad key). Returns
    the file and the changed fields (none: nothing published)."""
    from vafa.profile.attributes import service as attributes

    customer = await lock_file(session, customer_id)
    changed: list[str] = []
    for name in _PLAIN_FIELDS:
        if name not in changes:
            continue
        value = changes[name]
        if isinstance(value, str):
            value = value.strip() or None
            if name == "country_code" and value:
                value = value.upper()
        if hasattr(value, "value"):  # enums
            value = value.value
        if getattr(customer, name) != value:
            setattr(customer, name, value)
            changed.append(name)
    if changes.get("custom_fields"):
        values = attributes.validate_values(
            await attributes.definitions(session), changes["custom_fields"]
        )
        merged = dict(customer.custom_fields)
        for key, value in values.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if merged != customer.custom_fields:
            customer.custom_fields = merged
            changed.append("custom_fields")
    if changed:
        customer.updated_at = utcnow()
        await session.flush()
        await emit_updated(session, customer=customer, changed_fields=sorted(changed))
    return customer, sorted(changed)


def parse_identity(kind: str, value: str, *, region: str) -> Identity:
    """A staff-entered identity, normalised; InvalidIdentity (InvalidEmail/InvalidPhone) when
    it cannot be read."""
    k = IdentityKind(kind)
    if k == IdentityKind.email:
        return Identity(k, normalise_email(value))
    if k == IdentityKind.phone:
        return Identity(k, normalise_phone(value, region=region))
    platform, shop, shop_customer_id = split_shop_identity(value.strip())
    if not (platform and shop and shop_customer_id):
        raise InvalidShopIdentity('expected "<platform>:<shop>:<shop_customer_id>"')
    return Identity(k, shop_identity(platform, shop, shop_customer_id))


class InvalidShopIdentity(InvalidIdentity):
    pass


async def add_identity(
    session: AsyncSession, *, customer_id: uuid.UUID, identity: Identity
) -> tuple[Customer, bool]:
    """Attaches the identity: (the file, whether it was added; False when the file already
    had it). IdentityTaken (409) when another file holds it."""
    customer = await lock_file(session, customer_id)
    held = await owners(session, [identity])
    owner = held.get(identity)
    if owner == customer_id:
        return customer, False
    if owner is not None:
        raise IdentityTaken(identity.kind.value, owner)
    result = await session.execute(
        text(
            "INSERT INTO customer_identities (customer_id, kind, value) VALUES (:c, :k, :v) "
            "ON CONFLICT (kind, value) DO NOTHING RETURNING id"
        ),
        {"c": customer_id, "k": identity.kind.value, "v": identity.value},
    )
    if result.scalar_one_or_none() is None:  # claimed concurrently since we looked
        owner = (await owners(session, [identity]))[identity]
        raise IdentityTaken(identity.kind.value, owner)
    customer.updated_at = utcnow()
    await session.flush()
    await emit_updated(session, customer=customer, changed_fields=[_CHANGED_FIELD[identity.kind]])
    return customer, True


async def remove_identity(
    session: AsyncSession, *, customer_id: uuid.UUID, identity: Identity
) -> Customer:
    """Detaches the identity from the file (NotFound when the file does not hold it)."""
    customer = await lock_file(session, customer_id)
    result = await session.execute(
        text(
            "DELETE FROM customer_identities WHERE customer_id = :c AND kind = :k AND value = :v "
            "RETURNING id"
        ),
        {"c": customer_id, "k": identity.kind.value, "v": identity.value},
    )
    if result.scalar_one_or_none() is None:
        raise NotFound(f"The customer has no such {identity.kind.value}.", kind=identity.kind.value)
    customer.updated_at = utcnow()
    await session.flush()
    await emit_updated(session, customer=customer, changed_fields=[_CHANGED_FIELD[identity.kind]])
    return customer
