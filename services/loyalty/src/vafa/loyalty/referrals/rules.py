"""Referral rules with no I/O: normalising contacts, and what makes two customers one person."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

_DIGITS = str.maketrans(
    {**{chr(0x06F0 + i): str(i) for i in range(10)}, **{chr(0x0660 + i): str(i) for i in range(10)}}
)
_SPACES = re.compile(r"\s+")


def phone(value: str) -> str:
    """Digits only (with Persian/Arabic digits read as digits): profile sends E.164 already;
    this only makes "+98 912 ..." and "+98912..." equal."""
    return re.sub(r"\D", "", unicodedata.normalize("NFKC", value).translate(_DIGITS))


def email(value: str) -> str:
    return value.strip().lower()


def address(value: str) -> str:
    """Case, spacing and digit script do not make two addresses different."""
    text = unicodedata.normalize("NFKC", value).translate(_DIGITS).casefold()
    # Arabic yeh/kaf and Persian yeh/keheh are one letter to a reader.
    text = text.replace("\u064a", "\u06cc").replace("\u0643", "\u06a9")
    return _SPACES.sub(" ", re.sub(r"[,.،\-]", " ", text)).strip()


@dataclass(frozen=True, slots=True)
class Contacts:
    phones: frozenset[str]
    emails: frozenset[str]
    address: str | None

    @classmethod
    def of(cls, phones: Iterable[str], emails: Iterable[str], addr: str | None) -> Contacts:
        return cls(
            frozenset(p for p in (phone(x) for x in phones) if p),
            frozenset(e for e in (email(x) for x in emails) if e),
            address(addr) or None if addr else None,
        )


def shared(a: Contacts, b: Contacts) -> str | None:
    """What two customers have in common that makes them one person ("phone", "email",
    "address"), or None."""
    if a.phones & b.phones:
        return "phone"
    if a.emails & b.emails:
        return "email"
    if a.address and a.address == b.address:
        return "address"
    return None
