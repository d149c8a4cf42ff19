"""How a customer's email and phone are written, the same in every service: profile stores them
so, and segmentation matches a marketer's CSV against them. Pure functions, no database.

- email: stripped and lower-cased;
- phone: E.164 via libphonenumber, after turning Persian (۰-۹) and Arabic-Indic (٠-٩) digits
  into ASCII; local forms ("09121234567") are read in a region; "00" is the exit code.
"""

from __future__ import annotations

import functools

import phonenumbers

_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")


class InvalidIdentity(ValueError):
    pass


class InvalidPhone(InvalidIdentity):
    pass


class InvalidEmail(InvalidIdentity):
    pass


def ascii_digits(text: str) -> str:
    """Persian and Arabic-Indic digits as ASCII; everything else unchanged."""
    return text.translate(_DIGITS)


def region_or(country_code: str | None, default: str) -> str:
    """The phone region to read local numbers in: the country if libphonenumber knows it."""
    code = (country_code or "").strip().upper()
    return code if code in phonenumbers.SUPPORTED_REGIONS else default.upper()


# Parsing is the costliest step of reading an order (every event of an order, and every order
# of a returning buyer, carries the same number): the valid results are remembered.
@functools.lru_cache(maxsize=16384)
def normalise_phone(raw: str, *, region: str) -> str:
    """E.164 ("+989121234567") or InvalidPhone. `region` reads local forms ("0912...")."""
    text = ascii_digits(raw).strip()
    if not text:
        raise InvalidPhone("empty phone number")
    # "0098..." is the international form wherever 00 is the exit code (Iran, Armenia, most of
    # the world); where it is not (011 in North America) no local number starts with 00.
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    """Stripped and lower-cased; InvalidEmail unless it looks like local@domain."""
    email = raw.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        raise InvalidEmail("not an email address")
    if any(c.isspace() for c in email) or len(email) > 320:
        raise InvalidEmail("not an email address")
    return email
