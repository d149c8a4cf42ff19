import uuid
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request, Response

from vafa.kit.auth import StaffRead, StaffWrite
from vafa.kit.db import SessionDep
from vafa.profile.customers import service as customers
from vafa.profile.customers.router import CustomerId, invalid
from vafa.profile.dates import service
from vafa.profile.dates.recurrence import jalali_iso
from vafa.profile.dates.schemas import (
    EffectiveDateCreate,
    EffectiveDateRead,
    HouseholdCreate,
    HouseholdMember,
    HouseholdRead,
    UpcomingDate,
    UpcomingPage,
)
from vafa.profile.models import Household

router = APIRouter(tags=["customers"])

DateId = Annotated[uuid.UUID, Path(description="The date id.")]
HouseholdId = Annotated[uuid.UUID, Path(description="The household id.")]


@router.get(
    "/v1/customers/{customer_id}/effective-dates",
    response_model=list[EffectiveDateRead],
    summary="The customer's named dates",
)
async def list_dates(
    customer_id: CustomerId, session: SessionDep, _: StaffRead
) -> list[EffectiveDateRead]:
    await customers.get_file(session, customer_id)
    return [
        EffectiveDateRead.model_validate(d) for d in await service.dates_of(session, customer_id)
    ]


@router.post(
    "/v1/customers/{customer_id}/effective-dates",
    response_model=EffectiveDateRead,
    status_code=201,
    summary="Add a named date (birthday, anniversary, a child's birthday...)",
    description="Jalali or Gregorian; it recurs every year on its own calendar. The year is "
    "optional. A day the month lacks in the given year is a 422 (1404 has no Esfand 30); "
    "without a year, Esfand 30 and Feb 29 are allowed and fall on the month's last day in "
    "years without them.",
)
async def add_date(
    customer_id: CustomerId, body: EffectiveDateCreate, session: SessionDep, _: StaffWrite
) -> EffectiveDateRead:
    row = await service.add_date(session, customer_id=customer_id, body=body)
    await session.commit()
    return EffectiveDateRead.model_validate(row)


@router.delete(
    "/v1/customers/{customer_id}/effective-dates/{date_id}",
    status_code=204,
    summary="Remove a named date",
)
async def remove_date(
    customer_id: CustomerId, date_id: DateId, session: SessionDep, _: StaffWrite
) -> Response:
    await service.remove_date(session, customer_id=customer_id, date_id=date_id)
    await session.commit()
    return Response(status_code=204)


@router.get(
    "/v1/effective-dates/upcoming",
    response_model=UpcomingPage,
    summary="Named dates falling in the next N days",
    description="Today is the service's calendar day (VAFA_PROFILE_TIMEZONE, Asia/Tehran by "
    "default). Soonest first; `days_ahead` 0 is today.",
)
async def upcoming(
    session: SessionDep,
    request: Request,
    _: StaffRead,
    days: Annotated[int, Query(ge=0, le=366, description="The window: today and N days on.")] = 7,
) -> UpcomingPage:
    today = datetime.now(ZoneInfo(request.app.state.settings.timezone)).date()
    found = await service.upcoming(session, today=today, days=days)
    return UpcomingPage(
        items=[
            UpcomingDate(
                customer_id=u.customer.id,
                first_name=u.customer.first_name,
                last_name=u.customer.last_name,
                date=EffectiveDateRead.model_validate(u.date),
                occurs_on=u.occurs_on,
                occurs_on_jalali=jalali_iso(u.occurs_on),
                days_ahead=u.days_ahead,
            )
            for u in found
        ]
    )


def _household(household: Household, members: list[uuid.UUID]) -> HouseholdRead:
    return HouseholdRead(
        id=household.id, name=household.name, member_ids=members, created_at=household.created_at
    )


@router.post(
    "/v1/households",
    response_model=HouseholdRead,
    status_code=201,
    summary="Customers who joined together (a family)",
)
async def create_household(
    body: HouseholdCreate, session: SessionDep, _: StaffWrite
) -> HouseholdRead:
    if len(set(body.member_ids)) != len(body.member_ids):
        raise invalid("body", "member_ids", message="a member is listed twice")
    household = await service.create_household(session, name=body.name, member_ids=body.member_ids)
    await session.commit()
    return _household(*(await service.get_household(session, household.id)))


@router.get("/v1/households/{household_id}", response_model=HouseholdRead, summary="A household")
async def get_household(
    household_id: HouseholdId, session: SessionDep, _: StaffRead
) -> HouseholdRead:
    return _household(*(await service.get_household(session, household_id)))


@router.post(
    "/v1/households/{household_id}/members",
    response_model=HouseholdRead,
    summary="Add a member (moves them from any other household)",
)
async def add_member(
    household_id: HouseholdId, body: HouseholdMember, session: SessionDep, _: StaffWrite
) -> HouseholdRead:
    await service.set_membership(
        session, household_id=household_id, customer_id=body.customer_id, member=True
    )
    await session.commit()
    return _household(*(await service.get_household(session, household_id)))


@router.delete(
    "/v1/households/{household_id}/members/{customer_id}",
    response_model=HouseholdRead,
    summary="Remove a member",
)
async def remove_member(
    household_id: HouseholdId, customer_id: CustomerId, session: SessionDep, _: StaffWrite
) -> HouseholdRead:
    await service.set_membership(
        session, household_id=household_id, customer_id=customer_id, member=False
    )
    await session.commit()
    return _household(*(await service.get_household(session, household_id)))
