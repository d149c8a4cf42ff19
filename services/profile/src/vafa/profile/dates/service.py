"""Effective dates (named, recurring on their own calendar), the dates coming up, the job that
announces them once per occurrence, and households. Domain logic only."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import structlog
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.errors import NotFound
from vafa.kit.outbox import OutboxEvent
from vafa.profile.customers import service as customers
from vafa.profile.customers.snapshot import effective_date_message
from vafa.profile.dates.recurrence import Calendar, window_keys
from vafa.profile.dates.schemas import EffectiveDateCreate
from vafa.profile.events import CUSTOMERS_TOPIC, outbox
from vafa.profile.models import Customer, EffectiveDate, Household

log = structlog.get_logger(__name__)


async def dates_of(session: AsyncSession, customer_id: uuid.UUID) -> list[EffectiveDate]:
    rows = await session.scalars(
        select(EffectiveDate)
        .where(EffectiveDate.customer_id == customer_id)
        .order_by(EffectiveDate.created_at, EffectiveDate.id)
    )
    return list(rows.all())


async def add_date(
    session: AsyncSession, *, customer_id: uuid.UUID, body: EffectiveDateCreate
) -> EffectiveDate:
    """Adds the date and publishes CustomerUpdated (changed_fields ["effective_dates"])."""
    customer = await customers.lock_file(session, customer_id)
    row = EffectiveDate(
        customer_id=customer_id,
        kind=body.kind,
        label=body.label,
        calendar=body.calendar.value,
        year=body.year,
        month=body.month,
        day=body.day,
        related_person=body.related_person,
    )
    session.add(row)
    await session.flush()
    await customers.emit_updated(
        session, customer=customer, changed_fields=["effective_dates"], cause_id=f"date-{row.id}"
    )
    return row


async def remove_date(session: AsyncSession, *, customer_id: uuid.UUID, date_id: uuid.UUID) -> None:
    customer = await customers.lock_file(session, customer_id)
    result = await session.execute(
        delete(EffectiveDate)
        .where(EffectiveDate.id == date_id, EffectiveDate.customer_id == customer_id)
        .returning(EffectiveDate.id)
    )
    if result.scalar_one_or_none() is None:
        raise NotFound(f"The customer has no date {date_id}.", date_id=str(date_id))
    await customers.emit_updated(
        session,
        customer=customer,
        changed_fields=["effective_dates"],
        cause_id=f"date-removed-{date_id}",
    )


@dataclass(frozen=True, slots=True)
class Upcoming:
    customer: Customer
    date: EffectiveDate
    occurs_on: date
    days_ahead: int


_UPCOMING = text(
    "SELECT d.id FROM effective_dates d "
    "JOIN unnest(CAST(:cals AS text[]), CAST(:months AS smallint[]), CAST(:days AS smallint[]))"
    " AS k(calendar, month, day) ON d.calendar = k.calendar AND d.month = k.month"
    " AND d.day = k.day "
    "JOIN customers c ON c.id = d.customer_id "
    "WHERE c.merged_into IS NULL AND c.erased_at IS NULL"
)


async def upcoming(session: AsyncSession, *, today: date, days: int) -> list[Upcoming]:
    """Every effective date falling within [today, today + days], soonest first: one indexed
    lookup by the (calendar, month, day) forms that fall in the window."""
    keys = window_keys(today, days)
    rows = await session.execute(
        _UPCOMING,
        {
            "cals": [c.value for c, _, _ in keys],
            "months": [m for _, m, _ in keys],
            "days": [d for _, _, d in keys],
        },
    )
    ids = list(rows.scalars())
    if not ids:
        return []
    found = await session.execute(
        select(EffectiveDate, Customer)
        .join(Customer, Customer.id == EffectiveDate.customer_id)
        .where(EffectiveDate.id.in_(ids))
    )
    out = []
    for row, customer in found.all():
        for on in keys[(Calendar(row.calendar), row.month, row.day)]:
            out.append(Upcoming(customer, row, on, (on - today).days))
    out.sort(key=lambda u: (u.occurs_on, str(u.customer.id), str(u.date.id)))
    return out


_CLAIM_NOTICES = text(
    "INSERT INTO effective_date_notices (date_id, occurs_on) "
    "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:days AS date[])) "
    "ON CONFLICT DO NOTHING RETURNING date_id, occurs_on"
)


async def announce_upcoming(session: AsyncSession, *, today: date, days: int) -> int:
    """Publishes EffectiveDateUpcoming for every date in the window not yet announced for that
    occurrence (claimed in effective_date_notices by (date_id, occurs_on), and the event id is
    derived from the same pair, so overlapping runs and replays announce once). Returns the
    number announced."""
    found = await upcoming(session, today=today, days=days)
    if not found:
        return 0
    claimed = await session.execute(
        _CLAIM_NOTICES,
        {"ids": [u.date.id for u in found], "days": [u.occurs_on for u in found]},
    )
    fresh = {(r.date_id, r.occurs_on) for r in claimed.all()}
    events = []
    for u in found:
        if (u.date.id, u.occurs_on) not in fresh:
            continue
        message = profile_pb2.EffectiveDateUpcoming(
            customer_id=str(u.customer.id),
            date=effective_date_message(
                {
                    "id": u.date.id,
                    "kind": u.date.kind,
                    "label": u.date.label,
                    "calendar": u.date.calendar,
                    "year": u.date.year,
                    "month": u.date.month,
                    "day": u.date.day,
                    "related_person": u.date.related_person,
                }
            ),
            occurs_on=u.occurs_on.isoformat(),
            days_ahead=u.days_ahead,
        )
        events.append(
            OutboxEvent(
                CUSTOMERS_TOPIC,
                str(u.customer.id),
                message,
                event_id=cloudevents.deterministic_id(
                    "profile", "date-upcoming", str(u.date.id), u.occurs_on.isoformat()
                ),
            )
        )
    await outbox.add_many(session, events)
    log.info("effective_dates_announced", count=len(events), today=today.isoformat())
    return len(events)


async def _emit_members(session: AsyncSession, ids: Sequence[uuid.UUID], cause: str | None) -> None:
    for cid in sorted(set(ids)):
        customer = await customers.get_file(session, cid)
        await customers.emit_updated(
            session, customer=customer, changed_fields=["household_id"], cause_id=cause
        )


async def create_household(
    session: AsyncSession, *, name: str | None, member_ids: Sequence[uuid.UUID]
) -> Household:
    for cid in sorted(set(member_ids)):
        await customers.lock_file(session, cid)
    household = Household(name=name)
    session.add(household)
    await session.flush()
    await session.execute(
        update(Customer).where(Customer.id.in_(list(member_ids))).values(household_id=household.id)
    )
    await _emit_members(session, member_ids, f"household-{household.id}")
    return household


async def get_household(
    session: AsyncSession, household_id: uuid.UUID
) -> tuple[Household, list[uuid.UUID]]:
    household = await session.get(Household, household_id)
    if household is None:
        raise NotFound(f"No household has the id {household_id}.", household_id=str(household_id))
    members = await session.scalars(
        select(Customer.id)
        .where(Customer.household_id == household_id)
        .order_by(Customer.created_at)
    )
    return household, list(members.all())


async def set_membership(
    session: AsyncSession, *, household_id: uuid.UUID, customer_id: uuid.UUID, member: bool
) -> None:
    await get_household(session, household_id)
    customer = await customers.lock_file(session, customer_id)
    if member:
        customer.household_id = household_id
    elif customer.household_id == household_id:
        customer.household_id = None
    else:
        raise NotFound(
            "The customer is not a member of this household.", customer_id=str(customer_id)
        )
    await session.flush()
    await _emit_members(session, [customer_id], None)
