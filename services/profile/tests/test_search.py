"""GET /v1/customers and the CSV export against the real database: folded name search,
identity filters in any form, attribute/custom-field/tag/consent/date filters, the keyset
cursor, and precise 422s. Tests share one database, so each scopes itself by a unique tag or
name."""

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jdatetime
from sqlalchemy import insert, text

from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.profile.config import Settings
from vafa.profile.models import Customer

from .factories import unique

VIEWER = principal_headers("staff", "v", "viewer")
PROBLEM = "application/problem+json"


def persian(s: str) -> str:
    return s.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))


def arabic_digits(s: str) -> str:
    return s.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))


async def add_customer(
    db: Database,
    *,
    tags: tuple[str, ...] = (),
    email: str | None = None,
    phone: str | None = None,
    consents: dict[str, bool] | None = None,
    dates: tuple[tuple[str, str, int, int], ...] = (),
    club: str | None = None,
    created_at: datetime | None = None,
    **fields: Any,
) -> str:
    """A customer file written directly (the file helper's write paths are tested there)."""
    cid = uuid.uuid4()
    cols = {
        "id": cid,
        "created_at": created_at or datetime.now(UTC),
        "updated_at": datetime.now(UTC),
        "lifecycle_stage": "lead",
        **fields,
    }
    async with db.sessionmaker() as s, s.begin():
        await s.execute(insert(Customer.__table__).values(**cols))
        for kind, value in (("email", email), ("phone", phone)):
            if value:
                await s.execute(
                    text(
                        "INSERT INTO customer_identities (customer_id, kind, value) "
                        "VALUES (:c, :k, :v)"
                    ),
                    {"c": cid, "k": kind, "v": value},
                )
        for tag in tags:
            await s.execute(
                text("INSERT INTO customer_tags (customer_id, tag) VALUES (:c, :t)"),
                {"c": cid, "t": tag},
            )
        for channel, granted in (consents or {}).items():
            await s.execute(
                text(
                    "INSERT INTO consents (customer_id, channel, granted, source, changed_at) "
                    "VALUES (:c, :ch, :g, 'staff', now())"
                ),
                {"c": cid, "ch": channel, "g": granted},
            )
        for kind, calendar, month, day in dates:
            await s.execute(
                text(
                    "INSERT INTO effective_dates (id, customer_id, kind, calendar, month, day) "
                    "VALUES (:i, :c, :k, :cal, :m, :d)"
                ),
                {"i": uuid.uuid4(), "c": cid, "k": kind, "cal": calendar, "m": month, "d": day},
            )
        if club:
            await s.execute(
                text(
                    "INSERT INTO club_accounts (customer_id, status, joined_via, joined_at) "
                    "VALUES (:c, :s, 'signup', now())"
                ),
                {"c": cid, "s": club},
            )
    return str(cid)


async def ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    r = await client.get("/v1/customers", params=params, headers=VIEWER)
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()["items"]]


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    return body


async def test_name_search_folds_letters_and_digits(
    client: httpx.AsyncClient, db: Database
) -> None:
    n = str(uuid.uuid4().int)[:6]
    # Written with Arabic yeh and kaf, and Persian digits.
    arabic = await add_customer(db, first_name="علي", last_name=f"كريمي{persian(n)}")
    # Written with Persian yeh and keheh, and Arabic-Indic digits.
    farsi = await add_customer(db, first_name="مریم", last_name=f"یکتا{arabic_digits(n)}")
    assert await ids(client, q=f"علی کریمی{n}") == [arabic]  # Persian letters, Latin digits
    assert await ids(client, q=f"كريمي{arabic_digits(n)}") == [arabic]
    assert await ids(client, q=f"يكتا{n}") == [farsi]  # Arabic letters find Persian ones
    assert await ids(client, q=f"مریم یکتا{persian(n)}") == [farsi]
    assert set(await ids(client, q=n)) == {arabic, farsi}  # digits alone, any script
    # Every word must appear; LIKE wildcards in the query are literal.
    assert await ids(client, q=f"مریم کریمی{n}") == []
    assert await ids(client, q=f"%{n}") == []


async def test_email_and_phone_in_any_form(client: httpx.AsyncClient, db: Database) -> None:
    local = "0912" + str(uuid.uuid4().int)[:7]
    mail = f"{unique()}@example.com"
    cid = await add_customer(db, email=mail, phone="+98" + local[1:], first_name="x")
    for phone in (
        local,
        persian(local),
        arabic_digits(local),
        "0098" + local[1:],
        "+98 " + local[1:],
    ):
        assert await ids(client, phone=phone) == [cid], phone
    assert await ids(client, email=mail.upper()) == [cid]
    body = problem(
        await client.get("/v1/customers", params={"phone": "12-ab"}, headers=VIEWER), 422
    )
    assert body["errors"][0]["pointer"] == "/query/phone"


async def test_attribute_filters(client: httpx.AsyncClient, db: Database) -> None:
    tag = unique("t-")
    a = await add_customer(
        db,
        tags=(tag, "vip"),
        city="كرج",
        province="البرز",
        country_code="IR",
        gender="female",
        kind="customer",
        lifecycle_stage="repeat",
        acquisition_channel="referral",
        birth_date=date(1990, 3, 21),
        consents={"sms": True, "email": False},
        custom_fields={"favourite_genre": "fantasy", "children": 2, "vip": True},
        club="verified",
    )
    b = await add_customer(
        db,
        tags=(tag,),
        city="Yerevan",
        country_code="AM",
        gender="male",
        kind="lead",
        lifecycle_stage="lead",
        acquisition_channel="social",
        birth_date=date(1985, 7, 2),
        consents={"email": True},
        custom_fields={"favourite_genre": "poetry", "children": 0},
    )
    async with db.sessionmaker() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO custom_field_definitions (key, label, type, options) VALUES "
                "('favourite_genre', 'Genre', 'picklist', '[\"fantasy\", \"poetry\"]'), "
                "('children', 'Children', 'number', '[]'), ('vip', 'VIP', 'boolean', '[]') "
                "ON CONFLICT (key) DO NOTHING"
            )
        )
    both = {a, b}
    assert set(await ids(client, tag=tag)) == both
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"city": "کرج"}, {a}),  # Persian keheh finds the Arabic-kaf spelling
        ({"province": "البرز"}, {a}),
        ({"city": ["yerevan", "Tabriz"]}, {b}),
        ({"country_code": "am"}, {b}),
        ({"gender": "female"}, {a}),
        ({"kind": "lead"}, {b}),
        ({"lifecycle_stage": ["repeat", "lapsed"]}, {a}),
        ({"acquisition_channel": "social"}, {b}),
        ({"birth_month": 3}, {a}),
        ({"tag": [tag, "vip"]}, {a}),
        ({"custom": "favourite_genre:poetry"}, {b}),
        ({"custom": "children:۲"}, {a}),  # a Persian digit, typed as a number
        ({"custom": ["vip:true", "children:2"]}, {a}),
        ({"consent": "sms"}, {a}),
        ({"consent": "email"}, {b}),
        ({"no_consent": "email"}, {a}),
        ({"club_status": "verified"}, {a}),
        ({"club_status": "none"}, {b}),
    ]
    for params, expected in cases:
        # Scoped to this test's customers by the tag (the tag case names it itself).
        assert set(await ids(client, **{"tag": tag, **params})) == expected, params


async def test_effective_date_filters(client: httpx.AsyncClient, db: Database) -> None:
    tag = unique("d-")
    today = datetime.now(ZoneInfo(Settings().timezone)).date()
    soon = jdatetime.date.fromgregorian(date=today + timedelta(days=3))
    later = today + timedelta(days=40)
    jalali_soon = await add_customer(
        db, tags=(tag,), dates=(("birthday", "jalali", soon.month, soon.day),)
    )
    gregorian_later = await add_customer(
        db, tags=(tag,), dates=(("wedding_anniversary", "gregorian", later.month, later.day),)
    )
    assert await ids(client, tag=tag, date_within_days=7) == [jalali_soon]
    assert set(await ids(client, tag=tag, date_within_days=45)) == {jalali_soon, gregorian_later}
    assert await ids(client, tag=tag, date_kind="wedding_anniversary") == [gregorian_later]
    assert await ids(client, tag=tag, date_kind="birthday", date_within_days=2) == []


async def test_cursor_pages_are_stable(client: httpx.AsyncClient, db: Database) -> None:
    tag = unique("p-")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    # Two share a created_at: the id breaks the tie.
    made = [
        await add_customer(db, tags=(tag,), created_at=base + timedelta(minutes=i // 2 * 2))
        for i in range(7)
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"tag": tag, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/v1/customers", params=params, headers=VIEWER)
        body = r.json()
        seen += [c["id"] for c in body["items"]]
        pages += 1
        if pages == 1:
            # A newer file arrives mid-listing: it is not on later pages, nothing repeats.
            await add_customer(db, tags=(tag,))
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 7 and set(seen) == set(made)
    r = await client.get("/v1/customers", params={"tag": tag, "limit": 100}, headers=VIEWER)
    items = r.json()["items"]
    keys = [(i["created_at"], i["id"]) for i in items]
    assert keys == sorted(keys, reverse=True) and len(items) == 8


async def test_precise_422s(client: httpx.AsyncClient) -> None:
    for params, pointer in (
        ({"bogus": "1"}, "/query/bogus"),
        ({"cursor": "not-ours"}, "/query/cursor"),
        ({"custom": "nope:1"}, "/query/custom"),
        ({"custom": "nokey"}, "/query/custom"),
        ({"birth_month": "13"}, "/query/birth_month"),
        ({"gender": "robot"}, "/query/gender/0"),
        ({"limit": "0"}, "/query/limit"),
        ({"created_from": "yesterday"}, "/query/created_from"),
    ):
        body = problem(await client.get("/v1/customers", params=params, headers=VIEWER), 422)
        assert body["errors"][0]["pointer"] == pointer, (params, body)


async def test_custom_value_typed_by_its_definition(
    client: httpx.AsyncClient, db: Database
) -> None:
    async with db.sessionmaker() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO custom_field_definitions (key, label, type, options) VALUES "
                "('shoe_size', 'Shoe size', 'number', '[]') ON CONFLICT (key) DO NOTHING"
            )
        )
    body = problem(
        await client.get("/v1/customers", params={"custom": "shoe_size:big"}, headers=VIEWER),
        422,
    )
    assert body["errors"][0]["pointer"] == "/query/custom" and "shoe_size" in body["detail"]


async def test_members_and_anonymous_cannot_list(client: httpx.AsyncClient) -> None:
    member = principal_headers("member", str(uuid.uuid4()), "")
    problem(await client.get("/v1/customers", headers=member), 403)
    problem(await client.get("/v1/customers/export", headers=member), 403)
    problem(await client.get("/v1/customers"), 401)


async def test_export_streams_the_filtered_list(client: httpx.AsyncClient, db: Database) -> None:
    tag = unique("e-")
    a = await add_customer(
        db, tags=(tag,), first_name="آنی", last_name="Պետրոսյան", email=f"{unique()}@example.com"
    )
    b = await add_customer(db, tags=(tag,), first_name="سارا", phone="+989121110000")
    await add_customer(db, first_name="not in it")
    r = await client.get("/v1/customers/export", params={"tag": tag}, headers=VIEWER)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert {row["id"] for row in rows} == {a, b}
    by_id = {row["id"]: row for row in rows}
    assert by_id[a]["last_name"] == "Պետրոսյան" and by_id[a]["club_status"] == "none"
    assert by_id[b]["phone"] == "+989121110000"
    body = problem(
        await client.get("/v1/customers/export", params={"bogus": 1}, headers=VIEWER), 422
    )
    assert body["errors"][0]["pointer"] == "/query/bogus"
