"""Money as integer minor units plus an ISO 4217 code; Decimal at the edges, never float.

The exponent table is ISO 4217's list of active currencies with one deliberate exception: the
Iranian rial (IRR) uses exponent 0, as CLDR and every Iranian shop do (ISO still lists 2, but
no amount is ever expressed in dinars). An unknown code is an error rather than a guess.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation


def _codes(text: str) -> list[str]:
    return text.split()


_EXP0 = _codes("BIF CLP DJF GNF IRR ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF")
_EXP3 = _codes("BHD IQD JOD KWD LYD OMR TND")
_EXP4 = _codes("CLF UYW")
_EXP2 = _codes(
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR JMD KES KGS KHR KPW KYD KZT "
    "LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN "
    "NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE "
    "SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED "
    "VES WST XCD XCG YER ZAR ZMW ZWG ZWL"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_EXP2, 2),
    **dict.fromkeys(_EXP0, 0),
    **dict.fromkeys(_EXP3, 3),
    **dict.fromkeys(_EXP4, 4),
}

_CODE = re.compile(r"^[A-Z]{3}$")


class MoneyError(ValueError):
    """An amount or currency that cannot be turned into exact minor units."""


def exponent(currency: str) -> int:
    if not isinstance(currency, str) or not _CODE.match(currency):
        raise MoneyError(f"{currency!r} is not an ISO 4217 currency code")
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"{currency!r} is not an active ISO 4217 currency") from None


def to_decimal(value: object) -> Decimal:
    """A platform amount as a Decimal: a string such as "404.95", an int, or a Decimal (JSON
    numbers are parsed into Decimal, never float). Floats are refused."""
    if isinstance(value, bool) or value is None:
        raise MoneyError(f"{value!r} is not an amount")
    if isinstance(value, float):
        raise MoneyError("amounts must not be binary floats")
    if isinstance(value, Decimal | int):
        d = Decimal(value)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f"{value!r} is not an amount") from None
    else:
        raise MoneyError(f"{value!r} is not an amount")
    if not d.is_finite():
        raise MoneyError(f"{value!r} is not a finite amount")
    if d and not -30 <= d.adjusted() <= 30:  # keeps every later Decimal operation exact
        raise MoneyError(f"{value!r} is out of range for an amount")
    return d


def to_minor(value: object, currency: str, *, round_half_even: bool = False) -> int:
    """The amount in the currency's minor units. An amount with more decimals than the currency
    has ("12.345" USD) is an error, unless `round_half_even` is asked for (used only for unit
    prices the gateway derives itself)."""
    exp = exponent(currency)
    scaled = to_decimal(value).scaleb(exp)
    integral = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
    if integral != scaled and not round_half_even:
        shown = repr(str(value)) if isinstance(value, Decimal) else repr(value)
        raise MoneyError(f"{shown} has more decimals than {currency} allows ({exp})")
    if abs(integral) >= 2**63:
        raise MoneyError(f"{value!r} is too large an amount")
    return int(integral)


def to_major(amount_minor: int, currency: str) -> Decimal:
    """40495 USD -> Decimal("404.95"): exact, for display and for rates per major unit."""
    return Decimal(amount_minor).scaleb(-exponent(currency))
