"""Money as integer minor units plus an ISO 4217 code, never a float.

How many minor units a currency has comes from CLDR through Babel (IRR 0, AMD 2, USD 2, JPY 0),
which is how shops price in them; amounts at the edge are parsed with Decimal.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import cache

from babel.numbers import get_currency_precision


class MoneyError(ValueError):
    pass


@cache
def exponent(currency: str) -> int:
    code = currency.upper()
    if len(code) != 3 or not code.isalpha():
        raise MoneyError(f"{currency!r} is not an ISO 4217 currency code")
    return int(get_currency_precision(code))


def to_minor(amount: str | int | Decimal, currency: str) -> int:
    """ "404.95" USD -> 40495. Rounds half-even at the currency's precision."""
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise MoneyError(f"{amount!r} is not an amount") from exc
    if not value.is_finite():
        raise MoneyError(f"{amount!r} is not a finite amount")
    scaled = (value * (Decimal(10) ** exponent(currency))).quantize(Decimal(1), ROUND_HALF_EVEN)
    return int(scaled)


def to_major(amount_minor: int, currency: str) -> Decimal:
    """40495 USD -> Decimal("404.95")."""
    return Decimal(amount_minor).scaleb(-exponent(currency))
