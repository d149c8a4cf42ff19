"""The one snapshot builder: CustomerSnapshot as every CustomerRegistered/CustomerUpdated
carries it. The fields a unit of work holds in memory (names, stage, kind, identities) come
from the caller; everything else (demographics, tags, consents, effective dates, custom
fields, household) is read for any number of customers in one statement.

Other parts of the service add their own fields through `contributors` (the club registers
club_status and club_joined_at): each is called once per snapshot batch with the ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit.cloudevents import timestamp

# (session, customer ids) -> per customer, CustomerSnapshot fields to set (scalars, or a
# Timestamp-able datetime).
Contributor = Callable[
    [AsyncSession, Sequence[uuid.UUID]], Awaitable[Mapping[uuid.UUID, Mapping[str, Any]]]
]
contributors: list[Contributor] = []

CHANNELS = {
    "sms": profile_pb2.CONSENT_CHANNEL_SMS,
    "email": profile_pb2.CONSENT_CHANNEL_EMAIL,
    "phone": profile_pb2.CONSENT_CHANNEL_PHONE,
    "push": profile_pb2.CONSENT_CHANNEL_PUSH,
}

_EXTRAS = text(
    "SELECT c.id, c.birth_date, c.gender, c.province, c.address, c.education,"
    " c.personality_type, c.acquisition_channel, c.acquisition_campaign, c.referred_by_code,"
    " c.custom_fields, c.household_id,"
    " ARRAY(SELECT t.tag FROM customer_tags t WHERE t.customer_id = c.id ORDER BY t.tag)"
    " AS tags,"
    " (SELECT coalesce(jsonb_agg(jsonb_build_object('channel', k.channel, 'granted', k.granted,"
    "  'source', k.source, 'changed_at', k.changed_at) ORDER BY k.channel), '[]')"
    "  FROM consents k WHERE k.customer_id = c.id) AS consents,"
    " (SELECT coalesce(jsonb_agg(jsonb_build_object('id', d.id, 'kind', d.kind, 'label',"
    "  d.label, 'calendar', d.calendar, 'year', d.year, 'month', d.month, 'day', d.day,"
    "  'related_person', d.related_person) ORDER BY d.created_at, d.id), '[]')"
    "  FROM effective_dates d WHERE d.customer_id = c.id) AS dates"
    " FROM customers c WHERE c.id = ANY(CAST(:ids AS uuid[]))"
)


def consent_message(
    channel: str, granted: bool, source: str, changed_at: datetime
) -> profile_pb2.Consent:
    return profile_pb2.Consent(
        channel=CHANNELS[channel],
        granted=granted,
        source=source,
        changed_at=timestamp(changed_at),
    )


def effective_date_message(d: Mapping[str, Any]) -> profile_pb2.EffectiveDate:
    return profile_pb2.EffectiveDate(
        date_id=str(d["id"]),
        kind=d["kind"],
        label=d.get("label") or "",
        calendar=d["calendar"],
        year=d.get("year") or 0,
        month=d["month"],
        day=d["day"],
        related_person=d.get("related_person") or "",
    )


async def load_extras(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """Per customer, the snapshot fields not held in memory by a unit of work."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    out: dict[uuid.UUID, dict[str, Any]] = {}
    for r in (await session.execute(_EXTRAS, {"ids": ids})).mappings():
        out[r["id"]] = {
            "birth_date": r["birth_date"].isoformat() if r["birth_date"] else "",
            "gender": r["gender"] or "",
            "province": r["province"] or "",
            "address": r["address"] or "",
            "education": r["education"] or "",
            "personality_type": r["personality_type"] or "",
            "acquisition_channel": r["acquisition_channel"] or "",
            "acquisition_campaign": r["acquisition_campaign"] or "",
            "referred_by_code": r["referred_by_code"] or "",
            "household_id": str(r["household_id"]) if r["household_id"] else "",
            "tags": list(r["tags"]),
            "custom_fields": {
                k: json.dumps(v, ensure_ascii=False) for k, v in sorted(r["custom_fields"].items())
            },
            "consents": [
                consent_message(
                    k["channel"],
                    k["granted"],
                    k["source"],
                    datetime.fromisoformat(k["changed_at"]),
                )
                for k in r["consents"]
            ],
            "effective_dates": [effective_date_message(d) for d in r["dates"]],
        }
    for contribute in contributors:
        for cid, fields in (await contribute(session, ids)).items():
            out.setdefault(cid, {}).update(fields)
    return out


def apply_extras(snapshot: profile_pb2.CustomerSnapshot, extras: Mapping[str, Any]) -> None:
    for name, value in extras.items():
        if name in ("tags",):
            snapshot.tags[:] = value
        elif name == "custom_fields":
            snapshot.custom_fields.clear()
            snapshot.custom_fields.update(value)
        elif name in ("consents", "effective_dates"):
            field = getattr(snapshot, name)
            del field[:]
            field.extend(value)
        elif isinstance(value, datetime):
            getattr(snapshot, name).CopyFrom(timestamp(value))
        else:
            setattr(snapshot, name, value)
