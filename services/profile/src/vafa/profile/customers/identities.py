"""Normalising the ways a customer is recognised. Pure functions, no database.

- email and phone: as every service writes them (vafa.kit.identity); local phone forms are read
  in the order's billing country, else the service's default region;
- shop: "<platform>:<shop>:<shop_customer_id>", scoped by platform and shop like an order_ref.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from vafa.events.v1 import shop_orders_pb2
from vafa.kit.identity import (  # noqa: F401 (profile's modules import them from here)
    InvalidEmail,
    InvalidIdentity,
    InvalidPhone,
    ascii_digits,
    normalise_email,
    normalise_phone,
    region_or,
)


class IdentityKind(StrEnum):
    email = "email"
    phone = "phone"
    shop = "shop"


class Identity(NamedTuple):
    kind: IdentityKind
    value: str


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
