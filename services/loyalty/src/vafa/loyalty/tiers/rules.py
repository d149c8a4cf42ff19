"""Tier rules, with no I/O.

- A member's measure is points earned (earn entries net of their reversals) or money paid
  (net of refunds, in the ladder's currency) within the window: the last 12 months, the
  current calendar year (the shop's: Gregorian or Solar Hijri, in its time zone), or ever.
- The member's tier is the highest whose threshold the measure reaches (none below the lowest).
- Upgrades happen at once (on the event that raised the measure); a lower tier is applied only
  by a re-evaluation. A calendar-year tier is kept through the following year: re-evaluation
  measures max(this year, last year), so a Gold of 2025 is still Gold in 2026 until 2027.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from vafa.loyalty import periods
from vafa.loyalty.models import TierWindow


@dataclass(frozen=True, slots=True)
class Rung:
    """A tier as the rules see it."""

    code: str
    name: str
    threshold: int
    earn_multiplier: Decimal


def window_start(
    window: str, now: datetime, cal: periods.ShopCalendar = periods.ShopCalendar()
) -> datetime | None:
    """Where the current window begins (None: lifetime). A calendar year is the shop's:
    Gregorian, or Solar Hijri from Nowruz, from midnight in its time zone."""
    if window == TierWindow.rolling_12_months:
        # 365 days, so 29 February does not need a rule of its own.
        return now - timedelta(days=365)
    if window == TierWindow.calendar_year:
        return periods.period_start("year", now, timezone=cal.timezone, calendar=cal.calendar)
    return None


def previous_window(
    window: str, now: datetime, cal: periods.ShopCalendar = periods.ShopCalendar()
) -> tuple[datetime, datetime] | None:
    """The period a calendar-year tier was earned in and is kept for: last year."""
    if window == TierWindow.calendar_year:
        return (
            periods.previous_year_start(now, timezone=cal.timezone, calendar=cal.calendar),
            periods.period_start("year", now, timezone=cal.timezone, calendar=cal.calendar),
        )
    return None


def ladder(rungs: Sequence[Rung]) -> list[Rung]:
    return sorted(rungs, key=lambda r: r.threshold)


def qualifying(rungs: Sequence[Rung], measure: int) -> Rung | None:
    """The highest tier whose threshold `measure` reaches."""
    found = None
    for rung in ladder(rungs):
        if measure >= rung.threshold:
            found = rung
    return found


def rank(rungs: Sequence[Rung], code: str | None) -> int:
    """-1 for no tier (or a tier since deleted), else the tier's place on the ladder."""
    for i, rung in enumerate(ladder(rungs)):
        if rung.code == code:
            return i
    return -1


@dataclass(frozen=True, slots=True)
class Decision:
    previous: str | None
    tier: Rung | None
    direction: str  # "upgrade", "downgrade", "initial" or "" (no change)


def decide(
    rungs: Sequence[Rung],
    current: str | None,
    measure: int,
    *,
    allow_downgrade: bool,
    keep_measure: int | None = None,
) -> Decision:
    """What the member's tier becomes. Without `allow_downgrade` (an event), only up; at
    re-evaluation, also down, judged on `keep_measure` (defaults to `measure`)."""
    target = qualifying(rungs, measure)
    now_rank, target_rank = rank(rungs, current), rank(rungs, target.code if target else None)
    if target_rank > now_rank:
        return Decision(current, target, "initial" if current is None else "upgrade")
    if not allow_downgrade:
        return Decision(current, None, "")
    kept = qualifying(rungs, keep_measure if keep_measure is not None else measure)
    kept_rank = rank(rungs, kept.code if kept else None)
    if kept_rank < now_rank:
        return Decision(current, kept, "downgrade")
    return Decision(current, None, "")


@dataclass(frozen=True, slots=True)
class Progress:
    tier: Rung | None
    measure: int
    next_tier: Rung | None
    to_next: int  # how much more to reach next_tier (0 at the top)
    to_keep: int  # how much more within the window to keep the current tier (0: kept)


def progress(rungs: Sequence[Rung], current: str | None, measure: int) -> Progress:
    ordered = ladder(rungs)
    i = rank(ordered, current)
    tier = ordered[i] if i >= 0 else None
    nxt = ordered[i + 1] if i + 1 < len(ordered) else None
    return Progress(
        tier=tier,
        measure=measure,
        next_tier=nxt,
        to_next=max(0, nxt.threshold - measure) if nxt else 0,
        to_keep=max(0, tier.threshold - measure) if tier else 0,
    )
