"""The import's fast phone path gives exactly what libphonenumber gives (pure, no database)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from vafa.profile.customers.identities import InvalidPhone, normalise_phone
from vafa.profile.imports.rows import phone_of

PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def same(raw: str, region: str) -> None:
    try:
        expected = normalise_phone(raw, region=region)
    except InvalidPhone:
        try:
            got = phone_of(raw, region=region)
        except InvalidPhone:
            return
        raise AssertionError(
            f"{raw!r} ({region}): fast path accepted {got}, libphonenumber refused"
        ) from None
    assert phone_of(raw, region=region) == expected, (raw, region)


@settings(max_examples=400, deadline=None)
@given(
    national=st.from_regex(r"9[0-9]{9}|[1-8][0-9]{9}|9[0-9]{8}|[0-9]{8}", fullmatch=True),
    form=st.sampled_from(["{n}", "0{n}", "+98{n}", "0098{n}", "+98 {n}", "+374{n}", "0{n}"]),
    region=st.sampled_from(["IR", "AM"]),
    persian=st.booleans(),
)
def test_the_fast_path_agrees_with_libphonenumber(
    national: str, form: str, region: str, persian: bool
) -> None:
    raw = form.format(n=national)
    same(raw.translate(PERSIAN) if persian else raw, region)


def test_known_forms() -> None:
    for raw in (
        "09121234567",
        "۰۹۱۲۱۲۳۴۵۶۷",
        "+98 912 123 4567",
        "00989121234567",
        "0912-123-4567",
    ):
        assert phone_of(raw, region="IR") == "+989121234567"
    assert phone_of("091 23 45 67", region="AM") == normalise_phone("091 23 45 67", region="AM")
    assert phone_of("02188776655", region="IR") == "+982188776655"  # a landline: full parse
