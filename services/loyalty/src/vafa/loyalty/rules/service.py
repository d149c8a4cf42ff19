"""Earning rules: drafts, immutable published versions, the dry run, and what the ledger's
writers read (the versions active over a span of time, the budgets).

Versions: publishing copies the rule's current definition into a new RuleVersion, active from
that instant; the previous version (if any) stops being active at the same instant. Archiving
ends the current version. A purchase is scored by the versions active at its time (the
CloudEvents time of the PurchaseAttributed event), so a replay scores it the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.errors import Conflict, NotFound
from vafa.loyalty.models import EarningRule, RuleStatus, RuleVersion
from vafa.loyalty.rules import engine
from vafa.loyalty.rules.definitions import Definition, Multiplier

DEFINITION: TypeAdapter[Definition] = TypeAdapter(Definition)


def parse(definition: Mapping[str, Any]) -> Definition:
    return DEFINITION.validate_python(definition)


def dump(definition: Definition) -> dict[str, Any]:
    return DEFINITION.dump_python(definition, mode="json", exclude_none=True)


# --- CRUD and publishing ------------------------------------------------------------------


async def create_rule(
    session: AsyncSession,
    *,
    name: str,
    priority: int,
    budget: int | None,
    definition: Definition,
) -> EarningRule:
    rule = EarningRule(
        name=name,
        kind=definition.kind,
        status=RuleStatus.draft,
        priority=priority,
        budget=budget,
        budget_used=0,
        definition=dump(definition),
    )
    session.add(rule)
    await session.flush()
    await session.refresh(rule)
    return rule


async def get_rule(session: AsyncSession, *, rule_id: int, lock: bool = False) -> EarningRule:
    stmt = (
        select(EarningRule)
        .where(EarningRule.id == rule_id)
        .execution_options(populate_existing=True)
    )
    if lock:
        stmt = stmt.with_for_update()
    rule = await session.scalar(stmt)
    if rule is None:
        raise NotFound(f"No earning rule {rule_id}.", rule_id=rule_id)
    return rule


async def list_rules(session: AsyncSession, *, status: str | None = None) -> list[EarningRule]:
    stmt = select(EarningRule).order_by(EarningRule.priority, EarningRule.id)
    if status is not None:
        stmt = stmt.where(EarningRule.status == status)
    return list(await session.scalars(stmt))


async def update_rule(
    session: AsyncSession,
    *,
    rule_id: int,
    name: str | None = None,
    priority: int | None = None,
    budget: int | None = None,
    clear_budget: bool = False,
    definition: Definition | None = None,
) -> EarningRule:
    """Edits the draft; published versions never change (publish again to apply the edit).
    The budget and the name act at once (they are not part of a version)."""
    rule = await get_rule(session, rule_id=rule_id, lock=True)
    if rule.status == RuleStatus.archived:
        raise Conflict(f"Earning rule {rule_id} is archived.", rule_id=rule_id)
    if definition is not None:
        if definition.kind != rule.kind:
            raise Conflict(
                f"Earning rule {rule_id} is a {rule.kind} rule; its kind cannot change.",
                rule_id=rule_id,
            )
        rule.definition = dump(definition)
    if name is not None:
        rule.name = name
    if priority is not None:
        rule.priority = priority
    if clear_budget:
        rule.budget = None
    elif budget is not None:
        if budget < rule.budget_used:
            raise Conflict(
                f"The budget {budget} is below the {rule.budget_used} points already given.",
                budget_used=rule.budget_used,
            )
        rule.budget = budget
    await session.flush()
    return rule


async def publish(
    session: AsyncSession, *, rule_id: int, author: str | None, now: datetime | None = None
) -> RuleVersion:
    """A new immutable version from the draft, active from now; ends the previous one."""
    now = now or datetime.now(UTC)
    rule = await get_rule(session, rule_id=rule_id, lock=True)
    if rule.status == RuleStatus.archived:
        raise Conflict(f"Earning rule {rule_id} is archived.", rule_id=rule_id)
    await _end_current(session, rule_id, now)
    version = RuleVersion(
        rule_id=rule.id,
        version=(rule.current_version or 0) + 1,
        kind=rule.kind,
        priority=rule.priority,
        definition=dict(rule.definition),
        valid_from=now,
        valid_to=None,
        published_by=author,
    )
    session.add(version)
    rule.current_version = version.version
    rule.status = RuleStatus.published
    await session.flush()
    return version


async def archive(
    session: AsyncSession, *, rule_id: int, now: datetime | None = None
) -> EarningRule:
    now = now or datetime.now(UTC)
    rule = await get_rule(session, rule_id=rule_id, lock=True)
    await _end_current(session, rule_id, now)
    rule.status = RuleStatus.archived
    await session.flush()
    return rule


async def _end_current(session: AsyncSession, rule_id: int, now: datetime) -> None:
    await session.execute(
        text("UPDATE rule_versions SET valid_to = :now WHERE rule_id = :id AND valid_to IS NULL"),
        {"now": now, "id": rule_id},
    )


async def versions(session: AsyncSession, *, rule_id: int) -> list[RuleVersion]:
    return list(
        await session.scalars(
            select(RuleVersion).where(RuleVersion.rule_id == rule_id).order_by(RuleVersion.version)
        )
    )


# --- what the writers read ----------------------------------------------------------------

_ACTIVE = text(
    "SELECT rule_id, version, priority, definition, valid_from, valid_to FROM rule_versions "
    "WHERE valid_from <= :until AND (valid_to IS NULL OR valid_to > :since)"
)


async def active_rules(
    session: AsyncSession, *, since: datetime, until: datetime
) -> list[engine.ActiveRule]:
    """Every version active at some instant in [since, until] (one statement); the engine
    checks each one's window against the event's own time."""
    rows = await session.execute(_ACTIVE, {"since": since, "until": until})
    return [
        engine.ActiveRule(
            rule_id=int(r.rule_id),
            version=int(r.version),
            priority=int(r.priority),
            definition=parse(r.definition),
            valid_from=r.valid_from,
            valid_to=r.valid_to,
        )
        for r in rows
    ]


def needs_products(rules: Sequence[engine.ActiveRule]) -> bool:
    return any(
        isinstance(r.definition, Multiplier)
        and (r.definition.category or r.definition.brand or r.definition.tag)
        for r in rules
    )


_BUDGETS = text(
    "SELECT id, budget - budget_used FROM earning_rules "
    "WHERE id = ANY(CAST(:ids AS bigint[])) AND budget IS NOT NULL ORDER BY id FOR UPDATE"
)
_SPEND_BUDGETS = text(
    "UPDATE earning_rules AS r SET budget_used = r.budget_used + v.points "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:points AS bigint[])) AS v(id, points) "
    "WHERE r.id = v.id"
)


async def lock_budgets(session: AsyncSession, rule_ids: Collection[int]) -> dict[int, int]:
    """rule id -> budget left, for the rules that have a budget, locked to the commit (after
    the account locks, in id order, so writers never deadlock): a budget is never exceeded
    by concurrent earners (and a CHECK guards it too)."""
    if not rule_ids:
        return {}
    rows = await session.execute(_BUDGETS, {"ids": sorted(set(rule_ids))})
    return {int(i): int(left) for i, left in rows}


async def spend_budgets(session: AsyncSession, spent: Mapping[int, int]) -> None:
    used = {k: v for k, v in spent.items() if v > 0}
    if used:
        await session.execute(_SPEND_BUDGETS, {"ids": list(used), "points": list(used.values())})


# --- the dry run --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DryRunSample:
    order_ref: str
    customer_id: uuid.UUID
    paid_at: datetime
    points_before: int
    points_after: int


@dataclass(frozen=True, slots=True)
class DryRun:
    since: datetime
    until: datetime
    purchases: int
    purchases_affected: int
    customers_affected: int
    points_before: int
    points_after: int
    sample: list[DryRunSample]


_HISTORY = text(
    "SELECT h.order_ref, h.customer_id, h.currency, h.total_minor, h.paid_at, h.lines, "
    "a.tier, a.tier_multiplier FROM purchase_history h "
    "LEFT JOIN accounts a ON a.customer_id = h.customer_id "
    "WHERE h.paid_at >= :since AND h.paid_at < :until ORDER BY h.paid_at, h.order_ref "
    "LIMIT :limit"
)
_FIRSTS = text(
    "SELECT DISTINCT ON (customer_id) order_ref FROM purchase_history "
    "WHERE customer_id = ANY(CAST(:ids AS uuid[])) ORDER BY customer_id, paid_at, order_ref"
)


async def dry_run(
    session: AsyncSession,
    *,
    definition: Definition,
    rule_id: int | None,
    priority: int,
    default_rates: Mapping[str, Decimal],
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100_000,
    sample_size: int = 20,
) -> DryRun:
    """What the purchases paid in [since, until) (default: the last 90 days) would earn with
    the draft (replacing the rule's published version when `rule_id` is given) against what
    they earn with the rules active at each one's time. Budgets and caps are not applied (they
    depend on the order things happen in); the draft is treated as active for the whole span."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=90)
    current = await active_rules(session, since=since, until=until)
    draft = engine.ActiveRule(
        rule_id=rule_id if rule_id is not None else 0,
        version=0,
        priority=priority,
        definition=definition,
        valid_from=datetime.min.replace(tzinfo=UTC),
    )
    with_draft = [r for r in current if r.rule_id != draft.rule_id or rule_id is None]
    with_draft.append(draft)
    rows = (await session.execute(_HISTORY, {"since": since, "until": until, "limit": limit})).all()
    products = await load_products(
        session, {line["sku"] for r in rows for line in r.lines if line.get("sku")}
    )
    firsts = set(
        (await session.execute(_FIRSTS, {"ids": list({r.customer_id for r in rows})})).scalars()
    )
    purchases = affected = 0
    before_total = after_total = 0
    customers: set[uuid.UUID] = set()
    sample: list[DryRunSample] = []
    for r in rows:
        purchases += 1
        lines = [
            engine.Line(
                str(li.get("line_id", "")),
                str(li.get("sku", "")),
                str(li.get("vendor", "")),
                int(li.get("quantity", 1)),
                int(li.get("amount_minor", 0)),
            )
            for li in r.lines
        ]
        common = {
            "currency": r.currency,
            "total_minor": int(r.total_minor),
            "lines": lines,
            "products": products,
            "default_rates": default_rates,
            "at": r.paid_at,
            "tier": r.tier,
            "tier_multiplier": r.tier_multiplier,
            "first_purchase": r.order_ref in firsts,
        }
        before = engine.score_order(rules=current, **common).points
        after = engine.score_order(rules=with_draft, **common).points
        before_total += before
        after_total += after
        if before != after:
            affected += 1
            customers.add(r.customer_id)
            if len(sample) < sample_size:
                sample.append(DryRunSample(r.order_ref, r.customer_id, r.paid_at, before, after))
    return DryRun(
        since=since,
        until=until,
        purchases=purchases,
        purchases_affected=affected,
        customers_affected=len(customers),
        points_before=before_total,
        points_after=after_total,
        sample=sample,
    )


_PRODUCTS = text(
    "SELECT sku, brand, category, tags FROM products WHERE sku = ANY(CAST(:skus AS text[]))"
)


async def load_products(
    session: AsyncSession, skus: Collection[str]
) -> dict[str, engine.ProductInfo]:
    if not skus:
        return {}
    rows = await session.execute(_PRODUCTS, {"skus": list(skus)})
    return {
        sku: engine.ProductInfo(brand, category, tuple(tags or ()))
        for sku, brand, category, tags in rows
    }
