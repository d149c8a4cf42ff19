"""What profile.customers.v1 tells the feature store: snapshots (demographics, geography, tags,
custom fields, consents, club status, acquisition, dates, identities), consent changes,
interactions, merges, unmerges and erasures. Set-based per run of events; merges, unmerges and
erasures (rare) apply one at a time, in log order, between runs."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.segmentation.features import dates
from vafa.segmentation.features.service import array_literal, ensure_rows, recompute

CONSENT_COLUMNS = ("consent_sms", "consent_email", "consent_phone", "consent_push")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A CustomerSnapshot as the features keep it (see handlers.read_snapshot)."""

    customer_id: uuid.UUID
    kind: str
    lifecycle_stage: str
    gender: str
    birth_date: date | None
    effective_dates: list[dict[str, Any]]
    country_code: str
    province: str
    city: str
    education: str
    acquisition_channel: str
    acquisition_campaign: str
    referred_by_code: str
    club_status: str
    household_id: str
    tags: list[str]
    custom_fields: dict[str, str]
    consents: dict[str, bool]
    registered_at: datetime | None
    identities: list[str]


@dataclass(frozen=True, slots=True)
class Interaction:
    customer_id: uuid.UUID
    kind: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ConsentChange:
    customer_id: uuid.UUID
    column: str
    granted: bool


@dataclass(frozen=True, slots=True)
class Merge:
    survivor_id: uuid.UUID
    merged_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Unmerge:
    survivor_id: uuid.UUID
    restored_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Erase:
    customer_id: uuid.UUID


Step = Snapshot | Interaction | ConsentChange | Merge | Unmerge | Erase

_SNAPSHOT_COLUMNS = (
    "kind",
    "lifecycle_stage",
    "gender",
    "birth_date",
    "next_birthday",
    "next_effective_date",
    "effective_dates",
    "country_code",
    "province",
    "city",
    "education",
    "acquisition_channel",
    "acquisition_campaign",
    "referred_by_code",
    "club_status",
    "household_id",
    "tags",
    "custom_fields",
    *CONSENT_COLUMNS,
    "registered_at",
)
# A snapshot of a merged or erased customer (a late or replayed one) changes nothing. The
# column lists are built from the constants above (no input reaches the text): S608 waived.
_SNAPSHOTS = text(
    f"INSERT INTO features (customer_id, {', '.join(_SNAPSHOT_COLUMNS)}) "  # noqa: S608
    "SELECT v.customer_id, v.kind, v.lifecycle_stage, v.gender, v.birth_date, v.next_birthday, "
    "v.next_effective_date, v.effective_dates, v.country_code, v.province, v.city, v.education, "
    "v.acquisition_channel, v.acquisition_campaign, v.referred_by_code, v.club_status, "
    "v.household_id, CAST(v.tags AS text[]), v.custom_fields, v.consent_sms, v.consent_email, "
    "v.consent_phone, v.consent_push, v.registered_at "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:kinds AS text[]), CAST(:stages AS text[]), "
    "CAST(:genders AS text[]), CAST(:births AS date[]), CAST(:next_births AS date[]), "
    "CAST(:next_dates AS date[]), CAST(:dates AS jsonb[]), CAST(:countries AS text[]), "
    "CAST(:provinces AS text[]), CAST(:cities AS text[]), CAST(:educations AS text[]), "
    "CAST(:channels AS text[]), CAST(:campaigns AS text[]), CAST(:codes AS text[]), "
    "CAST(:clubs AS text[]), CAST(:households AS text[]), CAST(:tags AS text[]), "
    "CAST(:fields AS jsonb[]), CAST(:sms AS boolean[]), CAST(:email AS boolean[]), "
    "CAST(:phone AS boolean[]), CAST(:push AS boolean[]), CAST(:registered AS timestamptz[])) "
    "AS v(customer_id, kind, lifecycle_stage, gender, birth_date, next_birthday, "
    "next_effective_date, effective_dates, country_code, province, city, education, "
    "acquisition_channel, acquisition_campaign, referred_by_code, club_status, household_id, "
    "tags, custom_fields, consent_sms, consent_email, consent_phone, consent_push, "
    "registered_at) "
    "ON CONFLICT (customer_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _SNAPSHOT_COLUMNS)
    + ", updated_at = now() WHERE NOT features.removed AND ("
    + ", ".join(f"features.{c}" for c in _SNAPSHOT_COLUMNS)
    + ") IS DISTINCT FROM ("
    + ", ".join(f"EXCLUDED.{c}" for c in _SNAPSHOT_COLUMNS)
    + ") RETURNING customer_id"
)
_DROP_IDENTITIES = text(
    "DELETE FROM identities WHERE customer_id = ANY(CAST(:ids AS uuid[])) "
    "AND NOT (value = ANY(CAST(:keep AS text[])))"
)
# An identity names one customer: the latest snapshot that carries it wins.
_ADD_IDENTITIES = text(
    "INSERT INTO identities (value, customer_id) "
    "SELECT v.value, v.customer_id "
    "FROM unnest(CAST(:values AS text[]), CAST(:ids AS uuid[])) AS v(value, customer_id) "
    "WHERE NOT EXISTS (SELECT 1 FROM features f WHERE f.customer_id = v.customer_id "
    "AND f.removed) "
    "ON CONFLICT (value) DO UPDATE SET customer_id = EXCLUDED.customer_id "
    "WHERE identities.customer_id <> EXCLUDED.customer_id"
)
_CONSENTS = text(
    "UPDATE features f SET "  # noqa: S608
    + ", ".join(f"{c} = COALESCE(v.{c}, f.{c})" for c in CONSENT_COLUMNS)
    + ", updated_at = now() "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:sms AS boolean[]), CAST(:email AS boolean[]), "
    "CAST(:phone AS boolean[]), CAST(:push AS boolean[])) "
    f"AS v(customer_id, {', '.join(CONSENT_COLUMNS)}) "
    "WHERE f.customer_id = v.customer_id AND NOT f.removed AND ("
    + ", ".join(f"f.{c}" for c in CONSENT_COLUMNS)
    + ") IS DISTINCT FROM ("
    + ", ".join(f"COALESCE(v.{c}, f.{c})" for c in CONSENT_COLUMNS)
    + ") RETURNING f.customer_id"
)
_INTERACTIONS = text(
    "UPDATE features f SET interactions = f.interactions || ("
    "  SELECT jsonb_object_agg(e.key, COALESCE(CAST(f.interactions ->> e.key AS integer), 0) "
    "  + CAST(e.value AS integer)) FROM jsonb_each_text(v.counts) AS e), "
    "interactions_count = f.interactions_count + v.total, "
    "last_interaction_at = GREATEST(f.last_interaction_at, v.last_at), updated_at = now() "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:counts AS jsonb[]), CAST(:totals AS integer[]), "
    "CAST(:last AS timestamptz[])) AS v(customer_id, counts, total, last_at) "
    "WHERE f.customer_id = v.customer_id RETURNING f.customer_id"
)


def _at_most_one_per(snapshots: Sequence[Snapshot]) -> list[Snapshot]:
    last: dict[uuid.UUID, Snapshot] = {}
    for s in snapshots:
        last[s.customer_id] = s
    return list(last.values())


@dataclass(slots=True)
class _Run:
    """A run of snapshots, consents and interactions between two merges/erasures."""

    snapshots: list[Snapshot] = field(default_factory=list)
    # Consent changes after the customer's last snapshot of the run (earlier ones are in it).
    consents: dict[uuid.UUID, dict[str, bool]] = field(default_factory=dict)
    interactions: list[Interaction] = field(default_factory=list)

    def add(self, step: Step) -> None:
        if isinstance(step, Snapshot):
            self.snapshots.append(step)
            self.consents.pop(step.customer_id, None)
        elif isinstance(step, ConsentChange):
            self.consents.setdefault(step.customer_id, {})[step.column] = step.granted
        elif isinstance(step, Interaction):
            self.interactions.append(step)

    def customers(self) -> set[uuid.UUID]:
        return (
            {s.customer_id for s in self.snapshots}
            | set(self.consents)
            | {i.customer_id for i in self.interactions}
        )


async def _apply_run(
    session: AsyncSession, run: _Run, *, now: datetime, timezone: str, calendar: str, today: date
) -> set[uuid.UUID]:
    ids = run.customers()
    if not ids:
        return set()
    changed = await ensure_rows(session, ids)
    snaps = _at_most_one_per(run.snapshots)
    if snaps:
        result = await session.execute(
            _SNAPSHOTS,
            {
                "ids": [s.customer_id for s in snaps],
                "kinds": [s.kind or "lead" for s in snaps],
                "stages": [s.lifecycle_stage for s in snaps],
                "genders": [s.gender for s in snaps],
                "births": [s.birth_date for s in snaps],
                "next_births": [
                    dates.next_birthday(s.birth_date, calendar=calendar, today=today) for s in snaps
                ],
                "next_dates": [
                    dates.next_effective_date(s.effective_dates, today=today) for s in snaps
                ],
                "dates": [json.dumps(s.effective_dates, ensure_ascii=False) for s in snaps],
                "countries": [s.country_code for s in snaps],
                "provinces": [s.province for s in snaps],
                "cities": [s.city for s in snaps],
                "educations": [s.education for s in snaps],
                "channels": [s.acquisition_channel for s in snaps],
                "campaigns": [s.acquisition_campaign for s in snaps],
                "codes": [s.referred_by_code for s in snaps],
                "clubs": [s.club_status for s in snaps],
                "households": [s.household_id for s in snaps],
                "tags": [array_literal(s.tags) for s in snaps],
                "fields": [json.dumps(s.custom_fields, ensure_ascii=False) for s in snaps],
                "sms": [s.consents.get("consent_sms", False) for s in snaps],
                "email": [s.consents.get("consent_email", False) for s in snaps],
                "phone": [s.consents.get("consent_phone", False) for s in snaps],
                "push": [s.consents.get("consent_push", False) for s in snaps],
                "registered": [s.registered_at for s in snaps],
            },
        )
        changed |= set(result.scalars())
        values = [v for s in snaps for v in dict.fromkeys(s.identities)]
        owners = [s.customer_id for s in snaps for _ in dict.fromkeys(s.identities)]
        await session.execute(
            _DROP_IDENTITIES, {"ids": [s.customer_id for s in snaps], "keep": values}
        )
        if values:
            # One row per value in a statement: the last snapshot naming it wins.
            owner = dict(zip(values, owners, strict=True))
            await session.execute(
                _ADD_IDENTITIES, {"values": list(owner), "ids": list(owner.values())}
            )
    if run.consents:
        cids = sorted(run.consents)
        result = await session.execute(
            _CONSENTS,
            {
                "ids": cids,
                **{
                    name: [run.consents[c].get(col) for c in cids]
                    for name, col in zip(
                        ("sms", "email", "phone", "push"), CONSENT_COLUMNS, strict=True
                    )
                },
            },
        )
        changed |= set(result.scalars())
    if run.interactions:
        counts: dict[uuid.UUID, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        last: dict[uuid.UUID, datetime] = {}
        for i in run.interactions:
            counts[i.customer_id][i.kind or "other"] += 1
            last[i.customer_id] = max(last.get(i.customer_id, i.at), i.at)
        cids = sorted(counts)
        result = await session.execute(
            _INTERACTIONS,
            {
                "ids": cids,
                "counts": [json.dumps(counts[c], ensure_ascii=False) for c in cids],
                "totals": [sum(counts[c].values()) for c in cids],
                "last": [last[c] for c in cids],
            },
        )
        changed |= set(result.scalars())
    if snaps:
        # Registration moves the cohort of a customer without orders, and a birthday the next
        # window moment.
        changed |= await recompute(
            session, customer_ids=[s.customer_id for s in snaps], now=now, timezone=timezone
        )
    return changed


_MOVE_ORDERS = text("UPDATE orders SET customer_id = :survivor WHERE customer_id = :merged")
_MOVE_LINES = text("UPDATE purchase_lines SET customer_id = :survivor WHERE customer_id = :merged")
_MOVE_IDENTITIES = text("UPDATE identities SET customer_id = :survivor WHERE customer_id = :merged")
# The merged customer's counters (interactions, referrals, coupons) join the survivor's, once:
# the merged row is marked removed in the same statement, and a removed row adds nothing.
_MERGE_COUNTERS = text(
    "WITH m AS (UPDATE features SET removed = true, next_window_at = NULL, updated_at = now() "
    "  WHERE customer_id = :merged AND NOT removed "
    "  RETURNING interactions, interactions_count, last_interaction_at, referrals_made, "
    "  coupons_redeemed) "
    "UPDATE features f SET interactions = COALESCE(("
    "  SELECT jsonb_object_agg(k, COALESCE(CAST(f.interactions ->> k AS integer), 0) "
    "  + COALESCE(CAST(m.interactions ->> k AS integer), 0)) "
    "  FROM (SELECT jsonb_object_keys(f.interactions || m.interactions)) AS keys(k)), '{}'), "
    "interactions_count = f.interactions_count + m.interactions_count, "
    "last_interaction_at = GREATEST(f.last_interaction_at, m.last_interaction_at), "
    "referrals_made = f.referrals_made + m.referrals_made, "
    "coupons_redeemed = f.coupons_redeemed + m.coupons_redeemed, updated_at = now() "
    "FROM m WHERE f.customer_id = :survivor RETURNING f.customer_id"
)


async def _merge(
    session: AsyncSession, step: Merge, *, now: datetime, timezone: str
) -> set[uuid.UUID]:
    """The merged customer's orders, lines and identities move to the survivor; its row is
    kept, marked removed (replays of its old events are recognised); the survivor is
    recomputed. Idempotent: moving nothing twice changes nothing."""
    if step.survivor_id == step.merged_id:
        return set()
    ids = [step.survivor_id, step.merged_id]
    params = {"survivor": step.survivor_id, "merged": step.merged_id}
    # Orders before feature rows, the order the purchases consumer takes its locks in.
    await session.execute(_MOVE_ORDERS, params)
    await session.execute(_MOVE_LINES, params)
    await session.execute(_MOVE_IDENTITIES, params)
    changed = await ensure_rows(session, ids)
    merged = (await session.execute(_MERGE_COUNTERS, params)).scalars().all()
    if merged:
        changed |= set(ids)
    changed |= await recompute(session, customer_ids=ids, now=now, timezone=timezone)
    return changed


_UNMERGE = text(
    "UPDATE features SET removed = false, updated_at = now() "
    "WHERE customer_id = :id AND removed RETURNING customer_id"
)


async def _unmerge(
    session: AsyncSession, step: Unmerge, *, now: datetime, timezone: str
) -> set[uuid.UUID]:
    """The restored file counts again. Its orders stay with the survivor: profile's events
    do not say which orders were whose, and an order moved back by guess would be worse."""
    changed = await ensure_rows(session, [step.restored_id])
    changed |= set((await session.execute(_UNMERGE, {"id": step.restored_id})).scalars())
    changed |= await recompute(session, customer_ids=[step.restored_id], now=now, timezone=timezone)
    return changed


_ERASE = text(
    "UPDATE features SET gender = '', birth_date = NULL, next_birthday = NULL, "
    "next_effective_date = NULL, effective_dates = '[]', country_code = '', province = '', "
    "city = '', education = '', acquisition_campaign = '', referred_by_code = '', "
    "household_id = '', tags = '{}', custom_fields = '{}', removed = true, "
    "next_window_at = NULL, updated_at = now() "
    "WHERE customer_id = :id RETURNING customer_id"
)
_ERASE_IDENTITIES = text("DELETE FROM identities WHERE customer_id = :id")


async def _erase(session: AsyncSession, step: Erase) -> set[uuid.UUID]:
    """Personal data goes (demographics, dates, geography, tags, custom fields, identities);
    amounts keyed by the opaque id stay, and the row is removed from every segment."""
    changed = await ensure_rows(session, [step.customer_id])
    await session.execute(_ERASE_IDENTITIES, {"id": step.customer_id})
    changed |= set((await session.execute(_ERASE, {"id": step.customer_id})).scalars())
    return changed


async def apply_customer_steps(
    session: AsyncSession,
    steps: Sequence[Step],
    *,
    now: datetime,
    timezone: str,
    calendar: str,
    today: date,
) -> set[uuid.UUID]:
    """Applies profile's events in log order: runs of snapshots, consents and interactions
    set-based; each merge, unmerge or erasure after what came before it. Returns the customers
    whose features changed."""
    changed: set[uuid.UUID] = set()
    run = _Run()

    async def flush() -> None:
        nonlocal run
        changed.update(
            await _apply_run(
                session, run, now=now, timezone=timezone, calendar=calendar, today=today
            )
        )
        run = _Run()

    for step in steps:
        if isinstance(step, Merge):
            await flush()
            changed |= await _merge(session, step, now=now, timezone=timezone)
        elif isinstance(step, Unmerge):
            await flush()
            changed |= await _unmerge(session, step, now=now, timezone=timezone)
        elif isinstance(step, Erase):
            await flush()
            changed |= await _erase(session, step)
        else:
            run.add(step)
    await flush()
    return changed
