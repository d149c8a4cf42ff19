"""The pure rules of tiers, rewards, referrals and codes (no I/O)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from vafa.loyalty import codes, periods
from vafa.loyalty.referrals import rules as referral_rules
from vafa.loyalty.rewards import rules as reward_rules
from vafa.loyalty.tiers import rules

BRONZE = rules.Rung("bronze", "Bronze", 0, Decimal(1))
SILVER = rules.Rung("silver", "Silver", 500, Decimal("1.25"))
GOLD = rules.Rung("gold", "Gold", 2000, Decimal("1.5"))
LADDER = [GOLD, BRONZE, SILVER]  # any order: the ladder sorts by threshold


def test_the_highest_tier_reached_is_the_members() -> None:
    assert rules.qualifying(LADDER, 0) == BRONZE
    assert rules.qualifying(LADDER, 499) == BRONZE
    assert rules.qualifying(LADDER, 500) == SILVER
    assert rules.qualifying(LADDER, 10**9) == GOLD
    assert rules.qualifying([SILVER, GOLD], 100) is None


def test_an_event_only_raises_a_tier() -> None:
    first = rules.decide(LADDER, None, 10, allow_downgrade=False)
    assert (first.tier, first.direction) == (BRONZE, "initial")
    up = rules.decide(LADDER, "bronze", 2500, allow_downgrade=False)
    assert (up.previous, up.tier, up.direction) == ("bronze", GOLD, "upgrade")
    # Measure fell below Gold's threshold: an event never lowers the tier.
    assert rules.decide(LADDER, "gold", 10, allow_downgrade=False).direction == ""


def test_reevaluation_lowers_a_tier_on_the_keep_measure() -> None:
    down = rules.decide(LADDER, "gold", 600, allow_downgrade=True)
    assert (down.previous, down.tier, down.direction) == ("gold", SILVER, "downgrade")
    # A calendar-year tier is kept on last year's measure.
    kept = rules.decide(LADDER, "gold", 600, allow_downgrade=True, keep_measure=2100)
    assert kept.direction == ""
    # A tier that no longer exists ranks below all: the member moves to where they qualify.
    assert rules.decide(LADDER, "platinum", 600, allow_downgrade=False).tier == SILVER


def test_progress_says_how_far_to_the_next_and_to_keep() -> None:
    p = rules.progress(LADDER, "silver", 380)
    assert (p.tier, p.next_tier, p.to_next, p.to_keep) == (SILVER, GOLD, 1620, 120)
    top = rules.progress(LADDER, "gold", 5000)
    assert (top.next_tier, top.to_next, top.to_keep) == (None, 0, 0)
    none = rules.progress(LADDER, None, 0)
    assert (none.tier, none.next_tier, none.to_next) == (None, BRONZE, 0)


def test_windows() -> None:
    now = datetime(2026, 3, 15, 12, tzinfo=UTC)
    assert rules.window_start("rolling_12_months", now) == now - timedelta(days=365)
    assert rules.window_start("calendar_year", now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert rules.window_start("lifetime", now) is None
    assert rules.previous_window("calendar_year", now) == (
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert rules.previous_window("rolling_12_months", now) is None
    # A shop on the Jalali calendar: the year runs from Nowruz, midnight in Tehran.
    tehran = periods.ShopCalendar("Asia/Tehran", "jalali")
    nowruz_1404 = datetime(2025, 3, 20, 20, 30, tzinfo=UTC)
    nowruz_1405 = datetime(2026, 3, 20, 20, 30, tzinfo=UTC)
    assert rules.window_start("calendar_year", now, tehran) == nowruz_1404  # 24 Esfand 1404
    june = datetime(2026, 6, 10, tzinfo=UTC)
    assert rules.window_start("calendar_year", june, tehran) == nowruz_1405
    assert rules.previous_window("calendar_year", june, tehran) == (nowruz_1404, nowruz_1405)


def _reward(**kw: object) -> SimpleNamespace:
    base = {
        "kind": "percent_discount",
        "percent_off": 15,
        "amount_minor": None,
        "currency": None,
        "gift_sku": None,
        "min_order_minor": None,
        "starts_at": None,
        "ends_at": None,
        "after_purchase": False,
        "points_price": 100,
    }
    return SimpleNamespace(**{**base, **kw})


def test_coupon_values() -> None:
    pct = _reward()
    assert reward_rules.value_on(pct, total_minor=10_001, currency="usd").discount_minor == 1500
    fixed = _reward(kind="fixed_discount", percent_off=None, amount_minor=5000, currency="USD")
    assert reward_rules.value_on(fixed, total_minor=12_000, currency="USD").discount_minor == 5000
    # Never more than the order, never in another currency.
    assert reward_rules.value_on(fixed, total_minor=3000, currency="USD").discount_minor == 3000
    other = reward_rules.value_on(fixed, total_minor=12_000, currency="EUR")
    assert (other.valid, other.reason) == (False, "currency")
    minimum = _reward(min_order_minor=20_000, currency="IRR")
    low = reward_rules.value_on(minimum, total_minor=19_999, currency="IRR")
    assert (low.valid, low.reason) == (False, "minimum_order")
    ship = reward_rules.value_on(
        _reward(kind="free_shipping", percent_off=None), total_minor=1, currency="AMD"
    )
    assert (ship.valid, ship.free_shipping, ship.discount_minor) == (True, True, 0)


def test_reward_settings_name_the_missing_field() -> None:
    assert reward_rules.field_errors(_reward(percent_off=None)) == [
        ("percent_off", "a percent discount needs percent_off (1-100)")
    ]
    fields = [f for f, _ in reward_rules.field_errors(_reward(kind="fixed_discount"))]
    assert fields == ["amount_minor", "currency"]
    assert [f for f, _ in reward_rules.field_errors(_reward(kind="gift_product"))] == ["gift_sku"]
    assert [f for f, _ in reward_rules.field_errors(_reward(after_purchase=True))] == [
        "points_price"
    ]
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert [f for f, _ in reward_rules.field_errors(_reward(starts_at=t, ends_at=t))] == ["ends_at"]


def test_coupon_status() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert reward_rules.coupon_status(None, None, now) == "active"
    assert reward_rules.coupon_status(None, now, now) == "expired"
    assert reward_rules.coupon_status("o-1", now + timedelta(days=1), now) == "used"


def test_codes_are_unambiguous_and_typed_codes_normalise() -> None:
    made = {codes.generate() for _ in range(2000)}
    assert len(made) == 2000
    assert all(len(c) == 10 and not set(c) & set("0O1I") for c in made)
    assert codes.normalise("abcd-۲۳۴۵ ") == "ABCD2345"
    assert codes.normalise("٢٣ xy") == "23XY"


def test_self_referral_contacts() -> None:
    a = referral_rules.Contacts.of(["+98 912 000 1111"], ["Ali@Example.com"], None)
    b = referral_rules.Contacts.of(["+989120001111"], [], None)
    assert referral_rules.shared(a, b) == "phone"
    c = referral_rules.Contacts.of([], [" ali@example.COM"], None)
    assert referral_rules.shared(a, c) == "email"
    # Persian digits, Arabic yeh and spacing do not make two addresses different.
    d = referral_rules.Contacts.of([], [], "تهران، خیابان ولیعصر، پلاک ۱۲")
    e = referral_rules.Contacts.of([], [], "تهران  خيابان ولیعصر پلاک 12")
    assert referral_rules.shared(d, e) == "address"
    assert referral_rules.shared(a, d) is None


def test_referral_cap_periods_in_the_shops_calendar() -> None:
    start = periods.period_start
    now = datetime(2026, 3, 25, 10, tzinfo=UTC)  # a Wednesday; 5 Farvardin 1405 in Tehran
    assert start("month", now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert start("week", now) == datetime(2026, 3, 23, tzinfo=UTC)  # ISO: Monday
    assert start("year", now) == datetime(2026, 1, 1, tzinfo=UTC)
    tehran = {"timezone": "Asia/Tehran", "calendar": "jalali"}
    nowruz = datetime(2026, 3, 20, 20, 30, tzinfo=UTC)  # 1 Farvardin 1405, 00:00 in Tehran
    assert start("month", now, **tehran) == nowruz
    assert start("year", now, **tehran) == nowruz
    assert start("week", now, **tehran) == nowruz  # that day was a Saturday: Jalali weeks start
    later = datetime(2026, 6, 10, 12, tzinfo=UTC)  # 20 Khordad 1405
    assert start("month", later, **tehran) == datetime(2026, 5, 21, 20, 30, tzinfo=UTC)
    assert start("year", later, **tehran) == nowruz
