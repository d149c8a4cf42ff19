"""Reading a customer CSV: the header, and each row validated into what it would write, or the
errors that keep it out. Pure functions, no database (custom field definitions are passed in).

Columns (header names are case-insensitive; order is free; every column is optional but each
row needs an email or a phone):

    email, phone                      how the row finds its file (email first, then phone)
    first_name, last_name, city, province, country_code, address, birth_date, gender,
    education, personality_type, acquisition_channel, acquisition_campaign, referred_by_code
    tags                              ';'-separated; added to the file's tags
    custom.<key>                      a custom field value, typed by its definition
                                      (multi_picklist: ';'-separated)

An empty cell leaves the field as it is. The export's read-only columns (id, emails, phones,
kind, lifecycle_stage, club_status, created_at) are accepted and ignored, so an export reads
back. Any other column is refused before a row is read.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import phonenumbers

from vafa.profile.attributes import service as attributes
from vafa.profile.customers.identities import (
    Identity,
    IdentityKind,
    InvalidEmail,
    InvalidPhone,
    ascii_digits,
    normalise_email,
    normalise_phone,
    region_or,
)
from vafa.profile.customers.schemas import parse_birth_date
from vafa.profile.models import CustomFieldDefinition

PLAIN = (
    "first_name",
    "last_name",
    "city",
    "province",
    "country_code",
    "address",
    "birth_date",
    "gender",
    "education",
    "personality_type",
    "acquisition_channel",
    "acquisition_campaign",
    "referred_by_code",
)
IGNORED = ("id", "emails", "phones", "kind", "lifecycle_stage", "club_status", "created_at")
MAX_LENGTH = {"address": 1000, "personality_type": 64, "referred_by_code": 64}
GENDERS = ("female", "male", "other")
CHANNELS = ("direct", "social", "referral", "campaign")
CUSTOM_PREFIX = "custom."


class BadFile(ValueError):
    """The file cannot be imported at all; `column` names the offending header cell."""

    def __init__(self, message: str, *, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True, slots=True)
class Header:
    columns: list[str]  # normalised names, in file order
    custom_keys: list[str]


@dataclass(slots=True)
class RowError:
    row: int
    column: str
    message: str


@dataclass(slots=True)
class Row:
    """A valid row: the identities (email first) and the fields it sets (never None)."""

    number: int
    identities: list[Identity]
    fields: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def decode(content: bytes) -> str:
    """UTF-8 with or without a BOM. Raises BadFile naming the line of the first bad byte."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise BadFile(f"the file is not UTF-8 (line {line}, byte {exc.start})") from exc


def read(text: str) -> tuple[Header, Iterator[tuple[int, list[str]]]]:
    """The header and the data rows, numbered from 1 (the header is row 0; blank lines are
    skipped but counted, so numbers match what a spreadsheet shows after the header)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        raw_header = next(reader)
    except StopIteration:
        raise BadFile("the file is empty: expected a header row") from None
    except csv.Error as exc:
        raise BadFile(f"the header is not valid CSV: {exc}") from exc
    header = parse_header(raw_header)

    def rows() -> Iterator[tuple[int, list[str]]]:
        number = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise BadFile(f"row {number + 1} is not valid CSV: {exc}") from exc
            number += 1
            if not any(c.strip() for c in cells):
                continue
            yield number, cells

    return header, rows()


def parse_header(cells: Sequence[str]) -> Header:
    columns = [c.strip().lower() for c in cells]
    seen: set[str] = set()
    custom = []
    for name in columns:
        if not name:
            raise BadFile("a header cell is empty", column="")
        if name in seen:
            raise BadFile(f"the column {name!r} appears twice", column=name)
        seen.add(name)
        if name.startswith(CUSTOM_PREFIX):
            key = name[len(CUSTOM_PREFIX) :]
            if not key:
                raise BadFile("a custom column needs a key: custom.<key>", column=name)
            custom.append(key)
        elif name not in (*PLAIN, *IGNORED, "email", "phone", "tags"):
            raise BadFile(
                f"unknown column {name!r}; known: email, phone, {', '.join(PLAIN)}, tags, "
                "custom.<key>",
                column=name,
            )
    if "email" not in seen and "phone" not in seen:
        raise BadFile("the header needs an email or a phone column", column="email")
    return Header(columns=columns, custom_keys=custom)


def check_custom_columns(header: Header, definitions: Mapping[str, CustomFieldDefinition]) -> None:
    for key in header.custom_keys:
        if key not in definitions:
            raise BadFile(f"no custom field has the key {key!r}", column=f"{CUSTOM_PREFIX}{key}")


# Mobile numbers are most of an import's phones, and libphonenumber's parse costs about a
# millisecond each: a number that is plainly a mobile of the region (+CC, 00CC, the national
# prefix or nothing, then a national number matching the region's own mobile pattern from
# libphonenumber's metadata) is formatted directly, which is what libphonenumber would return
# for it. Anything else takes the full parse.
_PUNCTUATION = str.maketrans("", "", " -().\u200c\u00a0")


@functools.lru_cache(maxsize=64)
def _mobile_rule(region: str) -> tuple[str, str, re.Pattern[str]] | None:
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    if meta is None or meta.mobile is None or not meta.mobile.national_number_pattern:
        return None
    return (
        str(meta.country_code),
        meta.national_prefix or "",
        re.compile(meta.mobile.national_number_pattern),
    )


def phone_of(raw: str, *, region: str) -> str:
    """E.164, as identities.normalise_phone gives it (raises InvalidPhone likewise)."""
    rule = _mobile_rule(region)
    if rule is not None:
        code, prefix, mobile = rule
        text = ascii_digits(raw).translate(_PUNCTUATION)
        if text.startswith("+" + code):
            national = text[len(code) + 1 :]
        elif text.startswith("00" + code):
            national = text[len(code) + 2 :]
        elif prefix and text.startswith(prefix):
            national = text[len(prefix) :]
        else:
            national = text
        if national.isdigit() and mobile.fullmatch(national):
            return f"+{code}{national}"
    return normalise_phone(raw, region=region)


_TRUE = {"true", "yes", "1", "بله", "y"}
_FALSE = {"false", "no", "0", "خیر", "n"}


def _custom_cell(definition: CustomFieldDefinition, raw: str) -> Any:
    value: Any = raw
    if definition.type == "boolean":
        word = ascii_digits(raw).strip().lower()
        if word in _TRUE:
            value = True
        elif word in _FALSE:
            value = False
        else:
            raise ValueError("expected true or false")
    elif definition.type == "multi_picklist":
        value = [v for v in (p.strip() for p in raw.split(";")) if v]
    return attributes.coerce(definition, value)


def validate(
    number: int,
    cells: Sequence[str],
    header: Header,
    *,
    definitions: Mapping[str, CustomFieldDefinition],
    default_region: str,
) -> Row | list[RowError]:
    """The row as it would be written, or every error in it (then nothing of it is written)."""
    errors: list[RowError] = []

    def err(column: str, message: str) -> None:
        errors.append(RowError(number, column, message))

    if len(cells) > len(header.columns):
        err("", f"{len(cells)} cells, but the header has {len(header.columns)} columns")
    values = {name: cells[i].strip() for i, name in enumerate(header.columns) if i < len(cells)}
    row = Row(number=number, identities=[])
    country = values.get("country_code") or ""
    if country:
        if len(country) != 2 or not country.isascii() or not country.isalpha():
            err("country_code", "expected an ISO 3166-1 alpha-2 code such as IR or AM")
        else:
            row.fields["country_code"] = country.upper()
    if values.get("email"):
        try:
            row.identities.append(Identity(IdentityKind.email, normalise_email(values["email"])))
        except InvalidEmail as exc:
            err("email", str(exc))
    if values.get("phone"):
        region = region_or(country, default_region)
        try:
            row.identities.append(
                Identity(IdentityKind.phone, phone_of(values["phone"], region=region))
            )
        except InvalidPhone as exc:
            err("phone", str(exc))
    if not values.get("email") and not values.get("phone"):
        err("email", "each row needs an email or a phone")
    for name in PLAIN:
        raw = values.get(name) or ""
        if not raw or name == "country_code":
            continue
        limit = MAX_LENGTH.get(name, 200)
        if len(raw) > limit:
            err(name, f"at most {limit} characters")
            continue
        if name == "birth_date":
            try:
                parsed = parse_birth_date(raw)
                born = parsed if isinstance(parsed, date) else date.fromisoformat(parsed)
            except ValueError as exc:
                err(name, f"expected a date (YYYY-MM-DD, Gregorian or Jalali): {exc}")
                continue
            if not date(1900, 1, 1) <= born <= date.today():
                err(name, "a birth date between 1900-01-01 and today")
                continue
            row.fields[name] = born
        elif name == "gender":
            if raw.lower() not in GENDERS:
                err(name, f"expected one of: {', '.join(GENDERS)}")
                continue
            row.fields[name] = raw.lower()
        elif name == "acquisition_channel":
            if raw.lower() not in CHANNELS:
                err(name, f"expected one of: {', '.join(CHANNELS)}")
                continue
            row.fields[name] = raw.lower()
        else:
            row.fields[name] = raw
    if values.get("tags"):
        try:
            row.tags = attributes.clean_tags(values["tags"].split(";"))
        except ValueError as exc:
            err("tags", str(exc))
    for key in header.custom_keys:
        raw = values.get(f"{CUSTOM_PREFIX}{key}") or ""
        if not raw:
            continue
        try:
            row.custom[key] = _custom_cell(definitions[key], raw)
        except ValueError as exc:
            err(f"{CUSTOM_PREFIX}{key}", str(exc))
    return errors or row
