"""Purchases and interactions through the ledger, set-based: a polled batch (or one event)
is one unit of work of a few statements however many events it holds:

1. `ledger.store.load`: create and lock the accounts, the keys already used, the open lots of
   accounts that reverse or unlock, the per-line points of the orders reversed;
2. the rule versions active over the batch's span (one statement), and only when some rule
   needs them: the products of the lines, who has bought before (first-purchase bonus), the
   cap counters, the budgets (locked, after the accounts, in rule id order);
3. apply the events in log order, in memory: score (`rules.engine`), cut by budgets and caps,
   grant / reverse / unlock in the `Book`;
4. save the Book (entries, lots, draws, lines, balances, events), the purchase history, the
   counters and the budgets.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.loyalty.config import Settings
from vafa.loyalty.ledger import store as ledger_store
from vafa.loyalty.ledger.book import Book
from vafa.loyalty.ledger.store import Entry
from vafa.loyalty.points.rules import (
    CANCEL_REASON,
    EARN_REASON,
    FIRST_PURCHASE_REASON,
    INTERACTION_REASON,
    REFUND_REASON,
    UNLOCK_REASON,
    Action,
    InteractionEvent,
    Purchase,
    refund_wanted,
    warn_no_rate,
)
from vafa.loyalty.rules import engine
from vafa.loyalty.rules import service as rules_service
from vafa.loyalty.rules.definitions import Cap, FirstPurchase

__all__ = ["Entry", "Policy", "apply", "apply_purchases", "open_accounts"]

open_accounts = ledger_store.open_accounts


@dataclass(frozen=True, slots=True)
class Policy:
    """What the settings say about earning (see config.py)."""

    default_rates: Mapping[str, Decimal] = field(default_factory=lambda: Settings().points_per_unit)
    validity_days: int = 365
    pending_days: int = 0
    pending_until_fulfilled: bool = False
    # The shop's time zone and calendar, for the cap periods.
    timezone: str = "UTC"
    calendar: str = "gregorian"

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            default_rates=settings.points_per_unit,
            validity_days=settings.points_validity_days,
            pending_days=settings.pending_days,
            pending_until_fulfilled=settings.pending_until_fulfilled,
            timezone=settings.timezone,
            calendar=settings.calendar,
        )


_HAS_HISTORY = text(
    "SELECT DISTINCT customer_id FROM purchase_history "
    "WHERE customer_id = ANY(CAST(:ids AS uuid[]))"
)
_FULFILLED = text(
    "SELECT order_ref FROM fulfilled_orders WHERE order_ref = ANY(CAST(:refs AS text[]))"
)
_SET_FULFILLED = text(
    "INSERT INTO fulfilled_orders (order_ref, fulfilled_at) "
    "SELECT * FROM unnest(CAST(:refs AS text[]), CAST(:at AS timestamptz[])) "
    "ON CONFLICT (order_ref) DO NOTHING"
)
_COUNTERS = text(
    "SELECT customer_id, period, points FROM earn_counters "
    "WHERE customer_id = ANY(CAST(:ids AS uuid[])) AND period = ANY(CAST(:periods AS text[]))"
)
_SET_COUNTERS = text(
    "INSERT INTO earn_counters (customer_id, period, points) "
    "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:periods AS text[]), "
    "CAST(:points AS bigint[])) "
    "ON CONFLICT (customer_id, period) DO UPDATE SET points = EXCLUDED.points"
)
_HISTORY = text(
    "INSERT INTO purchase_history (order_ref, customer_id, currency, total_minor, paid_at, "
    "lines, points) "
    "SELECT * FROM unnest(CAST(:refs AS text[]), CAST(:ids AS uuid[]), "
    "CAST(:currencies AS text[]), CAST(:totals AS bigint[]), CAST(:paid AS timestamptz[]), "
    "CAST(:lines AS jsonb[]), CAST(:points AS bigint[])) "
    "ON CONFLICT (order_ref) DO NOTHING"
)


class _Limits:
    """Budgets (rule id -> points left) and caps (counters per customer and period), applied
    to the parts of an earning, in place; what was given is remembered to be saved."""

    def __init__(
        self,
        rules: Sequence[engine.ActiveRule],
        budgets: dict[int, int],
        counters: dict[tuple[uuid.UUID, str], int],
        *,
        timezone: str = "UTC",
        calendar: str = "gregorian",
    ) -> None:
        self.timezone = timezone
        self.calendar = calendar
        self.rules = rules
        self.budgets = budgets
        self.counters = counters
        self.spent: dict[int, int] = defaultdict(int)
        self.changed: set[tuple[uuid.UUID, str]] = set()
        self.has_caps = any(isinstance(r.definition, Cap) for r in rules)

    def apply(
        self, customer_id: uuid.UUID, parts: list[engine.Part], *, at: datetime, tier: str | None
    ) -> int:
        for part in parts:
            if part.rule_id is not None and part.rule_id in self.budgets:
                part.points = min(
                    part.points, self.budgets[part.rule_id] - self.spent[part.rule_id]
                )
        if self.has_caps:
            periods = engine.period_keys(at, timezone=self.timezone, calendar=self.calendar)
            caps = engine.caps(self.rules, at=at, tier=tier)
            if caps:
                allowed = min(
                    cap - self.counters.get((customer_id, periods[period]), 0)
                    for period, cap in caps.items()
                )
                engine.cut(parts, allowed)
            total = sum(p.points for p in parts)
            for period_key in periods.values():
                ref = (customer_id, period_key)
                self.counters[ref] = self.counters.get(ref, 0) + total
                self.changed.add(ref)
        for part in parts:
            if part.rule_id is not None and part.rule_id in self.budgets:
                self.spent[part.rule_id] += part.points
        return sum(p.points for p in parts)


async def apply_purchases(
    session: AsyncSession,
    purchases: Sequence[Purchase],
    traceparents: Sequence[str | None] = (),
    *,
    policy: Policy | None = None,
) -> list[Entry | None]:
    return await apply(session, purchases, traceparents, policy=policy)


async def apply(
    session: AsyncSession,
    items: Sequence[Purchase | InteractionEvent],
    traceparents: Sequence[str | None] = (),
    *,
    policy: Policy | None = None,
) -> list[Entry | None]:
    """Applies purchases and interactions in order as one unit of work; returns, per item,
    the main entry it appended (the order's earn, the reversal, the interaction's earn) or
    None."""
    if not items:
        return []
    policy = policy or Policy()
    purchases = [i for i in items if isinstance(i, Purchase)]
    earners = [i for i in items if isinstance(i, InteractionEvent) or i.action is Action.EARN]
    rules: list[engine.ActiveRule] = []
    if earners:  # read before the locks: the versions are immutable once published
        times = [i.at for i in earners]
        rules = await rules_service.active_rules(session, since=min(times), until=max(times))
    first_rule = any(isinstance(r.definition, FirstPurchase) for r in rules)
    keys: list[str] = []
    for i in items:
        if i.key is not None:
            keys.append(i.key)
        if first_rule and isinstance(i, Purchase) and i.action is Action.EARN:
            keys.append(f"earn:first:{i.customer_id}")
    book = await ledger_store.load(
        session,
        customers=[i.customer_id for i in items],
        keys=keys,
        lots_of={p.customer_id for p in purchases if p.reverses or p.action is Action.FULFILLED},
        orders={(p.customer_id, p.order_ref) for p in purchases if p.reverses},
    )
    products: dict[str, engine.ProductInfo] = {}
    has_history: set[uuid.UUID] = set()
    counters: dict[tuple[uuid.UUID, str], int] = {}
    budgets: dict[int, int] = {}
    if rules:
        if rules_service.needs_products(rules):
            skus = {li.sku for p in purchases for li in p.lines if li.sku}
            products = await rules_service.load_products(session, skus)
        if first_rule:
            ids = list({p.customer_id for p in purchases if p.action is Action.EARN})
            has_history = set((await session.execute(_HAS_HISTORY, {"ids": ids})).scalars())
        if any(isinstance(r.definition, Cap) for r in rules):
            periods = {
                k
                for i in earners
                for k in engine.period_keys(
                    i.at, timezone=policy.timezone, calendar=policy.calendar
                ).values()
            }
            params = {"ids": list({i.customer_id for i in earners}), "periods": list(periods)}
            for cid, period, points in await session.execute(_COUNTERS, params):
                counters[(cid, period)] = int(points)
        budgets = await rules_service.lock_budgets(session, {r.rule_id for r in rules})
    limits = _Limits(rules, budgets, counters, timezone=policy.timezone, calendar=policy.calendar)
    fulfilled: set[str] = set()
    if policy.pending_until_fulfilled or policy.pending_days > 0:
        refs = [p.order_ref for p in purchases if p.action is Action.EARN]
        if refs:
            fulfilled = set((await session.execute(_FULFILLED, {"refs": refs})).scalars())
    fulfilments = {p.order_ref: p.at for p in purchases if p.action is Action.FULFILLED}

    history: list[tuple[Purchase, int]] = []
    causes: list[str | None] = []
    main_keys: list[str | None] = []
    for n, item in enumerate(items):
        before = len(book.appended)
        if isinstance(item, InteractionEvent):
            _interaction(book, item, rules, limits, policy)
        else:
            earned = _purchase(book, item, rules, products, has_history, limits, policy, fulfilled)
            if item.action is Action.EARN:
                history.append((item, earned))
        cause = traceparents[n] if n < len(traceparents) else None
        causes.extend([cause] * (len(book.appended) - before))
        main_keys.append(item.key)
    entries = await ledger_store.save(session, book, causes)

    if history:
        await session.execute(
            _HISTORY,
            {
                "refs": [p.order_ref for p, _ in history],
                "ids": [p.customer_id for p, _ in history],
                "currencies": [p.currency for p, _ in history],
                "totals": [p.total for p, _ in history],
                "paid": [p.at for p, _ in history],
                "lines": [
                    json.dumps(
                        [
                            {
                                "line_id": li.line_id,
                                "sku": li.sku,
                                "vendor": li.vendor,
                                "quantity": li.quantity,
                                "amount_minor": li.amount_minor,
                            }
                            for li in p.lines
                        ]
                    )
                    for p, _ in history
                ],
                "points": [points for _, points in history],
            },
        )
    if limits.changed:
        changed = sorted(limits.changed)
        await session.execute(
            _SET_COUNTERS,
            {
                "ids": [c for c, _ in changed],
                "periods": [p for _, p in changed],
                "points": [counters[ref] for ref in changed],
            },
        )
    await rules_service.spend_budgets(session, limits.spent)
    if fulfilments:
        await session.execute(
            _SET_FULFILLED, {"refs": list(fulfilments), "at": list(fulfilments.values())}
        )
    by_key = {e.idempotency_key: e for e in entries}
    return [by_key.get(k) if k is not None else None for k in main_keys]


def _expiry(at: datetime, days: int | None, policy: Policy) -> datetime:
    return at + timedelta(days=days or policy.validity_days)


def _purchase(
    book: Book,
    p: Purchase,
    rules: Sequence[engine.ActiveRule],
    products: Mapping[str, engine.ProductInfo],
    has_history: set[uuid.UUID],
    limits: _Limits,
    policy: Policy,
    fulfilled: set[str],
) -> int:
    """Applies one purchase to the book; returns the points a paid order earned. `fulfilled`:
    the orders known to be fulfilled (a paid one of them is not pending)."""
    cid = p.customer_id
    key = p.key
    if p.action is Action.EARN:
        assert key is not None
        first_key = f"earn:first:{cid}"
        first = cid not in has_history and first_key not in book.used_keys
        has_history.add(cid)
        if key in book.used_keys:
            return 0
        account = book.accounts[cid]
        score = engine.score_order(
            currency=p.currency,
            total_minor=p.total,
            lines=p.lines,
            rules=rules,
            products=products,
            default_rates=policy.default_rates,
            at=p.at,
            tier=account.tier,
            tier_multiplier=account.tier_multiplier,
            first_purchase=first,
        )
        if p.currency and p.currency not in policy.default_rates and score.points == 0:
            warn_no_rate(p.currency)
        limits.apply(cid, score.parts(), at=p.at, tier=account.tier)
        pending = (
            policy.pending_until_fulfilled or policy.pending_days > 0
        ) and p.order_ref not in fulfilled
        pending_until = (
            None
            if policy.pending_until_fulfilled or not pending
            else p.at + timedelta(days=policy.pending_days)
        )
        base = sum(line.points for line in score.lines)
        if base > 0:
            book.grant(
                cid,
                points=base,
                key=key,
                reason=EARN_REASON,
                now=p.at,
                order_ref=p.order_ref,
                expires_at=_expiry(p.at, score.validity_days, policy),
                pending=pending,
                pending_until=pending_until,
                lines={ls.line_id: (ls.points, ls.amount_minor) for ls in score.lines},
            )
        for bonus in score.bonuses:
            if bonus.points > 0:
                book.grant(
                    cid,
                    points=bonus.points,
                    key=first_key,
                    reason=FIRST_PURCHASE_REASON,
                    now=p.at,
                    order_ref=p.order_ref,
                    expires_at=_expiry(p.at, bonus.validity_days, policy),
                    pending=pending,
                    pending_until=pending_until,
                    lines={"": (bonus.points, p.total)},
                )
        return score.points
    if p.action is Action.CANCEL:
        assert key is not None
        book.reverse(cid, order_ref=p.order_ref, key=key, reason=CANCEL_REASON, wanted=None)
    elif p.action is Action.REFUND:
        assert key is not None
        have = book.lines.get((cid, p.order_ref), {})
        wanted = refund_wanted(p, {lid: (s.points, s.amount_minor) for lid, s in have.items()})
        book.reverse(cid, order_ref=p.order_ref, key=key, reason=REFUND_REASON, wanted=wanted)
    elif p.action is Action.FULFILLED:
        fulfilled.add(p.order_ref)
        for lot in list(book.lots.get(cid, [])):
            if lot.order_ref == p.order_ref:
                book.unlock(lot, key=f"unlock:{lot.grant_key or lot.id}", reason=UNLOCK_REASON)
    return 0


def _interaction(
    book: Book,
    i: InteractionEvent,
    rules: Sequence[engine.ActiveRule],
    limits: _Limits,
    policy: Policy,
) -> None:
    if i.key in book.used_keys:
        return
    account = book.accounts[i.customer_id]
    bonus = engine.score_interaction(
        kind=i.kind, direction=i.direction, rules=rules, at=i.at, tier=account.tier
    )
    if bonus is None:
        return
    points = limits.apply(i.customer_id, [bonus.part], at=i.at, tier=account.tier)
    if points > 0:
        book.grant(
            i.customer_id,
            points=points,
            key=i.key,
            reason=INTERACTION_REASON,
            now=i.at,
            ref=i.entry_id,
            expires_at=_expiry(i.at, bonus.validity_days, policy),
            event_reason=f"interaction:{i.kind}",
        )
