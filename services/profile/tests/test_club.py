"""The club account over HTTP against the real database: sign-up, password and code sign-in,
reset, verification, lockout, the member token through the gateway's own check, and the
retention club's enrolment by the worker on the real broker."""

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from vafa.events.v1 import profile_pb2, shop_orders_pb2
from vafa.gateway.auth import Authenticator
from vafa.kit import cloudevents
from vafa.kit.auth import verify_member_token
from vafa.kit.cli import ServiceSpec
from vafa.kit.db import Database
from vafa.kit.settings import KafkaSettings, ServiceSettings
from vafa.kit.testing.plugin import TEST_INTERNAL_TOKEN, principal_headers, settings_for
from vafa.kit.testing.poll import eventually
from vafa.profile.club import service as club

from .factories import make_order, unique
from .test_worker import produce

SECRET = "test-secret-of-the-club-" + "x" * 16
PROBLEM = "application/problem+json"


@pytest.fixture
def settings(service_spec: ServiceSpec, database_url: str, kafka: KafkaSettings) -> ServiceSettings:
    """The service's settings with a member-token secret, a short lockout and no resend pause."""
    return settings_for(
        service_spec,
        database_url,
        kafka,
        lockout_threshold=3,
        lockout_minutes=10,
        code_max_attempts=3,
        code_resend_seconds=0,
        **{"VAFA_JWT_SECRET": SECRET},
    )


def member(customer_id: str) -> dict[str, str]:
    return principal_headers("member", customer_id, "")


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


def new_phone() -> str:
    return "0912" + str(uuid.uuid4().int)[:7]


def persian(digits: str) -> str:
    return digits.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))


async def events_for(db: Database, customer_id: str) -> list[Any]:
    """The customer's events in the outbox, oldest first, decoded (payloads blanked by the
    scrubber are skipped)."""
    async with db.sessionmaker() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT headers, payload FROM outbox WHERE key = :k "
                    "AND payload <> ''::bytea ORDER BY id"
                ),
                {"k": customer_id},
            )
        ).all()
    return [cloudevents.decode([(k, v.encode()) for k, v in h], p).message for h, p in rows]


async def last_code(
    db: Database, customer_id: str, purpose: str
) -> profile_pb2.OneTimeCodeRequested:
    codes = [
        m
        for m in await events_for(db, customer_id)
        if isinstance(m, profile_pb2.OneTimeCodeRequested) and m.purpose == purpose
    ]
    assert codes, f"no {purpose} code was sent"
    return codes[-1]


async def sign_up(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/club/signup", json={"password": "correct horse", **body})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_sign_up_then_sign_in_by_phone_in_any_form(
    client: httpx.AsyncClient, db: Database
) -> None:
    phone = new_phone()
    mail = f"{unique()}@Example.com"
    token = await sign_up(
        client,
        first_name="سارا",
        last_name="احمدی",
        phone=persian(phone),
        email=mail,
        referral_code="FRIEND-42",
    )
    cid = token["customer_id"]
    assert token["token_type"] == "bearer" and token["expires_in"] == 3600
    assert verify_member_token(token["access_token"], secret=SECRET) == cid

    # CustomerRegistered from the club, membership in the snapshot; a verify code went out.
    registered, code = await events_for(db, cid)
    assert isinstance(registered, profile_pb2.CustomerRegistered)
    assert registered.source == "club"
    snap = registered.customer
    assert (snap.club_status, snap.lifecycle_stage) == ("member", "lead")
    assert snap.club_joined_at.seconds > 0
    assert isinstance(code, profile_pb2.OneTimeCodeRequested)
    assert (code.purpose, code.channel, code.destination) == ("verify", "sms", "+98" + phone[1:])

    for identifier in (phone, "+98" + phone[1:], "0098" + phone[1:], persian(phone), mail.upper()):
        r = await client.post(
            "/v1/club/login", json={"identifier": identifier, "password": "correct horse"}
        )
        assert r.status_code == 200, (identifier, r.text)
        assert r.json()["customer_id"] == cid

    r = await client.get("/v1/club/me/account", headers=member(cid))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "member" and r.json()["joined_via"] == "signup"
    r = await client.get("/v1/club/me", headers=member(cid))
    assert r.json()["first_name"] == "سارا"
    async with db.sessionmaker() as s:
        row = (
            await s.execute(
                text("SELECT referred_by_code, acquisition_channel FROM customers WHERE id = :i"),
                {"i": cid},
            )
        ).one()
    assert tuple(row) == ("FRIEND-42", "referral")


async def test_sign_up_problems(client: httpx.AsyncClient) -> None:
    phone = new_phone()
    await sign_up(client, phone=phone)
    body = problem(
        await client.post("/v1/club/signup", json={"phone": phone, "password": "another one"}),
        409,
    )
    assert body["pointer"] == "/body/phone" and "customer_id" not in body
    body = problem(
        await client.post("/v1/club/signup", json={"phone": "12-ab", "password": "long enough"}),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/phone"
    body = problem(
        await client.post("/v1/club/signup", json={"phone": new_phone(), "password": "short"}),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/password"
    body = problem(await client.post("/v1/club/signup", json={"password": "long enough"}), 422)
    assert body["errors"][0]["pointer"] == "/body"


async def test_login_failures_look_alike_and_lock(client: httpx.AsyncClient) -> None:
    mail = f"{unique()}@example.com"
    await sign_up(client, email=mail)
    stranger = f"{unique()}@example.com"
    wrong = await client.post("/v1/club/login", json={"identifier": mail, "password": "nope!"})
    unknown = await client.post("/v1/club/login", json={"identifier": stranger, "password": "x"})
    a, b = problem(wrong, 401), problem(unknown, 401)
    assert {k: v for k, v in a.items() if k != "instance"} == {
        k: v for k, v in b.items() if k != "instance"
    }
    # The third failure (threshold 3) locks; then even the right password is refused.
    await client.post("/v1/club/login", json={"identifier": mail, "password": "nope!"})
    locked = problem(
        await client.post("/v1/club/login", json={"identifier": mail, "password": "nope!"}), 429
    )
    assert locked["type"].endswith("/sign-in-locked") and locked["retry_after_seconds"] > 500
    r = await client.post("/v1/club/login", json={"identifier": mail, "password": "correct horse"})
    problem(r, 429)
    assert int(r.headers["retry-after"]) > 500
    # Unknown identifiers lock the same way, so a lock says nothing about membership.
    for _ in range(2):
        await client.post("/v1/club/login", json={"identifier": stranger, "password": "x"})
    problem(
        await client.post("/v1/club/login", json={"identifier": stranger, "password": "x"}), 429
    )


async def test_concurrent_failures_lock_the_identifier(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Six wrong passwords at once (separate requests, separate transactions, threshold 3):
    the counter is one upsert per failure, so none is lost to a race and the identifier ends
    locked."""
    mail = f"{unique()}@example.com"
    await sign_up(client, email=mail)
    responses = await asyncio.gather(
        *(
            client.post("/v1/club/login", json={"identifier": mail, "password": f"bad{i}"})
            for i in range(6)
        )
    )
    assert {r.status_code for r in responses} <= {401, 429}
    async with db.sessionmaker() as s:
        row = (
            await s.execute(
                text(
                    "SELECT failures, locked_until > now() FROM sign_in_throttle "
                    "WHERE identifier = :i"
                ),
                {"i": f"email:{mail}"},
            )
        ).one()
    # Failures 1-3 lock; the rest arrive locked (429, not counted) or add to the count.
    assert row[1] is True
    assert sum(r.status_code == 429 for r in responses) >= 1


async def test_codes_are_stored_hashed_and_sign_in_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    phone = new_phone()
    cid = (await sign_up(client, phone=phone))["customer_id"]
    r = await client.post("/v1/club/codes", json={"identifier": phone, "purpose": "sign_in"})
    assert r.status_code == 202, r.text
    # Nobody holds this one: the same answer.
    r2 = await client.post("/v1/club/codes", json={"identifier": new_phone(), "purpose": "sign_in"})
    assert (r2.status_code, r2.json()) == (r.status_code, r.json())

    sent = await last_code(db, cid, "sign_in")
    assert len(sent.code) == 6 and sent.code.isdigit() and sent.channel == "sms"
    async with db.sessionmaker() as s:
        stored = (
            await s.execute(
                text("SELECT code_hash, destination FROM one_time_codes WHERE customer_id = :c"),
                {"c": cid},
            )
        ).all()
    assert stored and all(sent.code not in h for h, _ in stored)
    assert all(len(h) == 64 for h, _ in stored)  # an HMAC-SHA256, never the code

    # Redeemed once, concurrently: exactly one sign-in succeeds.
    attempts = await asyncio.gather(
        *(
            client.post(
                "/v1/club/login/code", json={"identifier": persian(phone), "code": sent.code}
            )
            for _ in range(3)
        )
    )
    assert sorted(a.status_code for a in attempts) == [200, 401, 401]
    ok = next(a for a in attempts if a.status_code == 200)
    assert ok.json()["customer_id"] == cid
    # A code proves the phone: verified, and evented.
    r = await client.get("/v1/club/me/account", headers=member(cid))
    assert r.json()["status"] == "verified"
    updates = [m for m in await events_for(db, cid) if isinstance(m, profile_pb2.CustomerUpdated)]
    assert updates[-1].customer.club_status == "verified"
    assert updates[-1].changed_fields == ["club_status"]


async def test_a_code_dies_after_wrong_tries_and_a_new_one_replaces_it(
    client: httpx.AsyncClient, db: Database
) -> None:
    mail = f"{unique()}@example.com"
    cid = (await sign_up(client, email=mail))["customer_id"]
    await client.post("/v1/club/codes", json={"identifier": mail, "purpose": "sign_in"})
    first = await last_code(db, cid, "sign_in")
    await client.post("/v1/club/codes", json={"identifier": mail, "purpose": "sign_in"})
    second = await last_code(db, cid, "sign_in")
    assert first.code != second.code or first.expires_at != second.expires_at
    # The replaced code no longer works (unless the random codes collide).
    if first.code != second.code:
        problem(
            await client.post("/v1/club/login/code", json={"identifier": mail, "code": first.code}),
            401,
        )
    wrong = "000000" if second.code != "000000" else "111111"
    for _ in range(2):
        await client.post("/v1/club/login/code", json={"identifier": mail, "code": wrong})
    # Three wrong tries (code_max_attempts) spent the code; the identifier is locked too.
    async with db.sessionmaker() as s:
        live = (
            await s.execute(
                text(
                    "SELECT count(*) FROM one_time_codes WHERE customer_id = :c "
                    "AND purpose = 'sign_in' AND spent_at IS NULL"
                ),
                {"c": cid},
            )
        ).scalar_one()
    assert live == 0
    problem(
        await client.post("/v1/club/login/code", json={"identifier": mail, "code": second.code}),
        429,
    )


async def test_password_reset_by_code(client: httpx.AsyncClient, db: Database) -> None:
    mail = f"{unique()}@example.com"
    cid = (await sign_up(client, email=mail))["customer_id"]
    r = await client.post("/v1/club/codes", json={"identifier": mail, "purpose": "password_reset"})
    assert r.status_code == 202
    code = (await last_code(db, cid, "password_reset")).code
    body = problem(
        await client.post(
            "/v1/club/password-reset",
            json={"identifier": mail, "code": code, "new_password": "tiny"},
        ),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/new_password"
    r = await client.post(
        "/v1/club/password-reset",
        json={"identifier": mail, "code": code, "new_password": "a brand new secret"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["customer_id"] == cid
    problem(
        await client.post("/v1/club/login", json={"identifier": mail, "password": "correct horse"}),
        401,
    )
    r = await client.post(
        "/v1/club/login", json={"identifier": mail, "password": "a brand new secret"}
    )
    assert r.status_code == 200
    # The code is spent.
    problem(
        await client.post(
            "/v1/club/password-reset",
            json={"identifier": mail, "code": code, "new_password": "yet another secret"},
        ),
        401,
    )


async def test_verification_while_signed_in(client: httpx.AsyncClient, db: Database) -> None:
    mail = f"{unique()}@example.com"
    cid = (await sign_up(client, email=mail))["customer_id"]
    body = problem(
        await client.post("/v1/club/me/verification", json={"channel": "sms"}, headers=member(cid)),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/channel"
    r = await client.post(
        "/v1/club/me/verification", json={"channel": "email"}, headers=member(cid)
    )
    assert r.status_code == 202, r.text
    code = (await last_code(db, cid, "verify")).code
    body = problem(
        await client.post(
            "/v1/club/me/verification/confirm",
            json={"code": "999999" if code != "999999" else "888888"},
            headers=member(cid),
        ),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/code"
    r = await client.post(
        "/v1/club/me/verification/confirm", json={"code": code}, headers=member(cid)
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "verified" and r.json()["verified_at"]


async def test_the_member_token_round_trips_through_the_gateway_check(
    client: httpx.AsyncClient,
) -> None:
    """The token the club issues is the one the gateway accepts (same secret, same claims);
    the principal it derives reaches the member's own file."""
    mail = f"{unique()}@example.com"
    cid = (await sign_up(client, email=mail))["customer_id"]
    r = await client.post("/v1/club/login", json={"identifier": mail, "password": "correct horse"})
    token = r.json()["access_token"]
    gateway = Authenticator([], SECRET)
    principal = gateway.authorize(f"Bearer {token}", "/v1/club/me", public=False)
    assert principal.kind == "member" and principal.id == cid
    r = await client.get(
        "/v1/club/me",
        headers={
            "x-vafa-principal": principal.header_value(),
            "x-vafa-roles": "",
            "x-vafa-internal-token": TEST_INTERNAL_TOKEN,
        },
    )
    assert r.status_code == 200 and r.json()["id"] == cid
    # Another secret's token is refused by the gateway.
    with pytest.raises(Exception, match="not valid"):
        Authenticator([], "another-secret-" + "y" * 20).principal(f"Bearer {token}")


async def test_public_routes_are_documented_public(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/v1/club/signup", "/v1/club/login", "/v1/club/login/code", "/v1/club/codes"):
        assert spec[path]["post"]["security"] == [], path
    assert spec["/v1/club/password-reset"]["post"]["security"] == []
    assert "security" not in spec["/v1/club/me"]["get"]
    assert "security" not in spec["/v1/club/me/verification"]["post"]


async def test_no_secret_no_sign_in(
    service_spec: ServiceSpec, database_url: str, kafka: KafkaSettings
) -> None:
    from vafa.profile.app import create_app

    app = create_app(
        settings_for(service_spec, database_url, kafka)  # type: ignore[arg-type]
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        r = await c.post(
            "/v1/club/login", json={"identifier": "a@example.com", "password": "whatever"}
        )
    assert problem(r, 503)["type"].endswith("/club-not-configured")


async def test_a_paid_purchase_enrols_once(
    settings: ServiceSettings, db: Database, worker: asyncio.Event
) -> None:
    """The retention club on the real broker: PurchaseAttributed PAID (twice, and a second
    paid order) makes one 'member' account and one CustomerUpdated; PLACED enrols nobody."""
    from vafa.profile.orders import service as orders
    from vafa.profile.orders.service import PurchaseKind

    mail = f"{unique()}@example.com"
    async with db.sessionmaker() as s, s.begin():
        placed = await orders.record_order_event(
            s,
            kind=PurchaseKind.placed,
            order=make_order(email=f"{unique()}@example.com"),
            event_id=unique("evt-"),
            occurred_at=club.utcnow(),
            default_region="IR",
        )
        assert placed is not None
        paid = await orders.record_order_event(
            s,
            kind=PurchaseKind.paid,
            order=make_order(email=mail),
            event_id=unique("evt-"),
            occurred_at=club.utcnow(),
            default_region="IR",
        )
        assert paid is not None
    cid = str(paid.customer_id)
    # The same paid purchase again, by hand, and another paid order's event.
    again = cloudevents.encode(
        profile_pb2.PurchaseAttributed(
            customer_id=cid,
            kind=profile_pb2.PURCHASE_KIND_PAID,
            order=shop_orders_pb2.Order(order_ref=unique("ref-")),
        ),
        source="/vafa/profile",
        event_id=unique("pa-"),
    )
    await produce(settings, "profile.purchases.v1", (*again, cid.encode()))

    async def enrolled() -> Any:
        async with db.sessionmaker() as s:
            return (
                await s.execute(
                    text("SELECT status, joined_via FROM club_accounts WHERE customer_id = :c"),
                    {"c": cid},
                )
            ).one_or_none()

    assert tuple(await eventually(enrolled)) == ("member", "purchase")

    async def handled() -> bool:
        async with db.sessionmaker() as s:
            n = (
                await s.execute(text("SELECT count(*) FROM inbox WHERE consumer = 'profile.club'"))
            ).scalar_one()
            return int(n) >= 3

    await eventually(handled)
    async with db.sessionmaker() as s:
        enrolments = (
            await s.execute(
                text("SELECT count(*) FROM outbox WHERE key = :c AND headers @> CAST(:t AS jsonb)"),
                {"c": cid, "t": '[["ce_type", "vafa.events.v1.CustomerUpdated"]]'},
            )
        ).scalar_one()
        nobody = (
            await s.execute(
                text("SELECT count(*) FROM club_accounts WHERE customer_id = :c"),
                {"c": placed.customer_id},
            )
        ).scalar_one()
    assert (enrolments, nobody) == (1, 0)
    update = [m for m in await events_for(db, cid) if isinstance(m, profile_pb2.CustomerUpdated)]
    assert update[0].customer.club_status == "member"
    assert update[0].changed_fields == ["club_joined_at", "club_status"]


async def test_sent_code_payloads_are_blanked(
    client: httpx.AsyncClient, db: Database, worker: asyncio.Event
) -> None:
    """Once the relay has published a OneTimeCodeRequested, the worker blanks the outbox copy:
    the code is not left in the database."""
    mail = f"{unique()}@example.com"
    cid = (await sign_up(client, email=mail))["customer_id"]

    async def blanked() -> bool:
        async with db.sessionmaker() as s:
            n = (
                await s.execute(
                    text(
                        "SELECT count(*) FROM outbox WHERE key = :c AND payload <> ''::bytea "
                        "AND headers @> CAST(:t AS jsonb)"
                    ),
                    {"c": cid, "t": club.SCRUB_TYPE},
                )
            ).scalar_one()
            return int(n) == 0

    await eventually(blanked, what="the sent code's outbox payload blanked")


async def test_members_edit_their_own_details_and_consents(
    client: httpx.AsyncClient, db: Database
) -> None:
    phone = new_phone()
    cid = (await sign_up(client, phone=phone, first_name="Ani"))["customer_id"]
    r = await client.patch(
        "/v1/club/me",
        json={"last_name": "Պետրոսյան", "birth_date": "۱۳۶۹-۰۱-۰۱", "city": "Yerevan"},
        headers=member(cid),
    )
    assert r.status_code == 200, r.text
    assert r.json()["last_name"] == "Պետրոսյան" and r.json()["city"] == "Yerevan"
    updated = [m for m in await events_for(db, cid) if isinstance(m, profile_pb2.CustomerUpdated)]
    assert updated[-1].changed_fields == ["birth_date", "city", "last_name"]
    assert updated[-1].customer.birth_date == "1990-03-21"  # 1369-01-01 Jalali
    # Staff-only fields are not the member's to change.
    for field, value in (("lifecycle_stage", "repeat"), ("custom_fields", {}), ("email", "x@y.z")):
        body = problem(
            await client.patch("/v1/club/me", json={field: value}, headers=member(cid)), 422
        )
        assert body["errors"][0]["pointer"] == f"/body/{field}"

    r = await client.put(
        "/v1/club/me/consents", json={"channel": "sms", "granted": True}, headers=member(cid)
    )
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "club" and r.json()["granted"] is True
    r = await client.get("/v1/club/me/consents", headers=member(cid))
    assert [(c["channel"], c["granted"]) for c in r.json()["current"]] == [("sms", True)]
    assert r.json()["history"][0]["detail"] == {"by": f"member:{cid}"}


async def test_members_read_their_own_timeline(client: httpx.AsyncClient, db: Database) -> None:
    from vafa.profile.timeline import service as timeline

    cid = (await sign_up(client, email=f"{unique()}@example.com"))["customer_id"]
    async with db.sessionmaker() as s, s.begin():
        await timeline.add_entries(
            s,
            [
                timeline.NewEntry(
                    customer_id=uuid.UUID(cid),
                    kind="club.visit",
                    occurred_at=club.utcnow(),
                    source="test",
                    source_id=unique("visit-"),
                    summary=f"visit {i}",
                    data={},
                )
                for i in range(3)
            ],
        )
    r = await client.get("/v1/club/me/timeline", params={"limit": 2}, headers=member(cid))
    assert r.status_code == 200, r.text
    first = r.json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    r = await client.get(
        "/v1/club/me/timeline",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=member(cid),
    )
    assert len(r.json()["items"]) == 1 and r.json()["next_cursor"] is None
    body = problem(
        await client.get("/v1/club/me/timeline", params={"cursor": "x"}, headers=member(cid)), 422
    )
    assert body["errors"][0]["pointer"] == "/query/cursor"


async def test_a_member_never_reaches_another_members_data(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Member A's principal on member B's id, on every route of the service that takes a
    customer id: never B's data (404 where members may call, 403 on staff routes, which the
    gateway also refuses to member tokens). On A's own routes, query parameters naming B are
    ignored."""
    a_mail, b_mail = f"{unique()}@example.com", f"{unique()}@example.com"
    a = (await sign_up(client, email=a_mail, first_name="Alice"))["customer_id"]
    b = (await sign_up(client, email=b_mail, first_name="Bob"))["customer_id"]
    spec = (await client.get("/openapi.json")).json()["paths"]
    scoped = [p for p in spec if "{customer_id}" in p]
    assert len(scoped) >= 10
    for path, ops in spec.items():
        if "{customer_id}" not in path:
            continue
        url = path.replace("{customer_id}", b)
        for name in ("date_id", "tag", "household_id"):
            url = url.replace("{" + name + "}", str(uuid.uuid4()) if name != "tag" else "vip")
        for method in ops:
            r = await client.request(method.upper(), url, headers=member(a), json={})
            assert r.status_code in (403, 404), (method, url, r.status_code, r.text)
            assert b_mail not in r.text and "Bob" not in r.text, (method, url)
    # Every list and lookup is staff-only too.
    for url, params in (
        ("/v1/customers", {"email": b_mail}),
        ("/v1/customers/lookup", {"email": b_mail}),
        ("/v1/customers/export", {}),
    ):
        r = await client.get(url, params=params, headers=member(a))
        assert r.status_code == 403 and b_mail not in r.text, url
    # The member's own routes are scoped by the token alone.
    for url in ("/v1/club/me", "/v1/club/me/timeline", "/v1/club/me/consents"):
        r = await client.get(url, params={"customer_id": b, "id": b}, headers=member(a))
        assert r.status_code == 200 and b_mail not in r.text and "Bob" not in r.text, url
    assert (await client.get("/v1/club/me", headers=member(a))).json()["id"] == a
    # A token naming a file that does not exist (or no longer does) reaches nothing.
    ghost = member(str(uuid.uuid4()))
    for method, url in (
        ("GET", "/v1/club/me"),
        ("PATCH", "/v1/club/me"),
        ("GET", "/v1/club/me/account"),
        ("GET", "/v1/club/me/timeline"),
        ("GET", "/v1/club/me/consents"),
        ("PUT", "/v1/club/me/consents"),
    ):
        body = {"channel": "sms", "granted": True} if method == "PUT" else {}
        problem(await client.request(method, url, headers=ghost, json=body), 404)


async def test_the_account_follows_its_file(
    client: httpx.AsyncClient, db: Database, worker: asyncio.Event
) -> None:
    """On the real broker: a merge moves the merged member's account to the survivor (the same
    password now opens the surviving file), an unmerge moves it back, an erasure removes the
    credentials."""
    staff = principal_headers("staff", "s", "admin")
    mail = f"{unique()}@example.com"
    merged = (await sign_up(client, email=mail, first_name="Same"))["customer_id"]
    r = await client.post(
        "/v1/customers",
        json={"email": f"{unique()}@example.com", "first_name": "Same"},
        headers=staff,
    )
    survivor = r.json()["id"]

    async def account_of() -> str | None:
        async with db.sessionmaker() as s:
            return await s.scalar(
                text("SELECT customer_id::text FROM club_accounts WHERE customer_id = ANY(:ids)"),
                {"ids": [uuid.UUID(merged), uuid.UUID(survivor)]},
            )

    r = await client.post(
        f"/v1/customers/{survivor}/merge", json={"merged_id": merged}, headers=staff
    )
    assert r.status_code in (200, 201), r.text
    merge_id = r.json()["id"]

    async def moved() -> bool:
        return await account_of() == survivor

    await eventually(moved, what="the account moved to the survivor")
    r = await client.post("/v1/club/login", json={"identifier": mail, "password": "correct horse"})
    assert r.status_code == 200 and r.json()["customer_id"] == survivor
    assert (await client.get("/v1/club/me/account", headers=member(survivor))).status_code == 200
    problem(await client.get("/v1/club/me", headers=member(merged)), 404)

    r = await client.post(f"/v1/merges/{merge_id}/unmerge", headers=staff)
    assert r.status_code == 200, r.text

    async def back() -> bool:
        return await account_of() == merged

    await eventually(back, what="the account back on the restored file")
    problem(await client.get("/v1/club/me/account", headers=member(survivor)), 404)
    r = await client.post("/v1/club/login", json={"identifier": mail, "password": "correct horse"})
    assert r.status_code == 200 and r.json()["customer_id"] == merged

    r = await client.post(f"/v1/customers/{merged}/erasure", headers=staff)
    assert r.status_code == 200, r.text

    async def gone() -> bool:
        async with db.sessionmaker() as s:
            n = await s.scalar(
                text(
                    "SELECT (SELECT count(*) FROM club_accounts WHERE customer_id = :c) + "
                    "(SELECT count(*) FROM one_time_codes WHERE customer_id = :c)"
                ),
                {"c": uuid.UUID(merged)},
            )
            return n == 0

    await eventually(gone, what="the erased file's credentials and codes removed")


async def test_the_same_person_signing_up_twice_at_once(client: httpx.AsyncClient) -> None:
    """Two sign-ups with one email at the same moment (separate transactions): one file, one
    409, never two accounts."""
    mail = f"{unique()}@example.com"
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/club/signup",
                json={"email": mail, "password": "correct horse", "first_name": f"n{i}"},
            )
            for i in range(3)
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 201).json()["customer_id"]
    r = await client.post("/v1/club/login", json={"identifier": mail, "password": "correct horse"})
    assert r.json()["customer_id"] == winner
