"""Customers and identity resolution. Domain logic only: keyword-only functions that take the
session, never commit, and speak no HTTP beyond raising kit problems.

Resolution turns what a shop order says about its buyer (shop customer id, email, phone) into
one customer id: the shop id wins, then the email, then the phone. A new person gets a new file;
a known one gains the identities that are new. An identity that belongs to someone else is never
moved: the conflict is logged and reported, for a person (or the future merge) to settle.

Concurrency: two events about the same new person can be handled at once (different orders,
different partitions). Both see no owner and both try to create a file; the unique (kind, value)
constraint lets exactly one claim the identities, and the other raises IdentityRace, which
rolls its transaction back. The consumer retries the event, and the retry finds the winner's file.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.errors import Conflict
from vafa.kit.money import MoneyError, to_major
from vafa.profile.customers.identities import (
    Identity,
    IdentityKind,
    normalise_email,
    normalise_phone,
    region_or,
    split_shop_identity,
)
from vafa.profile.customers.schemas import (
    CustomerRead,
    IdentitiesRead,
    LifecycleStage,
    SpendRead,
)
from vafa.profile.events import CUSTOMERS_TOPIC, outbox
from vafa.profile.models import Customer, CustomerIdentity, Order
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
    """Another transaction claimed an identity of the person being created since we looked.
    The transaction must roll back; a retry resolves to the other transaction's customer."""


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


@dataclass(slots=True)
class Resolution:
    customer: Customer
    created: bool
    added: list[Identity] = field(default_factory=list)
    conflicts: list[IdentityConflict] = field(default_factory=list)
    # Snapshot fields that changed on a known customer (empty when created).
    changed_fields: list[str] = field(default_factory=list)


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


async def owners(
    session: AsyncSession, identities: Sequence[Identity]
) -> dict[Identity, uuid.UUID]:
    """Who holds each of these identities (absent when nobody does)."""
    if not identities:
        return {}
    rows = await session.execute(
        select(CustomerIdentity.kind, CustomerIdentity.value, CustomerIdentity.customer_id).where(
            tuple_(CustomerIdentity.kind, CustomerIdentity.value).in_(
                [(i.kind.value, i.value) for i in identities]
            )
        )
    )
    return {Identity(IdentityKind(k), v): cid for k, v, cid in rows.all()}


async def _claim(session: AsyncSession, customer_id: uuid.UUID, identity: Identity) -> bool:
    """Attaches the identity unless someone holds it (waiting for an uncommitted claimer)."""
    result = await session.execute(
        pg_insert(CustomerIdentity)
        .values(customer_id=customer_id, kind=identity.kind.value, value=identity.value)
        .on_conflict_do_nothing(index_elements=[CustomerIdentity.kind, CustomerIdentity.value])
        .returning(CustomerIdentity.id)
    )
    return result.scalar_one_or_none() is not None


def _fill_blanks(customer: Customer, details: Details) -> list[str]:
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
    a concurrent transaction claimed one of a new person's identities first."""
    identities = _dedupe(identities)
    held = await owners(session, identities)
    target = customer_id or next((held[i] for i in identities if i in held), None)

    if target is None:
        customer = Customer(lifecycle_stage=stage.value)
        _fill_blanks(customer, details)
        session.add(customer)
        await session.flush()
        # Claim in a stable order so two creators of overlapping people cannot deadlock.
        for identity in sorted(identities):
            if not await _claim(session, customer.id, identity):
                log.info("identity_race", kind=identity.kind.value, context=context)
                raise IdentityRace(f"{identity.kind} claimed concurrently ({context})")
        return Resolution(customer=customer, created=True, added=list(identities))

    locked = await session.scalar(select(Customer).where(Customer.id == target).with_for_update())
    if locked is None:  # a forced id that is gone: nothing to attach to
        raise LookupError(f"customer {target} does not exist")
    customer = locked
    resolution = Resolution(customer=customer, created=False)
    for identity in sorted(identities):
        owner = held.get(identity)
        if owner == customer.id:
            continue
        if owner is None and await _claim(session, customer.id, identity):
            resolution.added.append(identity)
            continue
        if owner is None:  # claimed concurrently since we looked
            owner = (await owners(session, [identity])).get(identity)
            if owner == customer.id:
                continue
        assert owner is not None
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
    if stage == LifecycleStage.customer and customer.lifecycle_stage != stage.value:
        customer.lifecycle_stage = stage.value
        changed.add("lifecycle_stage")
    resolution.changed_fields = sorted(changed)
    if changed:
        await session.flush()
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
) -> Customer:
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
    customer = Customer(lifecycle_stage=LifecycleStage.lead.value)
    _fill_blanks(
        customer,
        Details(first_name=first_name, last_name=last_name, country_code=country_code, city=city),
    )
    session.add(customer)
    await session.flush()
    for identity in sorted(identities):
        if not await _claim(session, customer.id, identity):
            owner = (await owners(session, [identity]))[identity]
            raise IdentityTaken(identity.kind.value, owner)
    await emit_registered(session, customer=customer, source="api")
    return customer


async def get_customer(session: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
    return await session.get(Customer, customer_id)


async def find_by_identity(session: AsyncSession, *, identity: Identity) -> Customer | None:
    return await session.scalar(
        select(Customer)
        .join(CustomerIdentity, CustomerIdentity.customer_id == Customer.id)
        .where(
            CustomerIdentity.kind == identity.kind.value,
            CustomerIdentity.value == identity.value,
        )
    )


async def identities_of(session: AsyncSession, customer_id: uuid.UUID) -> list[Identity]:
    rows = await session.execute(
        select(CustomerIdentity.kind, CustomerIdentity.value)
        .where(CustomerIdentity.customer_id == customer_id)
        .order_by(CustomerIdentity.id)
    )
    return [Identity(IdentityKind(k), v) for k, v in rows.all()]


def _timestamp(customer: Customer) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(customer.created_at)
    return ts


async def snapshot(session: AsyncSession, customer: Customer) -> profile_pb2.CustomerSnapshot:
    identities = await identities_of(session, customer.id)
    shop_ids = []
    for identity in identities:
        if identity.kind == IdentityKind.shop:
            platform, shop, shop_customer_id = split_shop_identity(identity.value)
            shop_ids.append(
                profile_pb2.ShopIdentity(
                    platform=platform, shop=shop, shop_customer_id=shop_customer_id
                )
            )
    return profile_pb2.CustomerSnapshot(
        customer_id=str(customer.id),
        first_name=customer.first_name or "",
        last_name=customer.last_name or "",
        emails=[i.value for i in identities if i.kind == IdentityKind.email],
        phones=[i.value for i in identities if i.kind == IdentityKind.phone],
        shop_identities=shop_ids,
        lifecycle_stage=customer.lifecycle_stage,
        country_code=customer.country_code or "",
        city=customer.city or "",
        created_at=_timestamp(customer),
    )


async def emit_registered(session: AsyncSession, *, customer: Customer, source: str) -> None:
    await outbox.add(
        session,
        topic=CUSTOMERS_TOPIC,
        key=str(customer.id),
        message=profile_pb2.CustomerRegistered(
            customer=await snapshot(session, customer), source=source
        ),
        # One registration per customer, however often the creating event is replayed.
        event_id=cloudevents.deterministic_id("profile", "registered", str(customer.id)),
    )


async def emit_updated(
    session: AsyncSession,
    *,
    customer: Customer,
    changed_fields: Sequence[str],
    cause_id: str | None = None,
) -> None:
    """`cause_id` (the id of the event that caused the change) makes the event id stable."""
    await outbox.add(
        session,
        topic=CUSTOMERS_TOPIC,
        key=str(customer.id),
        message=profile_pb2.CustomerUpdated(
            customer=await snapshot(session, customer), changed_fields=list(changed_fields)
        ),
        event_id=(
            cloudevents.deterministic_id("profile", "updated", str(customer.id), cause_id)
            if cause_id
            else None
        ),
    )


async def emit_resolution(
    session: AsyncSession, *, resolution: Resolution, source: str, cause_id: str | None
) -> None:
    """CustomerRegistered for a new file, CustomerUpdated for a changed one, else nothing."""
    if resolution.created:
        await emit_registered(session, customer=resolution.customer, source=source)
    elif resolution.changed_fields:
        await emit_updated(
            session,
            customer=resolution.customer,
            changed_fields=resolution.changed_fields,
            cause_id=cause_id,
        )


def _major(amount_minor: int, currency: str) -> str:
    try:
        return str(to_major(amount_minor, currency))
    except MoneyError:
        return str(amount_minor)


async def read_file(session: AsyncSession, *, customer: Customer) -> CustomerRead:
    """The customer file: identities, purchase summary and the latest timeline entries."""
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
    return CustomerRead(
        id=customer.id,
        first_name=customer.first_name,
        last_name=customer.last_name,
        lifecycle_stage=LifecycleStage(customer.lifecycle_stage),
        country_code=customer.country_code,
        city=customer.city,
        created_at=customer.created_at,
        updated_at=customer.updated_at,
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
