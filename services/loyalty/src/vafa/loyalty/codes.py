"""Codes people read aloud and type: coupon codes and referral codes.

Generated codes use an alphabet without the look-alikes 0/O and 1/I, drawn with `secrets`.
What a person types is normalised before it is looked up: Persian and Arabic-Indic digits become
ASCII digits, letters upper case, and spaces and dashes are dropped, so "abcd-۲۳۴۵" finds
"ABCD2345". Imported codes are stored normalised the same way.
"""

from __future__ import annotations

import secrets
import unicodedata

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

# Persian (U+06F0..) and Arabic-Indic (U+0660..) digits -> ASCII.
_DIGITS = str.maketrans(
    {**{chr(0x06F0 + i): str(i) for i in range(10)}, **{chr(0x0660 + i): str(i) for i in range(10)}}
)
_DROP = str.maketrans("", "", " -_\u200c\u200f\u200e\t")


def generate(length: int = 10) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def normalise(code: str) -> str:
    """The stored form of a typed code ("" when nothing is left)."""
    return unicodedata.normalize("NFKC", code).translate(_DIGITS).translate(_DROP).upper()
