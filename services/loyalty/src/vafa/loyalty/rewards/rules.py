"""Reward rules with no I/O: what makes a reward's settings whole, what a coupon is worth on an
order, and a coupon's state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from vafa.loyalty.models import RewardKind


class RewardTerms(Protocol):
    kind: str
    percent_off: int | None
    amount_minor: int | None
    currency: str | None
    gift_sku: str | None
    min_order_minor: int | None


class RewardSettings(RewardTerms, Protocol):
    starts_at: datetime | None
    ends_at: datetime | None
    after_purchase: bool
    points_price: int


def field_errors(r: RewardSettings) -> list[tuple[str, str]]:
    """(field, what is wrong) for every setting the reward's kind needs and lacks."""
    errors: list[tuple[str, str]] = []
    if r.kind == RewardKind.percent_discount and r.percent_off is None:
        errors.append(("percent_off", "a percent discount needs percent_off (1-100)"))
    if r.kind == RewardKind.fixed_discount:
        if r.amount_minor is None:
            errors.append(("amount_minor", "a fixed discount needs amount_minor"))
        if r.currency is None:
            errors.append(("currency", "a fixed discount needs its currency"))
    if r.kind == RewardKind.gift_product and not r.gift_sku:
        errors.append(("gift_sku", "a gift needs the gift product's SKU"))
    if r.min_order_minor is not None and r.currency is None:
        errors.append(("currency", "a minimum order needs its currency"))
    if r.starts_at and r.ends_at and r.ends_at <= r.starts_at:
        errors.append(("ends_at", "ends_at must be after starts_at"))
    if r.after_purchase and r.points_price != 0:
        errors.append(("points_price", "an after-purchase reward is issued at no points: 0"))
    return errors


def on_offer(starts_at: datetime | None, ends_at: datetime | None, now: datetime) -> bool:
    return (starts_at is None or starts_at <= now) and (ends_at is None or now < ends_at)


@dataclass(frozen=True, slots=True)
class Value:
    valid: bool
    reason: str | None
    discount_minor: int
    free_shipping: bool


def value_on(r: RewardTerms, *, total_minor: int, currency: str) -> Value:
    """What the coupon takes off an order of `total_minor` in `currency`: a percent of the total
    (rounded down), a fixed amount (never more than the total, and only in its currency), free
    shipping, or a gift (no money off)."""
    currency = currency.upper()
    if r.currency is not None and r.currency != currency:
        return Value(False, "currency", 0, False)
    if r.min_order_minor is not None and total_minor < r.min_order_minor:
        return Value(False, "minimum_order", 0, False)
    if r.kind == RewardKind.percent_discount:
        return Value(True, None, total_minor * (r.percent_off or 0) // 100, False)
    if r.kind == RewardKind.fixed_discount:
        return Value(True, None, min(r.amount_minor or 0, total_minor), False)
    if r.kind == RewardKind.free_shipping:
        return Value(True, None, 0, True)
    return Value(True, None, 0, False)


def coupon_status(
    consumed_order_ref: str | None, expires_at: datetime | None, now: datetime
) -> str:
    if consumed_order_ref is not None:
        return "used"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"
