"""Whatever a signed body holds, normalisation either gives an event that encodes, ignores it, or
raises NormaliseError (a 422): never another exception (a 500)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vafa.gateway.webhooks import normalise as n
from vafa.kit import cloudevents

FIXTURES = {
    "shopify_orders_create.json": lambda b: n.shopify_event(
        "orders/paid", b, shop="s.myshopify.com"
    ),
    "shopify_refunds_create.json": lambda b: n.shopify_event(
        "refunds/create", b, shop="s.myshopify.com"
    ),
    "shopify_rest_order_fixture_shopify_python_api.json": lambda b: n.shopify_event(
        "orders/create", b, shop="s.myshopify.com"
    ),
    "shopify_rest_refund_fixture_shopify_python_api.json": lambda b: n.shopify_event(
        "refunds/create", b, shop="s.myshopify.com"
    ),
    "woocommerce_order_created.json": lambda b: n.woocommerce_event(
        "order.updated", b, shop="w.example"
    ),
}

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "0",
            "1.005",
            "-3",
            "USD",
            "IRR",
            "no_restock",
            "refund",
            "success",
            "2021-01-01T00:00:00Z",
        ]
    ),
)
value = st.recursive(
    leaf,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


def replace(node: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    node = copy.copy(node)
    node[path[0]] = replace(node[path[0]], path[1:], new)
    return node


def check(fn: Callable[[Any], Any], data: Any) -> None:
    try:
        result = fn(data)
    except n.NormaliseError:
        return
    if isinstance(result, n.Normalised):
        cloudevents.encode(result.message, source="/vafa/gateway", subject=result.order_ref)


NASTY: list[Any] = [
    None,
    True,
    -1,
    2**70,
    "",
    "x",
    "\ud800",  # a lone surrogate, as json.loads would give for "\\ud800"
    Decimal("1e999999999"),
    Decimal("0.001"),
    [],
    {},
]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_field_replaced_by_every_nasty_value(
    name: str, fixture_bytes: Callable[[str], bytes]
) -> None:
    """Exhaustive: each field of the real payload, in turn, set to each awkward value."""
    body = n.parse_json(fixture_bytes(name))
    for where in paths(body):
        for new in NASTY:
            check(FIXTURES[name], replace(body, where, new))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_change_is_an_event_or_a_normalise_error(
    data: st.DataObject, fixture_bytes: Callable[[str], bytes]
) -> None:
    name = data.draw(st.sampled_from(sorted(FIXTURES)))
    body = n.parse_json(fixture_bytes(name))
    where = data.draw(st.sampled_from(paths(body)))
    new = data.draw(value)
    check(FIXTURES[name], replace(body, where, new))
