"""Identity resolution against PostgreSQL: shop id, then email, then phone; attaching what is
new without ever taking an identity from its owner; and two concurrent creators of the same new
person ending with one customer."""

import asyncio
import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.profile.customers import service
from vafa.profile.customers.identities import Identity, IdentityKind
from vafa.profile.customers.schemas import LifecycleStage
from vafa.profile.models import Customer, CustomerIdentity

from .factories import unique

DETAILS = service.Details(first_name="Sara", last_name="Ahmadi", country_code="ir", city="Tehran")


def shop(value: str) -> Identity:
    return Identity(IdentityKind.shop, f"shopify:demo.myshopify.com:{value}")


def email(value: str) -> Identity:
    return Identity(IdentityKind.email, value)


def phone(value: str) -> Identity:
    return Identity(IdentityKind.phone, value)


async def identities(session: AsyncSession, customer_id: uuid.UUID) -> set[Identity]:
    return set(await service.identities_of(session, customer_id))


async def test_new_person_gets_a_file_with_all_identities(session: AsyncSession) -> None:
    ids = [shop(unique()), email(f"{unique()}@example.com"), phone("+989121110001")]
    r = await service.resolve_customer(session, identities=ids, details=DETAILS)
    assert r.created and set(r.added) == set(ids) and not r.conflicts
    c = r.customer
    assert (c.first_name, c.last_name, c.country_code, c.city) == ("Sara", "Ahmadi", "IR", "Tehran")
    assert c.lifecycle_stage == "customer"
    assert await identities(session, c.id) == set(ids)


@pytest.mark.parametrize("by", ["shop", "email", "phone"])
async def test_a_known_identity_finds_the_customer(session: AsyncSession, by: str) -> None:
    known = {
        "shop": shop(unique()),
        "email": email(f"{unique()}@example.com"),
        "phone": phone("+989121110002"),
    }
    first = await service.resolve_customer(session, identities=[known[by]], details=DETAILS)
    other = [i for k, i in known.items() if k != by]
    again = await service.resolve_customer(session, identities=[known[by], *other], details=DETAILS)
    assert not again.created and again.customer.id == first.customer.id
    # What was new is attached, and reported as a change of the snapshot.
    assert set(again.added) == set(other)
    assert {"emails", "phones", "shop_identities"} - {
        {"email": "emails", "phone": "phones", "shop": "shop_identities"}[by]
    } <= set(again.changed_fields)
    assert await identities(session, first.customer.id) == set(known.values())
    holders = await service.owners(session, list(known.values()))
    assert set(holders.values()) == {first.customer.id}


async def test_precedence_is_shop_then_email_then_phone(session: AsyncSession) -> None:
    by_shop = await service.resolve_customer(session, identities=[shop("p1")], details=DETAILS)
    by_email = await service.resolve_customer(
        session, identities=[email("p@example.com")], details=DETAILS
    )
    by_phone = await service.resolve_customer(
        session, identities=[phone("+989121110003")], details=DETAILS
    )
    r = await service.resolve_customer(
        session,
        identities=[shop("p1"), email("p@example.com"), phone("+989121110003")],
        details=DETAILS,
    )
    assert r.customer.id == by_shop.customer.id
    r = await service.resolve_customer(
        session, identities=[email("p@example.com"), phone("+989121110003")], details=DETAILS
    )
    assert r.customer.id == by_email.customer.id
    assert by_phone.customer.id not in (by_shop.customer.id, by_email.customer.id)


async def test_identities_of_someone_else_are_never_taken(session: AsyncSession) -> None:
    owner = await service.resolve_customer(
        session, identities=[email("owner@example.com")], details=DETAILS
    )
    buyer = await service.resolve_customer(session, identities=[shop("b1")], details=DETAILS)
    # The shop account b1 checks out with the owner's email and a new phone.
    r = await service.resolve_customer(
        session,
        identities=[shop("b1"), email("owner@example.com"), phone("+989121110004")],
        details=DETAILS,
    )
    assert r.customer.id == buyer.customer.id
    assert r.added == [phone("+989121110004")]
    assert r.conflicts == [service.IdentityConflict("email", owner.customer.id)]
    assert r.changed_fields == ["phones"]
    assert await identities(session, owner.customer.id) == {email("owner@example.com")}
    assert await identities(session, buyer.customer.id) == {shop("b1"), phone("+989121110004")}


async def test_a_lead_becomes_a_customer_and_blanks_are_filled(session: AsyncSession) -> None:
    lead = await service.resolve_customer(
        session,
        identities=[email("lead@example.com")],
        details=service.Details(first_name="Ani"),
        stage=LifecycleStage.lead,
    )
    assert lead.customer.lifecycle_stage == "lead"
    r = await service.resolve_customer(
        session,
        identities=[email("lead@example.com")],
        details=service.Details(first_name="Other", last_name="Petrosyan", country_code="AM"),
    )
    assert r.customer.id == lead.customer.id
    assert r.customer.lifecycle_stage == "customer"
    # Known values are kept; blanks are filled from the new source.
    assert (r.customer.first_name, r.customer.last_name) == ("Ani", "Petrosyan")
    assert r.changed_fields == ["country_code", "last_name", "lifecycle_stage"]


async def test_nothing_changed_means_no_change(session: AsyncSession) -> None:
    first = await service.resolve_customer(session, identities=[shop("n1")], details=DETAILS)
    again = await service.resolve_customer(session, identities=[shop("n1")], details=DETAILS)
    assert again.customer.id == first.customer.id
    assert again.added == [] and again.changed_fields == []


async def test_resolution_events(session: AsyncSession) -> None:
    r = await service.resolve_customer(
        session, identities=[shop("e1"), email("e1@example.com")], details=DETAILS
    )
    await service.emit_resolution(session, resolution=r, source="shop_order", cause_id="c1")
    r2 = await service.resolve_customer(
        session, identities=[shop("e1"), phone("+989121110005")], details=DETAILS
    )
    await service.emit_resolution(session, resolution=r2, source="shop_order", cause_id="c2")
    rows = (
        await session.execute(
            text("SELECT headers, payload FROM outbox WHERE key = :k ORDER BY id"),
            {"k": str(r.customer.id)},
        )
    ).all()
    envs = [cloudevents.decode([(k, v.encode()) for k, v in h], p) for h, p in rows]
    assert [type(e.message) for e in envs] == [
        profile_pb2.CustomerRegistered,
        profile_pb2.CustomerUpdated,
    ]
    registered, updated = envs[0].message, envs[1].message
    assert isinstance(registered, profile_pb2.CustomerRegistered)
    assert isinstance(updated, profile_pb2.CustomerUpdated)
    assert registered.source == "shop_order"
    assert registered.customer.customer_id == str(r.customer.id)
    assert list(registered.customer.emails) == ["e1@example.com"]
    assert registered.customer.shop_identities[0].shop_customer_id == "e1"
    assert registered.customer.shop_identities[0].shop == "demo.myshopify.com"
    assert registered.customer.lifecycle_stage == "customer"
    assert list(updated.changed_fields) == ["phones"]
    assert list(updated.customer.phones) == ["+989121110005"]


async def test_concurrent_creation_of_the_same_person_ends_with_one_customer(
    db: Database,
) -> None:
    """Two transactions resolve the same new person at once (two orders in two partitions).
    Both find no owner and create a file; the second blocks on the unique identity until the
    first commits, then raises IdentityRace and rolls back. Its retry finds the first file."""
    person = [shop(unique()), email(f"{unique()}@example.com")]
    async with db.sessionmaker() as a, db.sessionmaker() as b:
        await a.begin()
        await b.begin()
        first = await service.resolve_customer(a, identities=person, details=DETAILS)
        assert first.created
        # b sees nothing committed yet, so it creates too, and blocks on a's identity rows.
        racer = asyncio.create_task(
            service.resolve_customer(b, identities=list(reversed(person)), details=DETAILS)
        )
        await asyncio.sleep(0.5)
        assert not racer.done(), "b should be waiting on a's uncommitted identities"
        await a.commit()
        with pytest.raises(service.IdentityRace):
            await racer
        await b.rollback()

    # The retry (as the consumer does it) resolves to the winner.
    async with db.sessionmaker() as retry, retry.begin():
        again = await service.resolve_customer(retry, identities=person, details=DETAILS)
    assert not again.created and again.customer.id == first.customer.id

    async with db.sessionmaker() as s:
        owners = (
            await s.scalars(
                select(CustomerIdentity.customer_id).where(
                    CustomerIdentity.value.in_([i.value for i in person])
                )
            )
        ).all()
        assert set(owners) == {first.customer.id} and len(owners) == 2
        # The loser's customer row rolled back with its identities: no orphan file.
        customers = (
            await s.scalars(
                select(Customer.id)
                .join(CustomerIdentity, CustomerIdentity.customer_id == Customer.id)
                .where(CustomerIdentity.value.in_([i.value for i in person]))
            )
        ).all()
        assert set(customers) == {first.customer.id}


async def test_many_concurrent_resolvers_with_retries_agree(db: Database) -> None:
    """Eight tasks resolve the same new person, each in its own transaction, retrying on
    IdentityRace like the kit consumer: exactly one creates, all end on the same customer."""
    person = [email(f"{unique()}@example.com"), phone("+37491" + str(uuid.uuid4().int)[:6])]

    async def resolve_with_retries() -> tuple[uuid.UUID, bool]:
        for _ in range(10):
            try:
                async with db.sessionmaker() as s, s.begin():
                    r = await service.resolve_customer(s, identities=person, details=DETAILS)
                    return r.customer.id, r.created
            except service.IdentityRace:
                await asyncio.sleep(0.05)
        raise AssertionError("never resolved")

    results = await asyncio.gather(*(resolve_with_retries() for _ in range(8)))
    assert len({cid for cid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    async with db.sessionmaker() as s:
        n = await s.scalar(
            select(func.count(func.distinct(CustomerIdentity.customer_id))).where(
                CustomerIdentity.value.in_([i.value for i in person])
            )
        )
        assert n == 1
