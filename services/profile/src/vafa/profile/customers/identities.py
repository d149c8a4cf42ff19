"""Normalising the ways a customer is recognised. Pure functions, no database.

- email: stripped and lower-cased;
- phone: E.164 via libphonenumber, after turning Persian (۰-۹) and Arabic-Indic (٠-٩) digits
  into ASCII; local forms ("09121234567") are read in a region (the order's billing country,
  else the service's default region);
- shop: "<platform>:<shop>:<shop_customer_id>", scoped by platform and shop like an order_ref.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import NamedTuple

import phonenumbers

from vafa.events.v1 import shop_orders_pb2

_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")


class IdentityKind(StrEnum):
    email = "email"
    phone = "phone"
    shop = "shop"


class Identity(NamedTuple):
    kind: IdentityKind
    value: str


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


PLATFORM_NAMES = {
    shop_orders_pb2.PLATFORM_SHOPIFY: "shopify",
    shop_orders_pb2.PLATFORM_WOOCOMMERCE: "woocommerce",
    shop_orders_pb2.PLATFORM_STANDARD: "standard",
}


def platform_name(platform: int) -> str:
    return PLATFORM_NAMES.get(platform, "unknown")


def shop_identity(platform: str, shop: str, shop_customer_id: str) -> str:
    return f"{platform}:{shop.strip().lower()}:{shop_customer_id.strip()}"


def split_shop_identity(value: str) -> tuple[str, str, str]:
    """(platform, shop, shop_customer_id). The shop may itself hold ':' (a URL), so the
    platform is cut at the first colon and the shop's customer id at the last."""
    platform, _, rest = value.partition(":")
    shop, _, shop_customer_id = rest.rpartition(":")
    return platform, shop, shop_customer_id


# The Python twin of the database's vafa_fold() (migration 0002_file), for text matched in the
# service (SMS keywords): the same letters and digits read alike.
_FOLD = str.maketrans(
    {
        **{c: "ی" for c in "يىئ"},
        "ك": "ک",
        "ة": "ه",
        "ۀ": "ه",
        **{c: "ا" for c in "أإآٱ"},
        "ؤ": "و",
        **{chr(0xFF10 + i): str(i) for i in range(10)},
        "\u00a0": " ",
        **{c: None for c in "\u200c\u200d\u200e\u200f\u0640"},
        **{chr(c): None for c in (*range(0x064B, 0x0653), 0x0654, 0x0655, 0x0670)},
    }
)


def fold(text: str) -> str:
    """Lower-cased, Arabic letter forms as Persian, every digit ASCII, ZWNJ/tatweel/harakat
    removed, whitespace collapsed: as vafa_fold() in the database."""
    return " ".join(ascii_digits(text.lower()).translate(_FOLD).split())
