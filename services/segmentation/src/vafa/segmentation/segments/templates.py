"""Ready-made segments: each a parameterised definition in the language, validated like any
other when a segment is made from it (POST /v1/segments {"template": key, "parameters": {...}})."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vafa.kit.errors import Problem


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrandLoyal(_Params):
    brand: str = Field(min_length=1, description="The brand (as on purchase lines).")
    min_orders: int = Field(default=3, ge=1, description="Orders with that brand, at least.")
    within_days: int | None = Field(default=365, ge=1, le=36500)


class DiscountOnly(_Params):
    min_share: float = Field(default=0.9, gt=0, le=1, description="Share of orders discounted.")
    min_orders: int = Field(default=2, ge=1)


class Seasonal(_Params):
    months: list[int] = Field(
        min_length=1, max_length=12, description="Months of purchase (1-12, shop time zone)."
    )
    max_other_months: int = Field(
        default=0, ge=0, le=11, description="Other months they may also have bought in."
    )


class SpecialDay(_Params):
    days: int = Field(default=14, ge=0, le=366, description="Birthday or anniversary within.")
    min_orders: int = Field(default=1, ge=0)


class Referrers(_Params):
    min_referrals: int = Field(default=3, ge=1)


class HighValue(_Params):
    min_total_spent: int | None = Field(
        default=None, ge=0, description="Minor units; without it the CLV band 'high' decides."
    )


class LowValue(_Params):
    max_total_spent: int | None = Field(
        default=None, ge=0, description="Minor units; without it the CLV band 'low' decides."
    )


class CategoryAffinity(_Params):
    category: str = Field(min_length=1, description="e.g. 'fantasy-books'.")
    min_orders: int = Field(default=2, ge=1)
    within_days: int | None = Field(default=None, ge=1, le=36500)


def _brand_loyal(p: BrandLoyal) -> dict[str, Any]:
    bought: dict[str, Any] = {
        "purchased": {"brand": p.brand},
        "measure": "count",
        "op": "gte",
        "value": p.min_orders,
    }
    if p.within_days:
        bought["within_days"] = p.within_days
    return bought


def _discount_only(p: DiscountOnly) -> dict[str, Any]:
    return {
        "all": [
            {"field": "discount_share", "op": "gte", "value": p.min_share},
            {"field": "orders_count", "op": "gte", "value": p.min_orders},
        ]
    }


def _seasonal(p: Seasonal) -> dict[str, Any]:
    others = [m for m in range(1, 13) if m not in p.months]
    cond: list[dict[str, Any]] = [{"field": "purchase_months", "op": "in", "value": p.months}]
    if p.max_other_months == 0 and others:
        cond.append({"not": {"field": "purchase_months", "op": "in", "value": others}})
    return {"all": cond}


def _special_day(p: SpecialDay) -> dict[str, Any]:
    return {
        "all": [
            {
                "any": [
                    {"field": "next_birthday", "op": "in_next_days", "value": p.days},
                    {"field": "next_effective_date", "op": "in_next_days", "value": p.days},
                ]
            },
            {"field": "orders_count", "op": "gte", "value": p.min_orders},
        ]
    }


def _referrers(p: Referrers) -> dict[str, Any]:
    return {"field": "referrals_made", "op": "gte", "value": p.min_referrals}


def _high(p: HighValue) -> dict[str, Any]:
    if p.min_total_spent is None:
        return {"clv_band": ["high"]}
    return {"field": "total_spent", "op": "gte", "value": p.min_total_spent}


def _low(p: LowValue) -> dict[str, Any]:
    if p.max_total_spent is None:
        return {"clv_band": ["low"]}
    return {
        "all": [
            {"field": "orders_count", "op": "gte", "value": 1},
            {"field": "total_spent", "op": "lte", "value": p.max_total_spent},
        ]
    }


def _category(p: CategoryAffinity) -> dict[str, Any]:
    node: dict[str, Any] = {
        "purchased": {"category": p.category},
        "measure": "count",
        "op": "gte",
        "value": p.min_orders,
    }
    if p.within_days:
        node["within_days"] = p.within_days
    return node


@dataclass(frozen=True, slots=True)
class Template:
    key: str
    name: str
    description: str
    parameters: type[_Params]
    build: Callable[[Any], dict[str, Any]]
    example: Mapping[str, Any]


TEMPLATES: dict[str, Template] = {
    t.key: t
    for t in (
        Template(
            "brand-loyal",
            "Brand-loyal",
            "Buy one brand again and again (at least `min_orders` orders within `within_days`).",
            BrandLoyal,
            _brand_loyal,
            {"brand": "Shirin Asal"},
        ),
        Template(
            "discount-only",
            "Discount-only shoppers",
            "Nearly every order they place carries a discount.",
            DiscountOnly,
            _discount_only,
            {},
        ),
        Template(
            "seasonal-shoppers",
            "Seasonal shoppers",
            "Buy in these months (e.g. Nowruz: 3 and 4) and, by default, in no others.",
            Seasonal,
            _seasonal,
            {"months": [3, 4]},
        ),
        Template(
            "special-day-shoppers",
            "Special-day shoppers",
            "Their birthday or an anniversary is coming within `days`.",
            SpecialDay,
            _special_day,
            {"days": 14},
        ),
        Template(
            "influencers-referrers",
            "Influencers and referrers",
            "Have brought at least `min_referrals` friends to the club.",
            Referrers,
            _referrers,
            {},
        ),
        Template(
            "high-value",
            "High value",
            "The high lifetime-value band, or at least `min_total_spent` spent.",
            HighValue,
            _high,
            {},
        ),
        Template(
            "low-value",
            "Low value",
            "The low lifetime-value band, or buyers who spent at most `max_total_spent`.",
            LowValue,
            _low,
            {},
        ),
        Template(
            "category-affinity",
            "Category affinity",
            "Bought from one category at least `min_orders` times (e.g. fantasy books).",
            CategoryAffinity,
            _category,
            {"category": "fantasy-books"},
        ),
    )
}


def build(key: str, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The definition a template makes with these parameters; 422 pointing into
    /body/template or /body/parameters otherwise."""
    template = TEMPLATES.get(key)
    if template is None:
        raise Problem(
            422,
            f"/body/template: unknown template {key!r}",
            title="Your request is not valid",
            type="validation",
            errors=[
                {
                    "pointer": "/body/template",
                    "detail": f"unknown template; one of {', '.join(TEMPLATES)}",
                }
            ],
        )
    try:
        params = template.parameters.model_validate(parameters or {})
    except ValidationError as exc:
        errors = [
            {
                "pointer": "/body/parameters" + "".join(f"/{p}" for p in e["loc"]),
                "detail": e["msg"],
            }
            for e in exc.errors()
        ]
        raise Problem(
            422,
            f"{errors[0]['pointer']}: {errors[0]['detail']}",
            title="Your request is not valid",
            type="validation",
            errors=errors,
        ) from None
    return template.build(params)
