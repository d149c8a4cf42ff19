"""Scoring, with no I/O: what a purchase or an interaction earns under a set of active rule
versions. The worker (points/store.py) and the dry run (rules/service.py) both use it.

Precedence, deterministic (rules of a kind are taken in order of priority, lower first, then
rule id):
1. Per line, the base: a `fixed_product` rule for the line's SKU gives points × quantity and
   overrides the per-unit points (the first such rule wins); otherwise floor-free
   major amount × rate, the rate from the first `per_unit` rule of the order's currency, else
   VAFA_LOYALTY_POINTS_PER_UNIT. A line's earning amount is its total with the order-level
   discounts spread over the lines (scaled by order total / sum of line totals, never up), so
   shipping earns nothing; an order without lines earns on its total (one line '').
2. Multipliers multiply the per-unit base (not fixed points): every matching `multiplier`
   rule (SKU, category, brand or tag — category/brand/tags from the local product table fed by
   inventory.catalog.v1, LineItem.vendor as a fallback brand), then the member's tier
   multiplier (accounts.tier_multiplier) for the whole line. Each line is floored once, at the
   end; what a multiplier added is attributed to it (for budgets) step by step.
3. Bonuses add (first purchase: a separate lot on the same order, line '').
4. Budgets per rule cut that rule's contribution to what is left of its budget; then caps per
   customer per day/week/month cut the total (lines first keep, bonuses are cut first).
A rule applies only within its date range and, when it names tiers, to members of those tiers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext
from zoneinfo import ZoneInfo

import jdatetime

from vafa.kit.money import MoneyError, to_major
from vafa.loyalty.rules.definitions import (
    Birthday,
    Cap,
    Definition,
    FirstPurchase,
    FixedProduct,
    Interaction,
    Multiplier,
    PerUnit,
)


@dataclass(frozen=True, slots=True)
class ActiveRule:
    rule_id: int
    version: int
    priority: int
    definition: Definition
    valid_from: datetime
    valid_to: datetime | None = None

    def applies(self, at: datetime, tier: str | None) -> bool:
        d = self.definition
        if at < self.valid_from or (self.valid_to is not None and at >= self.valid_to):
            return False
        if d.starts_at is not None and at < d.starts_at:
            return False
        if d.ends_at is not None and at >= d.ends_at:
            return False
        return not d.tiers or (tier is not None and tier in d.tiers)


@dataclass(frozen=True, slots=True)
class ProductInfo:
    brand: str | None
    category: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Line:
    line_id: str
    sku: str
    vendor: str
    quantity: int
    amount_minor: int


@dataclass(slots=True)
class Part:
    """Points of a line (or a bonus) attributed to a rule (None: the default rate or the tier
    multiplier)."""

    rule_id: int | None
    points: int


@dataclass(slots=True)
class LineScore:
    line_id: str
    amount_minor: int
    parts: list[Part] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(p.points for p in self.parts)


@dataclass(slots=True)
class Bonus:
    rule_id: int
    key_part: str  # "first", "interaction", "birthday"
    part: Part
    validity_days: int | None

    @property
    def points(self) -> int:
        return self.part.points


@dataclass(slots=True)
class Score:
    lines: list[LineScore]
    bonuses: list[Bonus]
    validity_days: int | None = None  # of the per-unit rule used, if it set one

    @property
    def points(self) -> int:
        return sum(line.points for line in self.lines) + sum(b.points for b in self.bonuses)

    def parts(self) -> list[Part]:
        """Every part, in the order caps keep them: lines first, then bonuses."""
        out = [p for line in self.lines for p in line.parts]
        return out + [b.part for b in self.bonuses]


def ordered(rules: Sequence[ActiveRule]) -> list[ActiveRule]:
    return sorted(rules, key=lambda r: (r.priority, r.rule_id))


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _major(amount_minor: int, currency: str) -> Decimal | None:
    try:
        return to_major(amount_minor, currency)
    except MoneyError:
        return None


def _matches(m: Multiplier, line: Line, product: ProductInfo | None) -> bool:
    brand = (product.brand if product and product.brand else None) or line.vendor or None
    if m.sku is not None and m.sku != line.sku:
        return False
    if m.category is not None and (product is None or product.category != m.category):
        return False
    if m.brand is not None and (brand is None or brand.casefold() != m.brand.casefold()):
        return False
    return m.tag is None or (product is not None and m.tag in product.tags)


def score_order(
    *,
    currency: str,
    total_minor: int,
    lines: Sequence[Line],
    rules: Sequence[ActiveRule],
    products: Mapping[str, ProductInfo],
    default_rates: Mapping[str, Decimal],
    at: datetime,
    tier: str | None = None,
    tier_multiplier: Decimal | None = None,
    first_purchase: bool = False,
) -> Score:
    """What a paid order earns before budgets and caps (see the module docstring)."""
    code = currency.upper()
    active = [r for r in ordered(rules) if r.applies(at, tier)]
    per_unit = next(
        (r for r in active if isinstance(r.definition, PerUnit) and r.definition.currency == code),
        None,
    )
    if per_unit is not None:
        assert isinstance(per_unit.definition, PerUnit)
        rate: Decimal | None = per_unit.definition.points_per_unit
        rate_rule: int | None = per_unit.rule_id
    else:
        rate, rate_rule = default_rates.get(code), None
    fixed: dict[str, ActiveRule] = {}
    for r in active:
        if isinstance(r.definition, FixedProduct):
            fixed.setdefault(r.definition.sku, r)
    multipliers = [r for r in active if isinstance(r.definition, Multiplier)]

    earning = [line for line in lines if line.amount_minor > 0 or line.sku in fixed]
    if not earning:
        earning = [Line("", "", "", 1, max(total_minor, 0))]
    line_sum = sum(max(line.amount_minor, 0) for line in earning)
    scale = Decimal(1)
    if line_sum > 0 and 0 <= total_minor < line_sum:
        scale = Decimal(max(total_minor, 0)) / Decimal(line_sum)

    scored: list[LineScore] = []
    # Each line's exact value and its floor, so the order as a whole is floored once (below).
    exact: list[tuple[LineScore, Decimal, int, int | None]] = []
    with localcontext() as ctx:
        ctx.prec = 60  # int64 minor units times any sane rate, exactly
        for line in earning:
            amount = max(line.amount_minor, 0)
            score = LineScore(line.line_id, amount)
            fixed_rule = fixed.get(line.sku) if line.sku else None
            if fixed_rule is not None:
                assert isinstance(fixed_rule.definition, FixedProduct)
                base = fixed_rule.definition.points * max(line.quantity, 1)
                score.parts.append(Part(fixed_rule.rule_id, base))
                value = Decimal(base)
                previous = base
                steps: list[tuple[int | None, Decimal]] = []
            else:
                major = _major(amount, code)
                if rate is None or major is None:
                    scored.append(score)
                    continue
                value = major * scale * rate
                previous = _floor(value)
                score.parts.append(Part(rate_rule, previous))
                product = products.get(line.sku)
                steps = [
                    (m.rule_id, m.definition.factor)
                    for m in multipliers
                    if _matches(m.definition, line, product)
                ]
            if tier_multiplier is not None and tier_multiplier > 0 and tier_multiplier != 1:
                steps.append((None, Decimal(tier_multiplier)))
            for rule_id, factor in steps:
                value *= factor
                now = _floor(value)
                if now != previous:
                    score.parts.append(Part(rule_id, now - previous))
                previous = now
            score.parts = [p for p in score.parts if p.points > 0]
            scored.append(score)
            base_rule = fixed_rule.rule_id if fixed_rule is not None else rate_rule
            exact.append((score, value, previous, base_rule))
        # Flooring every line on its own would lose up to a point per line (12.50 × 3 + 4.99
        # would earn 37 + 4 = 41, not the 42 the member expects of 42.49): the order is floored
        # once, and the points the line floors dropped go, one each, to the lines with the
        # largest fractions (ties by line order), attributed to the line's base rule.
        short = _floor(sum((v for _, v, _, _ in exact), Decimal(0))) - sum(f for *_, f, _ in exact)
        by_fraction = sorted(range(len(exact)), key=lambda i: -(exact[i][1] - exact[i][2]))
        for i in by_fraction[: max(short, 0)]:
            score, _, _, base_rule = exact[i]
            score.parts.append(Part(base_rule, 1))

    bonuses: list[Bonus] = []
    if first_purchase:
        first = next((r for r in active if isinstance(r.definition, FirstPurchase)), None)
        if first is not None:
            assert isinstance(first.definition, FirstPurchase)
            bonuses.append(
                Bonus(
                    first.rule_id,
                    "first",
                    Part(first.rule_id, first.definition.points),
                    first.definition.validity_days,
                )
            )
    validity = per_unit.definition.validity_days if per_unit is not None else None
    return Score(scored, bonuses, validity)


def score_interaction(
    *,
    kind: str,
    direction: str,
    rules: Sequence[ActiveRule],
    at: datetime,
    tier: str | None = None,
) -> Bonus | None:
    """The first matching interaction rule (by priority, then id) gives its points."""
    for r in ordered(rules):
        d = r.definition
        if not isinstance(d, Interaction) or not r.applies(at, tier):
            continue
        if d.interaction_kind.casefold() != kind.casefold():
            continue
        if d.direction and d.direction.casefold() != (direction or "").casefold():
            continue
        return Bonus(r.rule_id, "interaction", Part(r.rule_id, d.points), d.validity_days)
    return None


def birthday_rule(
    rules: Sequence[ActiveRule], *, at: datetime, tier: str | None
) -> ActiveRule | None:
    return next(
        (r for r in ordered(rules) if isinstance(r.definition, Birthday) and r.applies(at, tier)),
        None,
    )


def period_keys(
    at: datetime, *, timezone: str = "UTC", calendar: str = "gregorian"
) -> dict[str, str]:
    """The cap periods an instant falls in, in the shop's time zone and calendar: day, week
    (ISO, Monday first; Jalali: Saturday first) and month (Gregorian or Solar Hijri)."""
    local = at.astimezone(ZoneInfo(timezone))
    day = local.date()
    if calendar == "jalali":
        saturday = day - timedelta(days=(day.weekday() + 2) % 7)
        j = jdatetime.date.fromgregorian(date=day)
        return {"day": f"D{day}", "week": f"WJ{saturday}", "month": f"MJ{j.year:04d}-{j.month:02d}"}
    year, week, _ = day.isocalendar()
    return {"day": f"D{day}", "week": f"W{year}-{week:02d}", "month": f"M{day:%Y-%m}"}


def caps(rules: Sequence[ActiveRule], *, at: datetime, tier: str | None) -> dict[str, int]:
    """period ("day"/"week"/"month") -> the smallest cap active for it."""
    out: dict[str, int] = {}
    for r in rules:
        d = r.definition
        if isinstance(d, Cap) and r.applies(at, tier):
            out[d.period] = min(out.get(d.period, d.points), d.points)
    return out


def cut(parts: Sequence[Part], allowed: int) -> None:
    """Keeps the first `allowed` points of `parts` (in order), cutting the rest, in place."""
    left = max(allowed, 0)
    for p in parts:
        keep = min(p.points, left)
        p.points = keep
        left -= keep
