"""The language without a database: parsing, canonical form, pointers, limits, cycles."""

import uuid
from typing import Any

import pytest

from vafa.segmentation.segments import language as L


def info(
    key: str, definition: dict[str, Any] | None, *, kind: str = "dynamic", archived: bool = False
) -> L.SegmentInfo:
    return L.SegmentInfo(uuid.uuid4(), key, kind, 1, archived, definition)


def errors(raw: Any, **kw: Any) -> list[tuple[str, str]]:
    with pytest.raises(L.DefinitionError) as exc:
        L.parse(raw, segments=kw.pop("segments", {}), **kw)
    return [(e["pointer"], e["detail"]) for e in exc.value.extensions["errors"]]


def test_canonical_form_fills_defaults_and_round_trips() -> None:
    raw = {
        "any": [
            {"purchased": {"category": "fantasy-books"}},
            {"not": {"bucket": {"salt": "s", "from": 0, "to": 9}}},
            {"field": "tags", "op": "exists", "value": True},
        ]
    }
    canonical = L.dump(L.parse(raw, segments={}))
    assert canonical["any"][0] == {
        "purchased": {"category": "fantasy-books"},
        "measure": "count",
        "op": "gte",
        "value": 1,
        "negate": False,
    }
    assert canonical["any"][1] == {"not": {"bucket": {"salt": "s", "from": 0, "to": 9}}}
    assert L.dump(L.load(canonical)) == canonical


def test_strict_values_and_shapes() -> None:
    assert [p for p, _ in errors({"purchased": {}, "within_days": "30"})] == [
        "/body/definition/within_days"
    ]
    assert [p for p, _ in errors({"field": "orders_count", "op": "gte", "value": True})] == [
        "/body/definition/value"
    ]
    assert [
        p for p, _ in errors({"field": "last_order_at", "op": "gt", "value": "2030-01-01T00:00:00"})
    ] == [
        "/body/definition/value"  # a date-time needs its zone
    ]
    assert [p for p, _ in errors({"field": "city", "op": "in", "value": []})] == [
        "/body/definition/value"
    ]
    assert [p for p, _ in errors({"all": {"field": "city"}})] == ["/body/definition/all"]
    assert [p for p, _ in errors({"not": {"any": []}, "extra": 1})] == ["/body/definition/extra"]
    assert errors({}, pointer="/x")[0][0] == "/x"
    assert errors({"field": "a/b~c", "op": "eq", "value": 1}) == [
        ("/body/definition/field", "unknown field 'a/b~c' (see GET /v1/segments/fields)")
    ]


def test_size_limit() -> None:
    many = {"any": [{"field": "city", "op": "eq", "value": str(i)} for i in range(L.MAX_NODES + 5)]}
    found = errors(many)
    assert found[0][1].startswith("a definition has at most")


def test_cycles_through_stored_definitions() -> None:
    segments = {
        "b": info("b", {"segment": "c"}),
        "c": info("c", {"all": [{"not": {"segment": "a"}}]}),
        "list": info("list", None, kind="static"),
        "old": info("old", {"all": []}, archived=True),
    }
    assert errors({"segment": "b"}, segments=segments, self_key="a") == [
        ("/body/definition/segment", "a cycle of references: a → b → c → a")
    ]
    # The same reference from another segment is fine; static lists end every chain.
    L.parse({"segment": "b"}, segments=segments, self_key="z")
    L.parse({"segment": "list"}, segments=segments, self_key="a")
    assert errors({"segment": "old"}, segments=segments)[0][1] == "segment 'old' is archived"


def test_refs_and_fields_used() -> None:
    raw = {
        "all": [
            {"segment": "x"},
            {"not": {"rfm": ["lost"]}},
            {"field": "city", "op": "eq", "value": "a"},
        ]
    }
    assert list(L.refs(raw)) == ["x"]
    assert set(L.fields_used(raw)) == {"rfm_segment", "city"}


def test_registry_types() -> None:
    assert L.field_spec("total_spent").type == "money"  # type: ignore[union-attr]
    assert L.field_spec("purchase_months").type == "int[]"  # type: ignore[union-attr]
    assert L.field_spec("custom_fields.club").type == "text"  # type: ignore[union-attr]
    assert L.field_spec("interactions.sms").type == "number"  # type: ignore[union-attr]
    assert L.field_spec("removed") is None and L.field_spec("custom_fields.") is None
