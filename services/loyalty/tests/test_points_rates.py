"""Points from money: Decimal from the integer minor units, floored, never a float."""

from decimal import Decimal

import pytest
import structlog
from pydantic import ValidationError
from structlog.testing import capture_logs

from vafa.loyalty.config import Settings
from vafa.loyalty.points import rules, service

RATES = Settings().points_per_unit


@pytest.mark.parametrize(
    ("amount_minor", "currency", "expected"),
    [
        (40495, "USD", 404),  # 404.95 USD at 1 point per dollar
        (40499, "usd", 404),  # lower-case code, still floored
        (99, "USD", 0),  # under one unit earns nothing
        (100, "EUR", 1),
        (1_999_999, "GBP", 19_999),
        (4_049_500, "IRR", 404),  # IRR has no minor unit: 4,049,500 rial × 0.0001 = 404.95
        (9_999, "IRR", 0),
        (40_495_000, "AMD", 4049),  # 404,950.00 dram × 0.01 = 4049.5
        (99_99, "AMD", 0),
        (40495, "JPY", 0),  # no rate configured
        (40495, "", 0),
        (0, "USD", 0),
        (-500, "USD", 0),  # a negative total never earns (nor takes)
        (9_223_372_036_854_775_807, "USD", 92_233_720_368_547_758),  # int64 max, exact
    ],
)
def test_points_table(amount_minor: int, currency: str, expected: int) -> None:
    points = service.points_for(amount_minor, currency, rates=RATES)
    assert type(points) is int
    assert points == expected


def test_default_rates_are_decimals_not_floats() -> None:
    expected = {
        "USD": Decimal(1),
        "EUR": Decimal(1),
        "GBP": Decimal(1),
        "AMD": Decimal("0.01"),
        "IRR": Decimal("0.0001"),
    }
    assert expected == RATES
    assert all(type(rate) is Decimal for rate in RATES.values())


def test_rates_from_env_are_parsed_as_decimal(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0.1 as a float is 0.1000000000000000055511151231257827...; as Decimal it is exact, so
    # 10 units of a currency at 0.1 earn exactly 1 point rather than 1.0000000000000000555.
    monkeypatch.setenv("VAFA_LOYALTY_POINTS_PER_UNIT", '{"usd": 0.1, "AMD": 0.3, "EUR": 2}')
    rates = Settings().points_per_unit
    assert rates == {"USD": Decimal("0.1"), "AMD": Decimal("0.3"), "EUR": Decimal(2)}
    assert all(type(rate) is Decimal for rate in rates.values())
    assert service.points_for(1000, "USD", rates=rates) == 1
    # 0.3 × 10 = 3 exactly in Decimal; with floats 0.1 × 3 would be 0.30000000000000004.
    assert service.points_for(1000, "AMD", rates=rates) == 3
    assert service.points_for(1000, "GBP", rates=rates) == 0  # not configured any more


@pytest.mark.parametrize(
    "raw",
    ['{"USD": -1}', '{"US": 1}', '["USD"]', '{"USD": "abc"}', '{"USD": NaN}', '{"USD": true}'],
)
def test_bad_rates_are_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("VAFA_LOYALTY_POINTS_PER_UNIT", raw)
    with pytest.raises(ValidationError):
        Settings()


def test_unknown_currency_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    service._warned_currencies.discard("XTS")
    with capture_logs() as logs:
        # A logger that earlier tests used is cached and would not see the capture.
        monkeypatch.setattr(rules, "log", structlog.get_logger(rules.__name__))
        for _ in range(3):
            assert service.points_for(1000, "XTS", rates=RATES) == 0
    warnings = [e for e in logs if e["event"] == "no_points_rate_for_currency"]
    assert warnings == [
        {"event": "no_points_rate_for_currency", "currency": "XTS", "log_level": "warning"}
    ]
