"""The segment language: a definition is one JSON condition (see services/segmentation/README.md).

The pydantic models document the language in the OpenAPI document (`SegmentDefinition`) and
are the typed tree the compiler reads. Requests carry the definition as plain JSON and
`parse` walks it itself, so every error points at the node that is wrong
("/body/definition/all/2/op"), which a union validated by pydantic could not say precisely.
Structural checks (shape, types of the node's own keys) and semantic ones (the field exists, the
operator suits its type, the value suits the operator, referenced segments exist, are active
and make no cycle) are reported together, all of them at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    TypeAdapter,
    ValidationError,
)
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    Integer,
    SmallInteger,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from vafa.kit.errors import Problem
from vafa.segmentation.models import Features

# --- limits ---------------------------------------------------------------------------------

MAX_DEPTH = 12
MAX_NODES = 200
MAX_LIST = 500
MAX_DAYS = 36_500

# --- the field registry ---------------------------------------------------------------------

FieldType = Literal[
    "text", "number", "money", "bool", "date", "datetime", "text[]", "int[]", "json"
]

_COMPARE = ("eq", "neq", "gt", "gte", "lt", "lte", "between", "in", "exists")
_RELATIVE = ("in_last_days", "not_in_last_days", "in_next_days")
OPS: dict[str, tuple[str, ...]] = {
    "text": ("eq", "neq", "in", "contains", "starts_with", "exists"),
    "number": _COMPARE,
    "money": _COMPARE,
    "bool": ("eq", "neq", "exists"),
    "date": (*_COMPARE, *_RELATIVE),
    "datetime": (*_COMPARE, *_RELATIVE),
    "text[]": ("contains", "in", "exists"),
    "int[]": ("contains", "in", "exists"),
}
ALL_OPS = tuple(dict.fromkeys(op for ops in OPS.values() for op in ops))

# Bookkeeping, not features; effective_dates is reached through next_effective_date.
_HIDDEN = {"customer_id", "updated_at", "next_window_at", "removed", "effective_dates"}
# Minor units of `currency`.
_MONEY = {
    "total_spent",
    "avg_order_value",
    "spent_30d",
    "spent_90d",
    "spent_365d",
    "clv_value",
}

_DESCRIPTIONS = {
    "custom_fields.<key>": "A custom field of the customer's profile (text).",
    "interactions.<kind>": "How many interactions of that kind (number, 0 when none).",
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: str
    nullable: bool
    # The column (None for the custom_fields.* / interactions.* families).
    column: str | None
    description: str = ""

    @property
    def ops(self) -> tuple[str, ...]:
        return OPS[self.type]


def _column_type(column: Any) -> str | None:
    t = column.type
    if isinstance(t, ARRAY):
        return "int[]" if isinstance(t.item_type, (Integer, SmallInteger, BigInteger)) else "text[]"
    if isinstance(t, Boolean):
        return "bool"
    if isinstance(t, DateTime):
        return "datetime"
    if isinstance(t, Date):
        return "date"
    if isinstance(t, (Integer, SmallInteger, BigInteger, Double)):
        return "money" if column.name in _MONEY else "number"
    if isinstance(t, Text):
        return "text"
    return None  # JSONB columns are reached through their families


def _registry() -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = {}
    for column in Features.__table__.columns:
        if column.name in _HIDDEN:
            continue
        kind = _column_type(column)
        if kind is None:
            continue
        out[column.name] = FieldSpec(
            column.name, kind, bool(column.nullable), column.name, column.comment or ""
        )
    return out


# Derived from models.Features, so a feature column added there is testable at once.
FIELDS: dict[str, FieldSpec] = _registry()
FAMILIES: dict[str, FieldSpec] = {
    "custom_fields": FieldSpec(
        "custom_fields.<key>", "text", True, None, _DESCRIPTIONS["custom_fields.<key>"]
    ),
    "interactions": FieldSpec(
        "interactions.<kind>", "number", False, None, _DESCRIPTIONS["interactions.<kind>"]
    ),
}


def field_spec(name: str) -> FieldSpec | None:
    if name in FIELDS:
        return FIELDS[name]
    family, dot, key = name.partition(".")
    if dot and key and family in FAMILIES:
        spec = FAMILIES[family]
        return FieldSpec(name, spec.type, spec.nullable, None, spec.description)
    return None


RFM_SEGMENTS = (
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose_them",
    "hibernating",
    "lost",
)
CLV_BANDS = ("high", "medium", "low")

# --- the models (documentation and the typed tree) ------------------------------------------


class _Node(BaseModel):
    # Strict: "2" is not a number of days, nor 2.5 a count.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


class AllOf(_Node):
    """True when every condition is (an empty list is true)."""

    all: list[Condition] = Field(max_length=MAX_LIST)


class AnyOf(_Node):
    """True when some condition is (an empty list is false)."""

    any: list[Condition] = Field(max_length=MAX_LIST)


class NotOf(_Node):
    """True when the condition is not."""

    not_: Condition = Field(alias="not")


class SegmentRefCondition(_Node):
    """Membership of another active segment, by key: a dynamic one's definition is inlined (so
    the order segments are evaluated in never matters), a static one's current members."""

    segment: str = Field(min_length=1, max_length=200)


class FieldCondition(_Node):
    """A feature compared with a value. `between`: [low, high] inclusive; `in`: a list;
    `exists`: true|false; in_last_days / not_in_last_days / in_next_days: a number of days
    (relative to now, or to today in the shop's time zone for dates); `contains`: an array
    feature holds the value, or a text contains it. Money is in minor units."""

    field: str = Field(
        min_length=1,
        description="A feature (GET /v1/segments/fields), custom_fields.<key> or interactions.<kind>.",
    )
    op: Literal[
        "eq",
        "neq",
        "gt",
        "gte",
        "lt",
        "lte",
        "in",
        "contains",
        "starts_with",
        "exists",
        "between",
        "in_last_days",
        "not_in_last_days",
        "in_next_days",
    ]
    value: Any = Field(
        default=None, description="A string, number, boolean or list, as the operator needs."
    )


class ProductMatchSpec(_Node):
    """Which purchase lines count: every criterion given must match (none given: any line)."""

    sku: str | None = None
    brand: str | None = None
    category: str | None = None
    tag: str | None = None


class PurchasedCondition(_Node):
    """Behaviour: the customer's purchases of matching products. `measure` count: distinct
    orders; quantity: units; sum: amount spent (minor units); avg: amount spent per order."""

    purchased: ProductMatchSpec
    measure: Literal["count", "quantity", "sum", "avg"] = "count"
    op: Literal["gte", "gt", "lte", "lt", "eq", "between"] = "gte"
    value: int | list[int] = 1
    within_days: int | None = Field(default=None, ge=1, le=MAX_DAYS)
    negate: bool = Field(default=False, description="True: did not buy that (so many times).")


class RfmCondition(_Node):
    """The customer's RFM segment is one of these."""

    rfm: list[Literal[RFM_SEGMENTS]] = Field(min_length=1)  # type: ignore[valid-type]


class ClvBandCondition(_Node):
    """The customer's lifetime-value band is one of these."""

    clv_band: list[Literal["high", "medium", "low"]] = Field(min_length=1)


class TierCondition(_Node):
    """The customer's loyalty tier is one of these."""

    tier: list[str] = Field(min_length=1, max_length=MAX_LIST)


class BucketRangeSpec(_Node):
    salt: str = Field(min_length=1, max_length=200)
    from_: int = Field(alias="from", ge=0, le=99)
    to: int = Field(ge=0, le=99)


class BucketCondition(_Node):
    """A stable random bucket 0..99 of the customer for A/B splits and holdouts:
    ('x' || substr(md5(salt || ':' || customer_id), 1, 8))::bit(32)::bigint % 100 in [from, to]."""

    bucket: BucketRangeSpec


KINDS = ("all", "any", "not", "segment", "field", "purchased", "rfm", "clv_band", "tier", "bucket")
_MODELS: dict[str, type[_Node]] = {
    "all": AllOf,
    "any": AnyOf,
    "not": NotOf,
    "segment": SegmentRefCondition,
    "field": FieldCondition,
    "purchased": PurchasedCondition,
    "rfm": RfmCondition,
    "clv_band": ClvBandCondition,
    "tier": TierCondition,
    "bucket": BucketCondition,
}


def _kind_of(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        for kind, model in _MODELS.items():
            if isinstance(value, model):
                return kind
        return None
    if isinstance(value, Mapping):
        found = [k for k in KINDS if k in value]
        return found[0] if len(found) == 1 else None
    return None


Condition = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")]
    | Annotated[SegmentRefCondition, Tag("segment")]
    | Annotated[FieldCondition, Tag("field")]
    | Annotated[PurchasedCondition, Tag("purchased")]
    | Annotated[RfmCondition, Tag("rfm")]
    | Annotated[ClvBandCondition, Tag("clv_band")]
    | Annotated[TierCondition, Tag("tier")]
    | Annotated[BucketCondition, Tag("bucket")],
    Discriminator(_kind_of),
]

for _m in (AllOf, AnyOf, NotOf):
    _m.model_rebuild()


class SegmentDefinition(RootModel[Condition]):
    """A segment's definition: one condition, combined with all / any / not. Exactly one of the
    keys all, any, not, segment, field, purchased, rfm, clv_band, tier, bucket names the kind
    of each node. Validated against the feature catalogue (GET /v1/segments/fields); errors
    point at the node (`/body/definition/all/2/op`)."""


_CONDITION: TypeAdapter[Any] = TypeAdapter(Condition)


def dump(node: Any) -> dict[str, Any]:
    """The canonical JSON of a parsed definition (defaults filled in)."""
    out: dict[str, Any] = _CONDITION.dump_python(
        node, mode="json", by_alias=True, exclude_none=True
    )
    return out


def load(raw: Mapping[str, Any]) -> Any:
    """A stored (already validated) definition as the typed tree."""
    return _CONDITION.validate_python(raw)


# --- validation -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What validation and compilation need to know of another segment."""

    id: Any
    key: str
    kind: str
    version: int
    archived: bool
    definition: Mapping[str, Any] | None


@dataclass(slots=True)
class ErrorItem:
    pointer: str
    detail: str


class DefinitionError(Problem):
    def __init__(self, errors: list[ErrorItem]) -> None:
        first = errors[0]
        super().__init__(
            422,
            f"{first.pointer}: {first.detail}",
            title="Your request is not valid",
            type="validation",
            errors=[
                {"pointer": e.pointer, "detail": e.detail, "type": "definition"} for e in errors
            ],
        )


def _esc(part: Any) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_date(v: Any) -> date | None:
    if not isinstance(v, str):
        return None
    try:
        return date.fromisoformat(v)
    except ValueError:
        return None


def _parse_datetime(v: Any) -> datetime | None:
    if not isinstance(v, str):
        return None
    try:
        d = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo is not None else None


def _scalar_ok(kind: str, v: Any) -> str | None:
    """None when `v` is a valid scalar of the field type, else what is expected."""
    if kind in ("text", "text[]"):
        return None if isinstance(v, str) else "a string"
    if kind == "number":
        return None if _is_number(v) else "a number"
    if kind in ("money", "int[]"):
        return None if _is_int(v) else "an integer" + (" (minor units)" if kind == "money" else "")
    if kind == "bool":
        return None if isinstance(v, bool) else "true or false"
    if kind == "date":
        return None if _parse_date(v) else "a date (YYYY-MM-DD)"
    if kind == "datetime":
        return None if _parse_datetime(v) else "a date-time with a time zone (ISO 8601)"
    return "a value"


def check_field_value(spec: FieldSpec, op: str, value: Any) -> str | None:
    """None when `value` suits `op` on a field of `spec`'s type, else the complaint."""
    kind = spec.type
    if op == "exists":
        return None if isinstance(value, bool) else "exists takes true or false"
    if op in _RELATIVE:
        if _is_int(value) and 0 <= value <= MAX_DAYS:
            return None
        return f"{op} takes a whole number of days, 0 to {MAX_DAYS}"
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            return "between takes [low, high]"
        for v in value:
            if (bad := _scalar_ok(kind, v)) is not None:
                return f"between takes [low, high] of {bad}"
        lo, hi = value
        if kind == "date":
            lo, hi = _parse_date(lo), _parse_date(hi)
        elif kind == "datetime":
            lo, hi = _parse_datetime(lo), _parse_datetime(hi)
        if lo > hi:
            return "between needs low <= high"
        return None
    if op == "in":
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            return f"in takes a non-empty list of at most {MAX_LIST} values"
        for v in value:
            if (bad := _scalar_ok(kind, v)) is not None:
                return f"in takes a list of {bad}"
        return None
    if (
        op in ("contains", "starts_with")
        and kind == "text"
        and not (isinstance(value, str) and value)
    ):
        return f"{op} takes a non-empty string"
    if value is None:
        return f"{op} needs a value"
    if isinstance(value, list):
        return f"{op} takes one value, not a list"
    bad = _scalar_ok(kind, value)
    return None if bad is None else f"expected {bad} for {spec.name} ({kind})"


class _Parser:
    def __init__(
        self, segments: Mapping[str, SegmentInfo], self_key: str | None, *, allow_refs: bool
    ) -> None:
        self.segments = segments
        self.self_key = self_key
        self.allow_refs = allow_refs
        self.errors: list[ErrorItem] = []
        self.nodes = 0

    def err(self, pointer: str, detail: str) -> None:
        self.errors.append(ErrorItem(pointer, detail))

    def node(self, raw: Any, at: str, depth: int) -> Any:
        self.nodes += 1
        if self.nodes == MAX_NODES + 1:
            self.err(at, f"a definition has at most {MAX_NODES} conditions")
        if depth > MAX_DEPTH:
            self.err(at, f"conditions nest at most {MAX_DEPTH} deep")
            return None
        if not isinstance(raw, Mapping):
            self.err(at, "a condition is a JSON object")
            return None
        kinds = [k for k in KINDS if k in raw]
        if len(kinds) != 1:
            what = "none" if not kinds else ", ".join(kinds)
            self.err(at, f"a condition has exactly one of {', '.join(KINDS)} (found {what})")
            return None
        kind = kinds[0]
        if kind in ("all", "any"):
            extra = [k for k in raw if k != kind]
            for k in extra:
                self.err(f"{at}/{_esc(k)}", "unexpected key")
            items = raw[kind]
            if not isinstance(items, list):
                self.err(f"{at}/{kind}", f"{kind} takes a list of conditions")
                return None
            if len(items) > MAX_LIST:
                self.err(f"{at}/{kind}", f"{kind} takes at most {MAX_LIST} conditions")
            children = [self.node(c, f"{at}/{kind}/{i}", depth + 1) for i, c in enumerate(items)]
            if kind == "all":
                return AllOf.model_construct(all=children)
            return AnyOf.model_construct(any=children)
        if kind == "not":
            for k in raw:
                if k != "not":
                    self.err(f"{at}/{_esc(k)}", "unexpected key")
            child = self.node(raw["not"], f"{at}/not", depth + 1)
            return NotOf.model_construct(not_=child)
        model_cls = _MODELS[kind]
        try:
            parsed = model_cls.model_validate(raw)
        except ValidationError as exc:
            for e in exc.errors():
                loc = [p for p in e["loc"] if not isinstance(p, str) or p not in _TYPE_TAGS]
                self.err(at + "".join(f"/{_esc(p)}" for p in loc), e["msg"])
            return None
        if isinstance(parsed, FieldCondition):
            self.field(parsed, at)
        elif isinstance(parsed, SegmentRefCondition):
            self.ref(parsed, at)
        elif isinstance(parsed, PurchasedCondition):
            self.purchased(parsed, at)
        elif isinstance(parsed, BucketCondition) and parsed.bucket.from_ > parsed.bucket.to:
            self.err(f"{at}/bucket/from", "from must not be above to")
        return parsed

    def field(self, node: FieldCondition, at: str) -> None:
        spec = field_spec(node.field)
        if spec is None:
            self.err(f"{at}/field", f"unknown field {node.field!r} (see GET /v1/segments/fields)")
            return
        if node.op not in spec.ops:
            self.err(
                f"{at}/op",
                f"{node.op} does not apply to {node.field} ({spec.type}); "
                f"use one of {', '.join(spec.ops)}",
            )
            return
        if (bad := check_field_value(spec, node.op, node.value)) is not None:
            self.err(f"{at}/value", bad)

    def purchased(self, node: PurchasedCondition, at: str) -> None:
        v = node.value
        if node.op == "between":
            if not isinstance(v, list) or len(v) != 2 or v[0] > v[1] or v[0] < 0:
                self.err(f"{at}/value", "between takes [low, high], 0 <= low <= high")
        elif isinstance(v, list):
            self.err(f"{at}/value", f"{node.op} takes one number")
        elif v < 0:
            self.err(f"{at}/value", "a purchase measure is never negative")

    def ref(self, node: SegmentRefCondition, at: str) -> None:
        if not self.allow_refs:
            return
        if node.segment == self.self_key:
            self.err(f"{at}/segment", f"a segment cannot refer to itself ({node.segment!r})")
            return
        info = self.segments.get(node.segment)
        if info is None:
            self.err(f"{at}/segment", f"unknown segment {node.segment!r}")
        elif info.archived:
            self.err(f"{at}/segment", f"segment {node.segment!r} is archived")
        elif self.self_key is not None:
            path = _cycle(self.segments, node.segment, self.self_key)
            if path is not None:
                chain = " → ".join([self.self_key, *path])
                self.err(f"{at}/segment", f"a cycle of references: {chain}")


_TYPE_TAGS = {"int", "str", "float", "bool", "list[int]", "list[union[str,int,float]]", "none"}


def refs(raw: Any) -> Iterator[str]:
    """The segment keys a raw definition refers to directly."""
    if isinstance(raw, Mapping):
        if isinstance(raw.get("segment"), str):
            yield raw["segment"]
        for k in ("all", "any"):
            if isinstance(raw.get(k), list):
                for c in raw[k]:
                    yield from refs(c)
        if "not" in raw:
            yield from refs(raw["not"])


def fields_used(raw: Any) -> Iterator[str]:
    """The features a raw definition tests directly (rfm → rfm_segment, ...)."""
    if not isinstance(raw, Mapping):
        return
    if isinstance(raw.get("field"), str):
        yield raw["field"]
    for k, f in (("rfm", "rfm_segment"), ("clv_band", "clv_band"), ("tier", "tier")):
        if k in raw:
            yield f
    for k in ("all", "any"):
        if isinstance(raw.get(k), list):
            for c in raw[k]:
                yield from fields_used(c)
    if "not" in raw:
        yield from fields_used(raw["not"])


def _cycle(segments: Mapping[str, SegmentInfo], start: str, target: str) -> list[str] | None:
    """The chain of keys from `start` to `target` through dynamic definitions, if any."""
    seen: set[str] = set()

    def walk(key: str, path: list[str]) -> list[str] | None:
        if key == target:
            return path
        if key in seen:
            return None
        seen.add(key)
        info = segments.get(key)
        if info is None or info.definition is None:
            return None
        for nxt in refs(info.definition):
            found = walk(nxt, [*path, nxt])
            if found is not None:
                return found
        return None

    return walk(start, [start])


def parse(
    raw: Any,
    *,
    segments: Mapping[str, SegmentInfo],
    self_key: str | None = None,
    pointer: str = "/body/definition",
    allow_refs: bool = True,
) -> Any:
    """Validates a raw definition; returns the typed tree or raises DefinitionError listing
    every problem with its JSON pointer. `segments`: the other segments by key; `self_key`:
    the key of the segment being defined (cycles through it are refused)."""
    parser = _Parser(segments, self_key, allow_refs=allow_refs)
    tree = parser.node(raw, pointer, 1)
    if parser.errors:
        raise DefinitionError(parser.errors)
    return tree


def walk(node: Any, visit: Callable[[Any], None]) -> None:
    visit(node)
    if isinstance(node, (AllOf, AnyOf)):
        for c in node.all if isinstance(node, AllOf) else node.any:
            walk(c, visit)
    elif isinstance(node, NotOf):
        walk(node.not_, visit)
