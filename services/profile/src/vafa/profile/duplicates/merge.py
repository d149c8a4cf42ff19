"""Merge and unmerge, with the audit ledger (`merges`).

A merge folds the merged file into the survivor by field-level survivorship rules:

- names and the other single-valued attributes (city, province, address, birth date, gender,
  education, personality type, referral code, country): the newest non-empty value wins, the
  newer file being the one updated last;
- created_at and the acquisition (channel, campaign): the earliest file's, when it has one;
- kind: customer if either is; first_paid_at: the earliest; lifecycle stage: the furthest
  (lead < customer/lapsed < repeat); household: the survivor's, else the merged file's;
- custom fields: union by key, the newer file winning a key both hold;
- identities, tags, orders, timeline entries, notes, effective dates, consent history: union
  (the merged file's rows move to the survivor; tags the survivor lacked are added);
- consents: per channel, the most recent change wins.

The ledger keeps before-images of both files (the row, identities, tags, consents) and the
keys of every row that moved, so an unmerge restores both files exactly as they were: the
moved rows go back, and both rows, tag sets and consents are rewritten from the images.
Rows that arrived on the survivor after the merge stay with it.

The merged file keeps its row with `merged_into` set: reads answer 404 with a pointer to the
survivor, and event handlers that receive its id follow it (customers.survivors).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.cloudevents import timestamp
from vafa.kit.errors import Conflict, NotFound
from vafa.profile.customers import service as customers
from vafa.profile.events import CUSTOMERS_TOPIC, outbox
from vafa.profile.models import Customer, Merge

# Newest non-empty wins.
NEWEST_FIELDS = (
    "first_name",
    "last_name",
    "country_code",
    "city",
    "province",
    "address",
    "birth_date",
    "gender",
    "education",
    "personality_type",
    "referred_by_code",
)
# The earliest file's.
EARLIEST_FIELDS = ("acquisition_channel", "acquisition_campaign")
_STAGE_RANK = {"lead": 0, "customer": 1, "lapsed": 1, "repeat": 2}

# Every column an image restores (search_name is generated from the names).
_COLUMNS = (
    "first_name, last_name, lifecycle_stage, kind, first_paid_at, acquisition_channel, "
    "acquisition_campaign, referred_by_code, country_code, city, province, address, birth_date, "
    "gender, education, personality_type, custom_fields, household_id, merged_into, erased_at, "
    "created_at, updated_at"
)
_IMAGE = text(
    "SELECT to_jsonb(c) - 'search_name' AS row,"
    " (SELECT coalesce(jsonb_agg(jsonb_build_object('id', i.id, 'kind', i.kind, 'value',"
    "  i.value) ORDER BY i.id), '[]') FROM customer_identities i WHERE i.customer_id = c.id)"
    "  AS identities,"
    " (SELECT coalesce(jsonb_agg(t.tag ORDER BY t.tag), '[]') FROM customer_tags t"
    "  WHERE t.customer_id = c.id) AS tags,"
    " (SELECT coalesce(jsonb_agg(to_jsonb(k) ORDER BY k.channel), '[]') FROM consents k"
    "  WHERE k.customer_id = c.id) AS consents"
    " FROM customers c WHERE c.id = :id"
)
# Constants only: every value is a bind parameter.
_RESTORE_ROW = text(
    f"UPDATE customers SET ({_COLUMNS}) = (SELECT {_COLUMNS} FROM"  # noqa: S608
    " jsonb_populate_record(NULL::customers, CAST(:row AS jsonb))) WHERE id = :id"
)
_RESTORE_CONSENTS = text(
    "INSERT INTO consents (customer_id, channel, granted, source, changed_at)"
    " SELECT :id, channel, granted, source, changed_at"
    " FROM jsonb_populate_recordset(NULL::consents, CAST(:consents AS jsonb))"
)
# Rows that move with a merge: name in the ledger, table, key column and its array type.
_MOVABLE = (
    ("identities", "customer_identities", "id", "bigint[]"),
    ("orders", "orders", "order_ref", "text[]"),
    ("timeline", "timeline_entries", "id", "bigint[]"),
    ("notes", "customer_notes", "id", "bigint[]"),
    ("dates", "effective_dates", "id", "uuid[]"),
    ("consent_changes", "consent_changes", "id", "bigint[]"),
)
# Built from the constants above only; every value is a bind parameter.
_MOVE_OUT = {
    name: text(f"UPDATE {table} SET customer_id = :s WHERE customer_id = :m RETURNING {key}")  # noqa: S608
    for name, table, key, _ in _MOVABLE
}
_MOVE_BACK = {
    name: text(
        f"UPDATE {table} SET customer_id = :m WHERE customer_id = :s"  # noqa: S608
        f" AND {key} = ANY(CAST(:keys AS {array}))"
    )
    for name, table, key, array in _MOVABLE
}


_LOCK_ORDERS = text(
    "SELECT order_ref FROM orders WHERE customer_id = ANY(CAST(:ids AS uuid[]))"
    " ORDER BY order_ref FOR UPDATE"
)


async def image(session: AsyncSession, customer_id: uuid.UUID) -> dict[str, Any]:
    r = (await session.execute(_IMAGE, {"id": customer_id})).mappings().one()
    return {
        "row": r["row"],
        "identities": r["identities"],
        "tags": r["tags"],
        "consents": r["consents"],
    }


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def survive(
    survivor: dict[str, Any], merged: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The survivor's row after the merge (from both rows as to_jsonb gives them) and, per
    field, the decision: "survivor" or "merged" with the rule."""
    s_newer = (_when(survivor["updated_at"]) or datetime.min.replace(tzinfo=UTC)) >= (
        _when(merged["updated_at"]) or datetime.min.replace(tzinfo=UTC)
    )
    newer, older = (survivor, merged) if s_newer else (merged, survivor)
    s_earlier = _when(survivor["created_at"]) <= _when(merged["created_at"])  # type: ignore[operator]
    earliest, latest = (survivor, merged) if s_earlier else (merged, survivor)
    out = dict(survivor)
    decisions: dict[str, str] = {}

    def pick(name: str, first: dict[str, Any], second: dict[str, Any], rule: str) -> None:
        chosen = first if not _empty(first[name]) else second
        out[name] = chosen[name]
        decisions[name] = f"{'survivor' if chosen is survivor else 'merged'}: {rule}"

    for name in NEWEST_FIELDS:
        pick(name, newer, older, "newest non-empty")
    for name in EARLIEST_FIELDS:
        pick(name, earliest, latest, "earliest file")
    out["created_at"] = earliest["created_at"]
    decisions["created_at"] = f"{'survivor' if earliest is survivor else 'merged'}: earliest"
    if "customer" in (survivor["kind"], merged["kind"]):
        out["kind"] = "customer"
    paid = [p for p in (survivor["first_paid_at"], merged["first_paid_at"]) if p]
    out["first_paid_at"] = min(paid, key=lambda p: _when(p)) if paid else None  # type: ignore[arg-type,return-value]
    decisions["kind"] = "customer if either is; first_paid_at earliest"
    out["lifecycle_stage"] = max(
        (survivor["lifecycle_stage"], merged["lifecycle_stage"]), key=lambda s: _STAGE_RANK[s]
    )
    decisions["lifecycle_stage"] = "furthest stage"
    out["household_id"] = survivor["household_id"] or merged["household_id"]
    decisions["household_id"] = "survivor's, else merged's"
    out["custom_fields"] = {**older["custom_fields"], **newer["custom_fields"]}
    decisions["custom_fields"] = "union; the newer file wins a shared key"
    for name in ("identities", "tags", "orders", "timeline", "notes", "effective_dates"):
        decisions[name] = "union"
    decisions["consents"] = "most recent change per channel"
    out["updated_at"] = datetime.now(UTC).isoformat()
    return out, decisions


async def _restore_row(session: AsyncSession, customer_id: uuid.UUID, row: dict[str, Any]) -> None:
    await session.execute(_RESTORE_ROW, {"id": customer_id, "row": json.dumps(row)})


async def _restore_consents(
    session: AsyncSession, customer_id: uuid.UUID, consents: list[dict[str, Any]]
) -> None:
    await session.execute(text("DELETE FROM consents WHERE customer_id = :id"), {"id": customer_id})
    if consents:
        await session.execute(
            _RESTORE_CONSENTS, {"id": customer_id, "consents": json.dumps(consents)}
        )


def _newest_consents(
    survivor: list[dict[str, Any]], merged: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    by_channel: dict[str, dict[str, Any]] = {}
    for consent in [*survivor, *merged]:
        held = by_channel.get(consent["channel"])
        if held is None or _when(consent["changed_at"]) > _when(held["changed_at"]):  # type: ignore[operator]
            by_channel[consent["channel"]] = consent
    return [by_channel[k] for k in sorted(by_channel)]


async def merge(
    session: AsyncSession, *, survivor_id: uuid.UUID, merged_id: uuid.UUID, by: str
) -> Merge:
    """Merges `merged_id` into `survivor_id` (see the module docstring) as one unit of work,
    records it in the ledger and publishes CustomerMerged (key: the merged id) and
    CustomerUpdated for the survivor. 409 when the ids are the same; 404 (customer-merged)
    when either file was merged already."""
    if survivor_id == merged_id:
        raise Conflict("A file cannot be merged into itself.", customer_id=str(survivor_id))
    # Locks in the order the order consumer takes them (the orders by ref, then the customers
    # by id), so a merge and an order batch wait for each other instead of deadlocking.
    await session.execute(_LOCK_ORDERS, {"ids": [survivor_id, merged_id]})
    for cid in sorted((survivor_id, merged_id)):
        await customers.lock_file(session, cid)
    s_before = await image(session, survivor_id)
    m_before = await image(session, merged_id)
    new_row, decisions = survive(s_before["row"], m_before["row"])

    moved: dict[str, Any] = {}
    for name, *_ in _MOVABLE:
        result = await session.execute(_MOVE_OUT[name], {"s": survivor_id, "m": merged_id})
        moved[name] = sorted(str(k) if name == "dates" else k for k in result.scalars())
    added_tags = sorted(set(m_before["tags"]) - set(s_before["tags"]))
    await session.execute(
        text(
            "INSERT INTO customer_tags (customer_id, tag) SELECT :s, unnest(CAST(:tags AS text[]))"
        ),
        {"s": survivor_id, "tags": added_tags},
    )
    await session.execute(
        text("DELETE FROM customer_tags WHERE customer_id = :m"), {"m": merged_id}
    )
    moved["tags_added"] = added_tags
    await _restore_consents(
        session, survivor_id, _newest_consents(s_before["consents"], m_before["consents"])
    )
    await session.execute(text("DELETE FROM consents WHERE customer_id = :m"), {"m": merged_id})
    await _restore_row(session, survivor_id, new_row)
    now = datetime.now(UTC)
    await session.execute(
        text("UPDATE customers SET merged_into = :s, updated_at = :now WHERE id = :m"),
        {"s": survivor_id, "m": merged_id, "now": now},
    )
    # The review queue: this pair is settled; the merged file's other open pairs go with it.
    result = await session.execute(
        text(
            "UPDATE duplicate_candidates SET status = 'merged', resolved_by = :by,"
            " resolved_at = :now WHERE status = 'open' AND (customer_a = :m OR customer_b = :m)"
            " RETURNING id"
        ),
        {"m": merged_id, "by": by, "now": now},
    )
    moved["candidates"] = sorted(result.scalars())

    record = Merge(
        survivor_id=survivor_id,
        merged_id=merged_id,
        status="merged",
        survivor_before=s_before,
        merged_before=m_before,
        moved=moved,
        decisions=decisions,
        merged_by=by,
        merged_at=now,
    )
    session.add(record)
    await session.flush()
    message = profile_pb2.CustomerMerged(
        survivor_id=str(survivor_id),
        merged_id=str(merged_id),
        merge_id=str(record.id),
        occurred_at=timestamp(now),
    )
    await outbox.add(
        session,
        topic=CUSTOMERS_TOPIC,
        key=str(merged_id),
        message=message,
        event_id=cloudevents.deterministic_id("profile", "merged", str(record.id)),
    )
    survivor = await customers.get_file(session, survivor_id)
    await customers.emit_updated(
        session,
        customer=survivor,
        changed_fields=sorted({*decisions, "emails", "phones", "shop_identities"}),
        cause_id=f"merge-{record.id}",
    )
    return record


async def get_merge(session: AsyncSession, merge_id: uuid.UUID) -> Merge:
    record = await session.get(Merge, merge_id)
    if record is None:
        raise NotFound(f"No merge has the id {merge_id}.", merge_id=str(merge_id))
    return record


async def unmerge(session: AsyncSession, *, merge_id: uuid.UUID, by: str) -> Merge:
    """Undoes a merge: both files exactly as the ledger's before-images hold them, the moved
    rows back on the restored file. Publishes CustomerUnmerged (key: the restored id) and
    CustomerUpdated for both. 409 when already undone, when the survivor was itself merged
    since (undo that merge first), or when the survivor was erased since."""
    record = await session.scalar(select(Merge).where(Merge.id == merge_id).with_for_update())
    if record is None:
        raise NotFound(f"No merge has the id {merge_id}.", merge_id=str(merge_id))
    if record.status != "merged":
        raise Conflict("This merge was undone already.", merge_id=str(merge_id))
    if "row" not in record.survivor_before or "row" not in record.merged_before:
        raise Conflict(
            "A file of this merge was erased since: there is nothing to restore.",
            merge_id=str(merge_id),
        )
    survivor_id, merged_id = record.survivor_id, record.merged_id
    await session.execute(_LOCK_ORDERS, {"ids": [survivor_id, merged_id]})
    rows = {
        c.id: c
        for c in (
            await session.scalars(
                select(Customer)
                .where(Customer.id.in_(sorted((survivor_id, merged_id))))
                .order_by(Customer.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).all()
    }
    if rows[survivor_id].merged_into is not None:
        raise Conflict(
            "The survivor was merged into another file since; undo that merge first.",
            merged_into=str(rows[survivor_id].merged_into),
        )
    moved = record.moved
    for name, *_ in _MOVABLE:
        keys = moved.get(name) or []
        if keys:
            await session.execute(
                _MOVE_BACK[name], {"m": merged_id, "s": survivor_id, "keys": keys}
            )
    await session.execute(
        text(
            "DELETE FROM customer_tags WHERE customer_id = :s AND tag = ANY(CAST(:tags AS text[]))"
        ),
        {"s": survivor_id, "tags": moved.get("tags_added") or []},
    )
    await session.execute(
        text(
            "INSERT INTO customer_tags (customer_id, tag) SELECT :m, unnest(CAST(:tags AS text[]))"
            " ON CONFLICT DO NOTHING"
        ),
        {"m": merged_id, "tags": record.merged_before["tags"]},
    )
    await _restore_consents(session, survivor_id, record.survivor_before["consents"])
    await _restore_consents(session, merged_id, record.merged_before["consents"])
    await _restore_row(session, survivor_id, record.survivor_before["row"])
    await _restore_row(session, merged_id, record.merged_before["row"])
    now = datetime.now(UTC)
    await session.execute(
        text(
            "UPDATE duplicate_candidates SET status = 'open', resolved_by = NULL,"
            " resolved_at = NULL WHERE id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": moved.get("candidates") or []},
    )
    record.status, record.unmerged_by, record.unmerged_at = "unmerged", by, now
    await session.flush()
    message = profile_pb2.CustomerUnmerged(
        survivor_id=str(survivor_id),
        restored_id=str(merged_id),
        merge_id=str(record.id),
        occurred_at=timestamp(now),
    )
    await outbox.add(
        session,
        topic=CUSTOMERS_TOPIC,
        key=str(merged_id),
        message=message,
        event_id=cloudevents.deterministic_id("profile", "unmerged", str(record.id)),
    )
    fields = sorted({*record.decisions, "emails", "phones", "shop_identities"})
    for cid in (survivor_id, merged_id):
        customer = await customers.get_file(session, cid)
        await customers.emit_updated(
            session, customer=customer, changed_fields=fields, cause_id=f"unmerge-{record.id}"
        )
    return record
