"""profile.customers.v1 into the feature store through the real batch handler: snapshots
(Persian text kept as it is, Jalali birth dates, identities), consents, interactions, merges,
unmerges and erasures."""

import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.segmentation.config import Settings
from vafa.segmentation.features import dates
from vafa.segmentation.features.handlers import customers_handler, purchases_handler

from .features_fixtures import (
    NOW,
    Reevaluations,
    envelope,
    features,
    line,
    lines_of,
    order,
    purchase,
    reevaluations,
    registered,
    snapshot,
    ts,
)

__all__ = ["reevaluations"]

SETTINGS = Settings()
CUSTOMERS = customers_handler(SETTINGS, clock=lambda: NOW)
PURCHASES = purchases_handler(SETTINGS, clock=lambda: NOW)


async def identities(session: AsyncSession, customer: uuid.UUID) -> list[str]:
    rows = await session.execute(
        text("SELECT value FROM identities WHERE customer_id = :c ORDER BY value"), {"c": customer}
    )
    return list(rows.scalars())


def full_snapshot(customer: uuid.UUID) -> dict[str, object]:
    return {
        "kind": "customer",
        "lifecycle_stage": "repeat",
        "gender": "female",
        "birth_date": "1991-08-03",
        "country_code": "ir",
        "province": "تهران",
        "city": "تهران",
        "education": "کارشناسی",
        "acquisition_channel": "referral",
        "acquisition_campaign": "بهار-۱۴۰۵",
        "referred_by_code": "SARA-7",
        "club_status": "verified",
        "household_id": "hh-1",
        "tags": ["مشتری ویژه", "vip", "vip"],
        "custom_fields": {"genre": '"فانتزی"', "kids": "2", "likes": '["a", "b"]'},
        "emails": ["  Sara@Example.COM "],
        "phones": ["+98 912 ۱۲۳ ۴۵۶۷"],
        "created_at": ts(datetime(2025, 11, 2, 8, 0, tzinfo=UTC)),
        "consents": [
            profile_pb2.Consent(channel=profile_pb2.CONSENT_CHANNEL_SMS, granted=True),
            profile_pb2.Consent(channel=profile_pb2.CONSENT_CHANNEL_EMAIL, granted=False),
        ],
        "effective_dates": [
            profile_pb2.EffectiveDate(
                date_id="d1", kind="wedding_anniversary", calendar="jalali", month=4, day=1
            ),
            profile_pb2.EffectiveDate(
                date_id="d2", kind="child_birthday", calendar="gregorian", month=12, day=25
            ),
        ],
    }


async def test_snapshot_fills_profile_features_and_keeps_persian_text(
    session: AsyncSession, reevaluations: Reevaluations
) -> None:
    c = uuid.uuid4()
    await CUSTOMERS(session, [registered(c, **full_snapshot(c))])

    f = await features(session, c)
    assert f["kind"] == "customer" and f["lifecycle_stage"] == "repeat"
    assert (f["gender"], f["birth_date"]) == ("female", date(1991, 8, 3))
    assert (f["country_code"], f["province"], f["city"]) == ("IR", "تهران", "تهران")
    assert f["education"] == "کارشناسی"
    assert (f["acquisition_channel"], f["acquisition_campaign"]) == ("referral", "بهار-۱۴۰۵")
    assert (f["referred_by_code"], f["club_status"], f["household_id"]) == (
        "SARA-7",
        "verified",
        "hh-1",
    )
    assert f["tags"] == ["مشتری ویژه", "vip"]
    assert f["custom_fields"] == {"genre": "فانتزی", "kids": "2", "likes": '["a", "b"]'}
    assert (f["consent_sms"], f["consent_email"], f["consent_phone"]) == (True, False, False)
    assert f["registered_at"] == datetime(2025, 11, 2, 8, 0, tzinfo=UTC)
    # No order yet: the cohort is the registration month.
    assert f["cohort"] == "2025-11"
    # NOW is 2026-06-15: the next 3 August, and Tir 1 (22 June in 1405) before 25 December.
    assert f["next_birthday"] == date(2026, 8, 3)
    assert f["next_effective_date"] == date(2026, 6, 22)
    assert f["next_window_at"] == datetime(2026, 6, 23, tzinfo=UTC)
    assert [d["date_id"] for d in f["effective_dates"]] == ["d1", "d2"]
    assert await identities(session, c) == ["+989121234567", "sara@example.com"]
    assert reevaluations.customers == {c}

    # The same snapshot again (CustomerUpdated with nothing new): no change, no re-evaluation.
    reevaluations.clear()
    again = profile_pb2.CustomerUpdated(customer=snapshot(c, **full_snapshot(c)))
    await CUSTOMERS(session, [envelope(again)])
    assert reevaluations.calls == []

    # A new snapshot replaces the identities it no longer carries.
    moved = {**full_snapshot(c), "emails": ["new@example.com"], "phones": [], "city": "شیراز"}
    await CUSTOMERS(session, [envelope(profile_pb2.CustomerUpdated(customer=snapshot(c, **moved)))])
    assert await identities(session, c) == ["new@example.com"]
    assert (await features(session, c))["city"] == "شیراز"
    assert reevaluations.customers == {c}


async def test_jalali_birth_dates_in_any_digits() -> None:
    assert dates.parse_birth_date("1370-05-12") == date(1991, 8, 3)
    assert dates.parse_birth_date("۱۳۷۰/۰۵/۱۲") == date(1991, 8, 3)
    assert dates.parse_birth_date("1991-08-03") == date(1991, 8, 3)
    assert dates.parse_birth_date("") is None
    assert dates.parse_birth_date("1370-13-40") is None


async def test_birthdays_on_the_shops_calendar_and_short_months() -> None:
    # 29 February in a common year falls on the 28th.
    assert dates.next_birthday(
        date(2000, 2, 29), calendar="gregorian", today=date(2027, 1, 1)
    ) == date(2027, 2, 28)
    assert dates.next_birthday(
        date(2000, 2, 29), calendar="gregorian", today=date(2028, 1, 1)
    ) == date(2028, 2, 29)
    # In a Jalali shop a birthday keeps its Jalali day: Mordad 12 is 3 August in 1405.
    assert dates.next_birthday(
        date(1991, 8, 3), calendar="jalali", today=date(2026, 6, 15)
    ) == date(2026, 8, 3)
    # Esfand 30: 1403 is a leap year (Esfand 30 = 20 March 2025); 1404 is not (Esfand 29).
    esfand_30 = [{"calendar": "jalali", "month": 12, "day": 30}]
    assert dates.next_effective_date(esfand_30, today=date(2025, 3, 1)) == date(2025, 3, 20)
    assert dates.next_effective_date(esfand_30, today=date(2025, 4, 1)) == date(2026, 3, 20)
    # Today counts as "next" until it has passed.
    assert dates.next_birthday(
        date(1990, 6, 15), calendar="gregorian", today=date(2026, 6, 15)
    ) == date(2026, 6, 15)


async def test_jalali_snapshot_birth_date_and_jalali_shop(session: AsyncSession) -> None:
    handler = customers_handler(
        Settings(calendar="jalali", timezone="Asia/Tehran"), clock=lambda: NOW
    )
    c = uuid.uuid4()
    await handler(session, [registered(c, birth_date="۱۳۷۰-۰۵-۱۲")])
    f = await features(session, c)
    assert f["birth_date"] == date(1991, 8, 3)
    assert f["next_birthday"] == date(2026, 8, 3)
    # The day after the birthday begins at midnight in Tehran (20:30 UTC the evening before).
    assert f["next_window_at"] == datetime(2026, 8, 3, 20, 30, tzinfo=UTC)


async def test_consent_changes_apply_after_the_snapshot_in_log_order(
    session: AsyncSession,
) -> None:
    c = uuid.uuid4()

    def consent(channel: int, granted: bool) -> object:
        return envelope(
            profile_pb2.ConsentChanged(
                customer_id=str(c),
                consent=profile_pb2.Consent(channel=channel, granted=granted, source="club"),
            )
        )

    await CUSTOMERS(
        session,
        [
            consent(profile_pb2.CONSENT_CHANNEL_PUSH, True),  # overridden by the snapshot
            registered(c),
            consent(profile_pb2.CONSENT_CHANNEL_EMAIL, True),
            consent(profile_pb2.CONSENT_CHANNEL_SMS, True),
            consent(profile_pb2.CONSENT_CHANNEL_SMS, False),
        ],
    )
    f = await features(session, c)
    assert (f["consent_sms"], f["consent_email"], f["consent_phone"], f["consent_push"]) == (
        False,
        True,
        False,
        False,
    )


async def test_interactions_by_kind(session: AsyncSession, reevaluations: Reevaluations) -> None:
    c = uuid.uuid4()

    def interaction(kind: str, at: datetime) -> object:
        return envelope(
            profile_pb2.InteractionRecorded(
                customer_id=str(c), entry_id=str(uuid.uuid4()), kind=kind, occurred_at=ts(at)
            )
        )

    await CUSTOMERS(
        session,
        [
            interaction("call", NOW - timedelta(days=2)),
            interaction("sms", NOW - timedelta(days=1)),
            interaction("call", NOW - timedelta(days=3)),
        ],
    )
    await CUSTOMERS(session, [interaction("club_visit", NOW - timedelta(days=10))])
    f = await features(session, c)
    assert f["interactions"] == {"call": 2, "sms": 1, "club_visit": 1}
    assert f["interactions_count"] == 4
    assert f["last_interaction_at"] == NOW - timedelta(days=1)
    assert len(reevaluations.calls) == 2


async def test_merge_moves_orders_lines_identities_and_recomputes_the_survivor(
    session: AsyncSession, reevaluations: Reevaluations
) -> None:
    survivor, merged = uuid.uuid4(), uuid.uuid4()
    await CUSTOMERS(
        session,
        [
            registered(survivor, emails=["s@example.com"]),
            registered(merged, emails=["m@example.com"], phones=["+37410123456"]),
            envelope(profile_pb2.InteractionRecorded(customer_id=str(merged), kind="call")),
            envelope(profile_pb2.InteractionRecorded(customer_id=str(survivor), kind="call")),
        ],
    )
    await PURCHASES(
        session,
        [
            purchase(survivor, "paid", order("o:s1", 1000, lines=[line("1", "A", 1000)])),
            purchase(merged, "paid", order("o:m1", 3000, lines=[line("1", "B", 3000)])),
        ],
    )
    reevaluations.clear()
    merge = profile_pb2.CustomerMerged(
        survivor_id=str(survivor), merged_id=str(merged), merge_id="mg-1"
    )
    await CUSTOMERS(session, [envelope(merge)])

    s, m = await features(session, survivor), await features(session, merged)
    assert (s["orders_count"], s["total_spent"]) == (2, 4000)
    assert s["interactions"] == {"call": 2} and s["interactions_count"] == 2
    assert (m["removed"], m["orders_count"], m["total_spent"], m["next_window_at"]) == (
        True,
        0,
        0,
        None,
    )
    assert sorted(li["sku"] for li in await lines_of(session, survivor)) == ["A", "B"]
    assert await lines_of(session, merged) == []
    assert await identities(session, survivor) == [
        "+37410123456",
        "m@example.com",
        "s@example.com",
    ]
    assert reevaluations.customers == {survivor, merged}

    # Replayed: nothing moves twice, counters are not added again.
    reevaluations.clear()
    await CUSTOMERS(session, [envelope(merge)])
    assert await features(session, survivor) == s
    assert reevaluations.calls == []

    # A late snapshot of the merged file does not bring it back or its identities.
    await CUSTOMERS(session, [registered(merged, city="یزد", emails=["m@example.com"])])
    m2 = await features(session, merged)
    assert (m2["removed"], m2["city"]) == (True, "")
    assert await identities(session, merged) == []

    # Unmerged: the restored file counts again; its orders stay with the survivor.
    unmerge = profile_pb2.CustomerUnmerged(
        survivor_id=str(survivor), restored_id=str(merged), merge_id="mg-1"
    )
    await CUSTOMERS(session, [envelope(unmerge)])
    m3 = await features(session, merged)
    assert (m3["removed"], m3["orders_count"]) == (False, 0)
    assert (await features(session, survivor))["orders_count"] == 2


async def test_erase_blanks_personal_data_and_identities(
    session: AsyncSession, reevaluations: Reevaluations
) -> None:
    c = uuid.uuid4()
    await CUSTOMERS(session, [registered(c, **full_snapshot(c))])
    await PURCHASES(session, [purchase(c, "paid", order("o:e1", 5000))])
    reevaluations.clear()
    await CUSTOMERS(session, [envelope(profile_pb2.CustomerErased(customer_id=str(c)))])

    f = await features(session, c)
    assert f["removed"] is True
    for name in ("gender", "country_code", "province", "city", "education", "household_id"):
        assert f[name] == "", name
    assert (f["birth_date"], f["next_birthday"], f["next_effective_date"]) == (None, None, None)
    assert (f["tags"], f["custom_fields"], f["effective_dates"]) == ([], {}, [])
    assert f["next_window_at"] is None
    # Amounts keyed by the opaque id stay.
    assert f["orders_count"] == 1
    assert await identities(session, c) == []
    assert reevaluations.customers == {c}
