"""Privacy: export everything held about a customer; erasure that anonymises the file.

Erasure keeps the row (other services and the shop's books refer to the id) and the orders'
amounts, currency and dates, but removes or blanks everything that identifies the person:
names, demographics, address, custom fields, identities, tags, notes, effective dates,
(on the file and on every file merged into it)
household membership, consents and their history, the buyer details and free text on timeline
entries, and the before-images of merges that involve the file. Then CustomerErased tells the
other services to do the same.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.cloudevents import timestamp
from vafa.kit.errors import Conflict
from vafa.kit.outbox import OutboxEvent
from vafa.profile.customers import service as customers
from vafa.profile.events import CUSTOMERS_TOPIC, outbox

# Each is a JSON array of the customer's rows of one table (to_jsonb: every column).
_EXPORT = {
    "identities": "SELECT * FROM customer_identities WHERE customer_id = :id ORDER BY id",
    "orders": "SELECT * FROM orders WHERE customer_id = :id ORDER BY placed_at, order_ref",
    "timeline": "SELECT * FROM timeline_entries WHERE customer_id = :id ORDER BY occurred_at, id",
    "tags": "SELECT * FROM customer_tags WHERE customer_id = :id ORDER BY tag",
    "notes": "SELECT * FROM customer_notes WHERE customer_id = :id ORDER BY created_at, id",
    "effective_dates": "SELECT * FROM effective_dates WHERE customer_id = :id ORDER BY created_at",
    "consents": "SELECT * FROM consents WHERE customer_id = :id ORDER BY channel",
    "consent_history": "SELECT * FROM consent_changes WHERE customer_id = :id ORDER BY id",
    "merges": "SELECT id, survivor_id, merged_id, status, decisions, merged_by, merged_at,"
    " unmerged_by, unmerged_at FROM merges WHERE survivor_id = :id OR merged_id = :id"
    " ORDER BY merged_at",
}
_EXPORT_SQL = {
    name: text(f"SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]') FROM ({sql}) r")  # noqa: S608
    for name, sql in _EXPORT.items()
}


async def export(session: AsyncSession, *, customer_id: uuid.UUID) -> dict[str, Any]:
    """Everything held about the customer, as JSON-ready data."""
    await customers.get_file(session, customer_id)
    row = await session.scalar(
        text("SELECT to_jsonb(c) - 'search_name' FROM customers c WHERE id = :id"),
        {"id": customer_id},
    )
    out: dict[str, Any] = {"customer": row}
    for name, sql in _EXPORT_SQL.items():
        out[name] = await session.scalar(sql, {"id": customer_id})
    household = (row or {}).get("household_id")
    if household:
        out["household"] = await session.scalar(
            text("SELECT to_jsonb(h) FROM households h WHERE id = :id"), {"id": household}
        )
    out["exported_at"] = datetime.now(UTC).isoformat()
    return out


# The file and every file merged into it (the same person): all anonymised together.
_FAMILY = text(
    "WITH RECURSIVE m(id) AS (SELECT CAST(:id AS uuid) UNION"
    " SELECT c.id FROM customers c JOIN m ON c.merged_into = m.id) SELECT id FROM m"
)
_ERASE = (
    "UPDATE customers SET first_name = NULL, last_name = NULL, acquisition_campaign = NULL,"
    " referred_by_code = NULL, city = NULL, province = NULL, address = NULL, birth_date = NULL,"
    " gender = NULL, education = NULL, personality_type = NULL, custom_fields = '{}',"
    " household_id = NULL, erased_at = :now, updated_at = :now WHERE id = ANY(:ids)",
    "DELETE FROM customer_identities WHERE customer_id = ANY(:ids)",
    "DELETE FROM customer_tags WHERE customer_id = ANY(:ids)",
    "DELETE FROM customer_notes WHERE customer_id = ANY(:ids)",
    "DELETE FROM effective_dates WHERE customer_id = ANY(:ids)",
    "DELETE FROM consents WHERE customer_id = ANY(:ids)",
    "DELETE FROM consent_changes WHERE customer_id = ANY(:ids)",
    "DELETE FROM duplicate_candidates WHERE customer_a = ANY(:ids) OR customer_b = ANY(:ids)",
    # Orders stay for the books (amounts, currency, status, dates); the order number is the
    # shop's, not personal. Timeline entries keep kind and time; their details go, except the
    # amounts of order entries.
    "UPDATE timeline_entries SET summary = 'Erased.', agent = NULL,"
    " data = CASE WHEN kind LIKE 'order.%' THEN jsonb_strip_nulls(jsonb_build_object("
    "'order_ref', data->'order_ref', 'total_minor', data->'total_minor', 'currency',"
    " data->'currency', 'refund', data->'refund')) ELSE '{}'::jsonb END"
    " WHERE customer_id = ANY(:ids)",
    "UPDATE merges SET survivor_before = jsonb_build_object('erased', true),"
    " merged_before = jsonb_build_object('erased', true)"
    " WHERE survivor_id = ANY(:ids) OR merged_id = ANY(:ids)",
)
_ERASE_SQL = [text(sql) for sql in _ERASE]


async def erase(session: AsyncSession, *, customer_id: uuid.UUID) -> datetime:
    """Anonymises the file (see the module docstring) in one transaction and publishes
    CustomerErased. 409 when it was erased already. A merge involving the file can no longer
    be undone (its before-images are gone)."""
    customer = await customers.lock_file(session, customer_id)
    if customer.erased_at is not None:
        raise Conflict("This file was erased already.", erased_at=customer.erased_at.isoformat())
    now = datetime.now(UTC)
    ids = list((await session.execute(_FAMILY, {"id": customer_id})).scalars())
    for sql in _ERASE_SQL:
        await session.execute(sql, {"ids": ids, "now": now})
    message = profile_pb2.CustomerErased(customer_id=str(customer_id), occurred_at=timestamp(now))
    await outbox.add_many(
        session,
        [
            OutboxEvent(
                CUSTOMERS_TOPIC,
                str(customer_id),
                message,
                event_id=cloudevents.deterministic_id("profile", "erased", str(customer_id)),
            )
        ],
    )
    return now
