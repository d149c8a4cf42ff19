from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vafa.kit.money import CURRENCY_EXPONENTS, MoneyError, exponent, to_major, to_minor


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("404.95", "USD", 40495),
        ("0.1", "USD", 10),
        ("20", "USD", 2000),
        ("150000", "IRR", 150000),
        ("150000.00", "IRR", 150000),
        ("5000.00", "AMD", 500000),
        ("1200", "JPY", 1200),
        ("1.234", "KWD", 1234),
        ("-10.00", "USD", -1000),
        (Decimal("89.99"), "USD", 8999),
        (Decimal("1E+2"), "USD", 10000),
        (7, "USD", 700),
        (" 3.50 ", "EUR", 350),
        ("92233720368547758.07", "USD", 9223372036854775807),
    ],
)
def test_to_minor(amount: object, currency: str, expected: int) -> None:
    assert to_minor(amount, currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("12.345", "USD"),
        ("0.5", "IRR"),
        ("0.5", "JPY"),
        (89.99, "USD"),  # float: never
        (True, "USD"),
        (None, "USD"),
        ("", "USD"),
        ("1,00", "USD"),
        ("NaN", "USD"),
        ("Infinity", "USD"),
        ("1.00", "usd"),
        ("1.00", "XYZ"),
        ("1.00", "XXX"),
        ("1e999999999", "USD"),  # would overflow the Decimal context
        ("1e-40", "USD"),
    ],
)
def test_to_minor_refuses(amount: object, currency: str) -> None:
    with pytest.raises(MoneyError):
        to_minor(amount, currency)


def test_rounding_only_when_asked_and_half_even() -> None:
    assert to_minor(Decimal("0.125"), "USD", round_half_even=True) == 12
    assert to_minor(Decimal("0.135"), "USD", round_half_even=True) == 14
    assert to_minor(Decimal(10) / 3, "USD", round_half_even=True) == 333


def test_exponents_table() -> None:
    assert [exponent(c) for c in ("USD", "EUR", "IRR", "AMD", "JPY", "KRW", "BHD", "CLF")] == [
        2,
        2,
        0,
        2,
        0,
        0,
        3,
        4,
    ]
    assert all(len(code) == 3 and code.isupper() for code in CURRENCY_EXPONENTS)
    assert len(CURRENCY_EXPONENTS) > 150


def test_amounts_must_fit_an_int64() -> None:
    with pytest.raises(MoneyError, match="too large"):
        to_minor("92233720368547758.08", "USD")


@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.sampled_from(["USD", "IRR", "AMD", "JPY", "EUR"]),
)
def test_round_trip(minor: int, currency: str) -> None:
    assert to_minor(to_major(minor, currency), currency) == minor
    assert isinstance(to_major(minor, currency), Decimal)
