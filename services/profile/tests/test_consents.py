"""Consents: per-channel snapshot and history, every change evented, unsubscribe links (public),
SMS opt-out keywords in Persian, Armenian and English forms, concurrent changes."""

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import text

from vafa.events.v1 import profile_pb2
from vafa.kit.db import Database
from vafa.profile.config import Settings
from vafa.profile.consents import service
from vafa.profile.consents.schemas import Channel

from .test_api import MARKETER, SHOP, VIEWER, assert_problem
from .test_file import customer_events, new_customer

KEYWORDS = Settings().unsubscribe_keywords


@pytest.mark.parametrize(
    "sms",
    [
        "لغو",
        "لغو۱۱",
        "لغو 11",
        "لغو１",
        "  لغو ۱ ",
        "لغـو",
        "STOP",
        "stop.",
        "Stop 2",
        "ԴԱԴԱՐ",
        "դադար",
        "ՉԵՂԱՐԿԵԼ",
        "انصراف",
    ],
)
def test_keywords(sms: str) -> None:
    assert service.is_keyword(sms, KEYWORDS)


@pytest.mark.parametrize("sms", ["", "سلام", "لغو کنید سفارش را", "stopwatch", "11", "ok"])
def test_not_keywords(sms: str) -> None:
    assert not service.is_keyword(sms, KEYWORDS)


async def sms_consent_events(db: Database, cid: str) -> list[profile_pb2.ConsentChanged]:
    return [m for m in await customer_events(db, cid) if isinstance(m, profile_pb2.ConsentChanged)]


async def test_consent_changes_are_kept_and_evented(
    client: httpx.AsyncClient, db: Database
) -> None:
    c = await new_customer(client)
    url = f"/v1/customers/{c['id']}/consents"
    r = await client.put(
        url, json={"channel": "sms", "granted": True, "source": "club"}, headers=MARKETER
    )
    assert r.status_code == 200, r.text
    assert (r.json()["granted"], r.json()["source"]) == (True, "club")
    # The same again changes nothing and publishes nothing.
    await client.put(
        url, json={"channel": "sms", "granted": True, "source": "staff"}, headers=MARKETER
    )
    await client.put(url, json={"channel": "email", "granted": True}, headers=MARKETER)
    await client.put(url, json={"channel": "sms", "granted": False}, headers=MARKETER)
    got = (await client.get(url, headers=VIEWER)).json()
    assert {x["channel"]: x["granted"] for x in got["current"]} == {"sms": False, "email": True}
    assert [(h["channel"], h["granted"]) for h in got["history"]] == [
        ("sms", False),
        ("email", True),
        ("sms", True),
    ]
    assert got["history"][0]["detail"] == {"by": "staff:m"}
    entries = (
        await client.get(
            f"/v1/customers/{c['id']}/timeline", params={"kind": "consent.changed"}, headers=VIEWER
        )
    ).json()["items"]
    assert [e["summary"] for e in entries] == [
        "SMS consent revoked (staff).",
        "EMAIL consent granted (staff).",
        "SMS consent granted (club).",
    ]

    changed = await sms_consent_events(db, c["id"])
    assert [(m.consent.channel, m.consent.granted, m.consent.source) for m in changed] == [
        (profile_pb2.CONSENT_CHANNEL_SMS, True, "club"),
        (profile_pb2.CONSENT_CHANNEL_EMAIL, True, "staff"),
        (profile_pb2.CONSENT_CHANNEL_SMS, False, "staff"),
    ]
    snap = [
        m for m in await customer_events(db, c["id"]) if isinstance(m, profile_pb2.CustomerUpdated)
    ][-1]
    assert list(snap.changed_fields) == ["consents"]
    assert {(k.channel, k.granted) for k in snap.customer.consents} == {
        (profile_pb2.CONSENT_CHANNEL_SMS, False),
        (profile_pb2.CONSENT_CHANNEL_EMAIL, True),
    }
    body = assert_problem(
        await client.put(url, json={"channel": "fax", "granted": True}, headers=MARKETER), 422
    )
    assert body["errors"][0]["pointer"] == "/body/channel"
    assert_problem(
        await client.put(
            f"/v1/customers/{uuid.uuid4()}/consents",
            json={"channel": "sms", "granted": True},
            headers=MARKETER,
        ),
        404,
    )


async def test_concurrent_changes_apply_one_after_the_other(db: Database) -> None:
    async with db.sessionmaker() as s, s.begin():
        from vafa.profile.customers import service as customers

        c = await customers.create_customer(
            s,
            first_name="A",
            last_name="B",
            email=f"{uuid.uuid4().hex}@example.com",
            phone=None,
            country_code=None,
            city=None,
            default_region="IR",
        )

    async def grant() -> bool:
        async with db.sessionmaker() as s, s.begin():
            _, changed = await service.set_consent(
                s, customer_id=c.id, channel=Channel.push, granted=True, source="club"
            )
            return changed

    results = await asyncio.gather(*(grant() for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    async with db.sessionmaker() as s:
        n = await s.scalar(
            text("SELECT count(*) FROM consent_changes WHERE customer_id = :c"), {"c": c.id}
        )
    assert n == 1


async def test_unsubscribe_links_are_public(client: httpx.AsyncClient, db: Database) -> None:
    c = await new_customer(client)
    await client.put(
        f"/v1/customers/{c['id']}/consents",
        json={"channel": "email", "granted": True},
        headers=MARKETER,
    )
    r = await client.post(
        f"/v1/customers/{c['id']}/unsubscribe-links", json={"channel": "email"}, headers=MARKETER
    )
    assert r.status_code == 201, r.text
    path = r.json()["path"]
    # No login: the link is the proof.
    r = await client.get(path)
    assert r.status_code == 200 and r.json() == {"channel": "email", "granted": True}
    r = await client.post(path)
    assert r.json() == {"channel": "email", "granted": False}
    r = await client.post(path)  # again: nothing more
    assert r.json()["granted"] is False
    changed = await sms_consent_events(db, c["id"])
    assert [(m.consent.granted, m.consent.source) for m in changed] == [
        (True, "staff"),
        (False, "unsubscribe_link"),
    ]
    assert_problem(await client.get("/v1/unsubscribe/not-a-token"), 404)
    forged = path.rsplit(".", 1)[0] + ".AAAA"
    assert_problem(await client.post(forged), 404)


async def test_inbound_sms_keywords_revoke_sms_consent(
    client: httpx.AsyncClient, db: Database
) -> None:
    phone = "0912" + str(uuid.uuid4().int)[:7]
    c = await new_customer(client, phone=phone)
    await client.put(
        f"/v1/customers/{c['id']}/consents",
        json={"channel": "sms", "granted": True},
        headers=MARKETER,
    )
    url = "/v1/consents/inbound-sms"
    r = await client.post(url, json={"phone": phone, "text": "سلام"}, headers=SHOP)
    assert r.json()["keyword"] is False and r.json()["consent"]["granted"] is True
    persian_phone = phone.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    r = await client.post(
        url, json={"phone": persian_phone, "text": "لغو۱۱", "message_id": "m-1"}, headers=SHOP
    )
    assert r.status_code == 200, r.text
    assert r.json()["keyword"] is True and r.json()["customer_id"] == c["id"]
    assert r.json()["consent"] | {"changed_at": None} == {
        "channel": "sms",
        "granted": False,
        "source": "sms_keyword",
        "changed_at": None,
    }
    history = (await client.get(f"/v1/customers/{c['id']}/consents", headers=VIEWER)).json()[
        "history"
    ]
    assert history[0]["detail"] == {"text": "لغو۱۱", "message_id": "m-1"}
    # An unknown sender: recognised as a keyword, nobody to change.
    r = await client.post(url, json={"phone": "09350000000", "text": "STOP"}, headers=SHOP)
    assert r.json()["keyword"] is True and r.json()["customer_id"] is None
    body = assert_problem(
        await client.post(url, json={"phone": "abc", "text": "STOP"}, headers=SHOP), 422
    )
    assert body["errors"][0]["pointer"] == "/body/phone"
    assert_problem(
        await client.post(url, json={"phone": phone, "text": "STOP"}, headers=VIEWER), 403
    )
