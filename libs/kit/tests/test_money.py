from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vafa.kit.money import MoneyError, exponent, to_major, to_minor


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("404.95", "USD", 40495),
        ("1000000", "IRR", 1000000),
        ("5000", "AMD", 500000),
        ("1200", "JPY", 1200),
        ("0.005", "USD", 0),
        ("0.015", "USD", 2),
    ],
)
def test_to_minor(amount: str, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor


@pytest.mark.parametrize("bad", ["", "abc", "NaN", "Infinity"])
def test_bad_amounts_are_refused(bad: str) -> None:
    with pytest.raises(MoneyError):
        to_minor(bad, "USD")


def test_bad_currency_is_refused() -> None:
    with pytest.raises(MoneyError):
        exponent("US")


@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.sampled_from(["USD", "IRR", "AMD", "JPY", "EUR"]),
)
def test_round_trip(minor: int, currency: str) -> None:
    assert to_minor(to_major(minor, currency), currency) == minor
    assert isinstance(to_major(minor, currency), Decimal)
