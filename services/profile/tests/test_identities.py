"""Normalisation of the ways a customer is recognised: pure, no database."""

import pytest

from vafa.profile.customers.identities import (
    InvalidEmail,
    InvalidPhone,
    ascii_digits,
    normalise_email,
    normalise_phone,
    region_or,
    shop_identity,
    split_shop_identity,
)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("09121234567", "IR", "+989121234567"),  # Iranian mobile, local form
        ("0912 123 4567", "IR", "+989121234567"),
        ("0912-123-4567", "IR", "+989121234567"),
        ("9121234567", "IR", "+989121234567"),  # the trunk 0 left off
        ("+989121234567", "IR", "+989121234567"),
        ("+98 912 123 4567", "AM", "+989121234567"),  # international form ignores the region
        ("00989121234567", "IR", "+989121234567"),
        ("00989121234567", "US", "+989121234567"),  # 00 even where the exit code is 011
        ("۰۹۱۲۱۲۳۴۵۶۷", "IR", "+989121234567"),  # Persian digits
        ("۰۰۹۸۹۱۲۱۲۳۴۵۶۷", "IR", "+989121234567"),
        ("۰۰۹۸۹۱۲۱۲۳۴۵۶۷", "US", "+989121234567"),  # 00 in Persian digits, too
        ("٠٩١٢١٢٣٤٥٦٧", "IR", "+989121234567"),  # Arabic-Indic digits
        ("۰۹۱۲ 123 ۴۵۶۷", "IR", "+989121234567"),  # mixed
        ("+37491123456", "IR", "+37491123456"),  # Armenian mobile, international form
        ("+374 91 123456", "IR", "+37491123456"),
        ("091 123 456", "AM", "+37491123456"),  # Armenian mobile, local form
        ("0037491123456", "IR", "+37491123456"),
        ("+1 650 253 0000", "IR", "+16502530000"),
    ],
)
def test_phone_normalisation(raw: str, region: str, expected: str) -> None:
    assert normalise_phone(raw, region=region) == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("", "IR"),
        ("   ", "IR"),
        ("not a phone", "IR"),
        ("12345", "IR"),  # too short to be any Iranian number
        ("0912", "IR"),
        ("09121234567890123", "IR"),  # too long
        ("+999 123 4567", "IR"),  # no such country code
        ("abc@example.com", "IR"),
    ],
)
def test_invalid_phones_are_refused(raw: str, region: str) -> None:
    with pytest.raises(InvalidPhone):
        normalise_phone(raw, region=region)


def test_local_form_depends_on_region() -> None:
    # The same digits are an Iranian number in IR and not a valid number in AM.
    assert normalise_phone("09121234567", region="IR") == "+989121234567"
    with pytest.raises(InvalidPhone):
        normalise_phone("09121234567", region="AM")


def test_ascii_digits_only_touches_digits() -> None:
    assert ascii_digits("۰۱۲۳۴۵۶۷۸۹ ٠١٢٣٤٥٦٧٨٩ abc") == "0123456789 0123456789 abc"


def test_region_from_billing_country_else_default() -> None:
    assert region_or("am", "IR") == "AM"
    assert region_or("", "IR") == "IR"
    assert region_or(None, "ir") == "IR"
    assert region_or("XX", "IR") == "IR"  # not a region libphonenumber knows


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Sara@Example.COM", "sara@example.com"),
        ("  sara@example.com\n", "sara@example.com"),
        ("SARA.AHMADI+shop@Mail.Example.ir", "sara.ahmadi+shop@mail.example.ir"),
    ],
)
def test_email_normalisation(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "sara", "sara@", "@example.com", "sara@localhost", "sa ra@example.com", "a@b."]
)
def test_invalid_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidEmail):
        normalise_email(raw)


def test_shop_identity_round_trip_with_a_url_shop() -> None:
    value = shop_identity("standard", "https://Shop.Example.am", " 42 ")
    assert value == "standard:https://shop.example.am:42"
    assert split_shop_identity(value) == ("standard", "https://shop.example.am", "42")
