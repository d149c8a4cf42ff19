"""Normalisation of the real platform payloads in /work/shared/fixtures/webhooks (pure)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from vafa.events.v1.shop_orders_pb2 import (
    PLATFORM_SHOPIFY,
    PLATFORM_STANDARD,
    PLATFORM_WOOCOMMERCE,
    OrderCancelled,
    OrderFulfilled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
)
from vafa.gateway.webhooks import normalise as n
from vafa.gateway.webhooks.schemas import (
    ORDER_TYPES,
    StandardEnvelope,
    StandardOrderWebhook,
)

Load = Callable[[str], bytes]
SHOP = "jsmith.myshopify.com"


def body(load: Load, name: str) -> Any:
    return n.parse_json(load(name))


def minor(money: Any) -> tuple[int, str]:
    return (money.amount_minor, money.currency)


# --- Shopify ------------------------------------------------------------------------------------


def test_shopify_orders_create_sample(fixture_bytes: Load) -> None:
    result = n.shopify_event(
        "orders/create", body(fixture_bytes, "shopify_orders_create.json"), shop=SHOP
    )
    assert isinstance(result, n.Normalised)
    assert isinstance(result.message, OrderPlaced)
    o = result.message.order
    assert o.platform == PLATFORM_SHOPIFY
    # 820982911946154508 > 2**53: kept exact, as a string.
    assert o.order_id == "820982911946154508" and int(o.order_id) > 2**53
    assert o.order_ref == result.order_ref == "shopify:jsmith.myshopify.com:820982911946154508"
    assert o.order_number == "#9999"
    assert o.currency == "USD"
    assert minor(o.total) == (40495, "USD")
    assert minor(o.subtotal) == (40495, "USD")
    assert minor(o.discount_total) == (2000, "USD")
    assert list(o.discount_codes) == []
    assert o.financial_status == "voided" and o.test is True
    assert o.placed_at.ToDatetime(tzinfo=UTC) == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)
    assert len(o.line_items) == 5
    assert [li.sku for li in o.line_items] == [
        "SKU2006-001",
        "LENS-PROTECT-2YR",
        "CASE-LEATHER-PREM",
        "SKU2006-020",
        "SKU2006-035",
    ]
    assert [li.unit_price.amount_minor for li in o.line_items] == [8999, 1999, 2499, 15999, 11999]
    assert sum(li.total.amount_minor for li in o.line_items) == 41495  # the body's 414.95
    assert [li.line_id for li in o.line_items] == [
        "487817672276298554",
        "789012345678901234",
        "890123456789012345",
        "976318377106520349",
        "315789986012684393",
    ]
    assert [li.product_id for li in o.line_items] == [
        "788032119674292922",
        "",
        "",
        "788032119674292922",
        "788032119674292922",
    ]
    assert o.line_items[0].title == "Aviator sunglasses" and o.line_items[0].quantity == 1
    c = o.customer
    assert c.shop_customer_id == "115310627314723954"
    # customer.email wins over the order's "jon@example.com".
    assert c.email == "john@example.com"
    # customer.phone is null: the customer's default address phone comes next.
    assert c.phone == "123-123-1234"
    assert (c.first_name, c.last_name) == ("John", "Smith")
    assert (c.country_code, c.city) == ("US", "Shippington")  # the billing address's


def test_shopify_event_type_comes_from_the_topic_not_the_body(fixture_bytes: Load) -> None:
    raw = {
        name: fixture_bytes(f"shopify_orders_{name}.json")
        for name in ("create", "paid", "cancelled")
    }
    assert raw["create"] == raw["paid"] == raw["cancelled"]  # byte-identical samples
    placed = n.shopify_event("orders/create", n.parse_json(raw["create"]), shop=SHOP)
    paid = n.shopify_event("orders/paid", n.parse_json(raw["paid"]), shop=SHOP)
    cancelled = n.shopify_event("orders/cancelled", n.parse_json(raw["cancelled"]), shop=SHOP)
    assert isinstance(placed, n.Normalised) and isinstance(placed.message, OrderPlaced)
    assert isinstance(paid, n.Normalised) and isinstance(paid.message, OrderPaid)
    assert isinstance(cancelled, n.Normalised) and isinstance(cancelled.message, OrderCancelled)
    assert cancelled.message.reason == "customer"
    assert {placed.type, paid.type, cancelled.type} == {
        "vafa.events.v1.OrderPlaced",
        "vafa.events.v1.OrderPaid",
        "vafa.events.v1.OrderCancelled",
    }
    # The body says "voided" for all three; it is kept for the timeline, not used for the type.
    assert paid.message.order.financial_status == "voided"


def test_shopify_fulfilled_is_order_fulfilled(fixture_bytes: Load) -> None:
    data = body(fixture_bytes, "shopify_orders_paid.json")
    result = n.shopify_event("orders/fulfilled", data, shop=SHOP)
    assert isinstance(result, n.Normalised) and isinstance(result.message, OrderFulfilled)
    assert result.type == "vafa.events.v1.OrderFulfilled"
    paid = n.shopify_event("orders/paid", data, shop=SHOP)
    assert isinstance(paid, n.Normalised)
    assert result.message.order == paid.message.order  # the same order, another event


@pytest.mark.parametrize("topic", ["orders/updated", "products/create", ""])
def test_shopify_other_topics_are_ignored(fixture_bytes: Load, topic: str) -> None:
    result = n.shopify_event(topic, body(fixture_bytes, "shopify_orders_create.json"), shop=SHOP)
    assert isinstance(result, n.Ignored)


def test_shopify_rest_order_fixture_with_a_discount_code(fixture_bytes: Load) -> None:
    data = body(fixture_bytes, "shopify_rest_order_fixture_shopify_python_api.json")
    assert set(data) == {"order"}  # the REST wrapper
    o = n.shopify_order(data, shop="x.myshopify.com")
    assert o.order_id == "450789469" and o.order_number == "#1001"
    assert list(o.discount_codes) == ["TENOFF"]
    assert minor(o.total) == (40994, "USD")
    assert minor(o.subtotal) == (39800, "USD")
    assert minor(o.discount_total) == (0, "USD")  # as the body says, TENOFF notwithstanding
    assert [li.sku for li in o.line_items] == ["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"]
    assert [li.unit_price.amount_minor for li in o.line_items] == [19900] * 3
    assert o.line_items[0].title == "IPod Nano - 8gb - green"
    assert o.line_items[0].line_id == "466157049"
    assert o.customer.shop_customer_id == "207119551"
    assert o.customer.email == "bob.norman@hostmail.com"
    assert o.customer.phone == "555-625-1199"  # no customer.phone key: the default address's
    assert (o.customer.country_code, o.customer.city) == ("US", "Louisville")
    assert o.financial_status == "authorized" and o.test is False


def test_shopify_refunds_create_sample(fixture_bytes: Load) -> None:
    result = n.shopify_event(
        "refunds/create", body(fixture_bytes, "shopify_refunds_create.json"), shop=SHOP
    )
    assert isinstance(result, n.Normalised) and isinstance(result.message, OrderRefunded)
    order, refund = result.message.order, result.message.refund
    assert order.order_id == "820982911946154508"
    assert result.order_ref == "shopify:jsmith.myshopify.com:820982911946154508"
    # No top-level currency and the transactions say null: the *_set shop money says USD.
    assert order.currency == "USD"
    assert refund.refund_id == "890088186047892319"
    assert minor(refund.amount) == (8500, "USD")  # 75.00 + 10.00 of refund transactions
    assert len(refund.lines) == 5
    # line_item_id, not the refund line's own id (487817672276298627).
    assert [x.line_id for x in refund.lines] == [
        "487817672276298554",
        "789012345678901234",
        "890123456789012345",
        "976318377106520349",
        "315789986012684393",
    ]
    assert [x.sku for x in refund.lines] == [
        "SKU2006-001",
        "LENS-PROTECT-2YR",
        "CASE-LEATHER-PREM",
        "SKU2006-020",
        "SKU2006-035",
    ]
    assert sum(x.amount.amount_minor for x in refund.lines) == 41495  # subtotals: 414.95
    assert all(x.quantity == 1 and x.restock is False for x in refund.lines)  # no_restock
    assert refund.refunded_at.ToDatetime(tzinfo=UTC) == datetime(2022, 1, 1, tzinfo=UTC)


def test_shopify_rest_refund_fixture(fixture_bytes: Load) -> None:
    order, refund = n.shopify_refund(
        body(fixture_bytes, "shopify_rest_refund_fixture_shopify_python_api.json"),
        shop="x.myshopify.com",
    )
    assert order.order_id == "450789469" and order.currency == "USD"
    assert refund.refund_id == "509562969"
    assert minor(refund.amount) == (20900, "USD")
    # No subtotal in this old shape: the line item's price x quantity; `restock: true`.
    assert [
        (x.line_id, x.sku, x.quantity, x.amount.amount_minor, x.restock) for x in refund.lines
    ] == [
        ("703073504", "IPOD2008BLACK", 1, 19900, True),
        ("466157049", "IPOD2008GREEN", 1, 19900, True),
    ]


def test_shopify_refund_restock_type_other_than_no_restock_restocks(fixture_bytes: Load) -> None:
    data = body(fixture_bytes, "shopify_refunds_create.json")
    data["refund_line_items"][0]["restock_type"] = "return"
    _, refund = n.shopify_refund(data, shop=SHOP)
    assert [x.restock for x in refund.lines] == [True, False, False, False, False]


def test_shopify_refund_with_conflicting_currencies_is_an_error(fixture_bytes: Load) -> None:
    data = body(fixture_bytes, "shopify_refunds_create.json")
    data["transactions"][0]["currency"] = "USD"
    data["transactions"][1]["currency"] = "EUR"
    with pytest.raises(n.NormaliseError, match="mixes currencies"):
        n.shopify_refund(data, shop=SHOP)


def test_shopify_phone_falls_back_to_billing_then_order(fixture_bytes: Load) -> None:
    data = body(fixture_bytes, "shopify_orders_create.json")
    data["customer"]["default_address"]["phone"] = None
    assert n.shopify_customer(data).phone == "555-555-SHIP"
    data["billing_address"]["phone"] = None
    data["phone"] = "+98 912 000 0000"
    assert n.shopify_customer(data).phone == "+98 912 000 0000"
    data["customer"]["phone"] = "+۹۸۹۱۲۳۴۵۶۷۸۹"  # Persian digits pass untouched
    assert n.shopify_customer(data).phone == "+۹۸۹۱۲۳۴۵۶۷۸۹"


def test_shopify_without_customer_uses_the_order_email(fixture_bytes: Load) -> None:
    data = body(fixture_bytes, "shopify_orders_create.json")
    data["customer"] = None
    c = n.shopify_customer(data)
    assert (c.shop_customer_id, c.email, c.phone) == ("", "jon@example.com", "555-555-SHIP")
    assert (c.first_name, c.last_name) == ("Steve", "Shipper")


def test_shopify_line_discounts_lower_the_line_total(fixture_bytes: Load) -> None:
    data = body(fixture_bytes, "shopify_orders_create.json")
    data["line_items"][0]["quantity"] = 3
    data["line_items"][0]["discount_allocations"] = [{"amount": "10.00"}, {"amount": "0.97"}]
    o = n.shopify_order(data, shop=SHOP)
    assert o.line_items[0].unit_price.amount_minor == 8999
    assert o.line_items[0].total.amount_minor == 3 * 8999 - 1097


@pytest.mark.parametrize(
    ("mutate", "pointer"),
    [
        (lambda d: d.pop("currency"), "/currency"),
        (lambda d: d.update(currency="XYZ"), "/currency"),
        (lambda d: d.pop("id"), "/id"),
        (lambda d: d.update(total_price="12.345"), "/total_price"),
        (lambda d: d.update(total_price="lots"), "/total_price"),
        (lambda d: d["line_items"][2].update(price="1.999"), "/line_items/2/price"),
        (lambda d: d["line_items"][1].update(quantity="one"), "/line_items/1/quantity"),
        (lambda d: d["line_items"].__setitem__(0, "nope"), "/line_items/0"),
        (lambda d: d.update(created_at="yesterday"), "/created_at"),
        (lambda d: d.update(customer=["x"]), "/customer"),
    ],
)
def test_shopify_bodies_that_cannot_be_normalised_say_where(
    fixture_bytes: Load, mutate: Callable[[dict[str, Any]], Any], pointer: str
) -> None:
    data = body(fixture_bytes, "shopify_orders_create.json")
    mutate(data)
    with pytest.raises(n.NormaliseError) as exc:
        n.shopify_event("orders/paid", data, shop=SHOP)
    assert exc.value.pointer == pointer


def test_a_json_array_is_not_an_order() -> None:
    with pytest.raises(n.NormaliseError) as exc:
        n.shopify_event("orders/paid", [1, 2], shop=SHOP)
    assert exc.value.pointer == "/"


# --- WooCommerce --------------------------------------------------------------------------------


def test_woocommerce_order_created_sample(fixture_bytes: Load) -> None:
    result = n.woocommerce_event(
        "order.created", body(fixture_bytes, "woocommerce_order_created.json"), shop="example.com"
    )
    assert isinstance(result, n.Normalised)
    assert isinstance(result.message, OrderPaid)  # status "processing"
    o = result.message.order
    assert o.platform == PLATFORM_WOOCOMMERCE
    assert (o.order_id, o.order_number) == ("727", "727")
    assert o.order_ref == "woocommerce:example.com:727"
    assert minor(o.total) == (2935, "USD")
    assert minor(o.subtotal) == (1800, "USD")
    assert minor(o.discount_total) == (0, "USD")
    assert list(o.discount_codes) == []  # coupon_lines is empty
    assert [
        (
            li.line_id,
            li.sku,
            li.product_id,
            li.quantity,
            li.unit_price.amount_minor,
            li.total.amount_minor,
        )
        for li in o.line_items
    ] == [("315", "", "93", 2, 300, 600), ("316", "Bar3", "22", 1, 1200, 1200)]
    c = o.customer
    assert c.shop_customer_id == ""  # customer_id 0: a guest
    assert (c.email, c.phone) == ("john.doe@example.com", "(555) 555-5555")
    assert (c.first_name, c.last_name, c.country_code, c.city) == (
        "John",
        "Doe",
        "US",
        "San Francisco",
    )
    assert o.financial_status == "processing"
    assert o.placed_at.ToDatetime(tzinfo=UTC) == datetime(2017, 3, 22, 19, 28, 2, tzinfo=UTC)


def test_woocommerce_order_updated_sample_is_paid(fixture_bytes: Load) -> None:
    result = n.woocommerce_event(
        "order.updated", body(fixture_bytes, "woocommerce_order_updated.json"), shop="example.com"
    )
    assert isinstance(result, n.Normalised) and isinstance(result.message, OrderPaid)
    assert result.message.order.financial_status == "completed"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("pending", OrderPlaced),
        ("on-hold", OrderPlaced),
        ("processing", OrderPaid),
        ("completed", OrderPaid),
        ("cancelled", OrderCancelled),
        ("failed", OrderCancelled),
        ("refunded", OrderRefunded),
    ],
)
def test_woocommerce_status_mapping(fixture_bytes: Load, status: str, kind: type) -> None:
    data = body(fixture_bytes, "woocommerce_order_created.json")
    data["status"] = status
    result = n.woocommerce_event("order.updated", data, shop="example.com")
    assert isinstance(result, n.Normalised) and isinstance(result.message, kind)


def test_woocommerce_refunded_is_a_whole_order_refund(fixture_bytes: Load) -> None:
    data = body(fixture_bytes, "woocommerce_order_updated.json")
    data["status"] = "refunded"
    data["refunds"] = [{"id": 730, "reason": "", "total": "-29.35"}]
    result = n.woocommerce_event("order.updated", data, shop="example.com")
    assert isinstance(result, n.Normalised) and isinstance(result.message, OrderRefunded)
    refund = result.message.refund
    assert refund.refund_id == "730"
    assert minor(refund.amount) == (2935, "USD")
    assert [(x.line_id, x.quantity, x.amount.amount_minor) for x in refund.lines] == [
        ("315", 2, 600),
        ("316", 1, 1200),
    ]


@pytest.mark.parametrize("status", ["draft", "checkout-draft", "trash", ""])
def test_woocommerce_other_statuses_are_ignored(fixture_bytes: Load, status: str) -> None:
    data = body(fixture_bytes, "woocommerce_order_created.json")
    data["status"] = status
    assert isinstance(n.woocommerce_event("order.created", data, shop="example.com"), n.Ignored)


@pytest.mark.parametrize("topic", ["order.deleted", "order.restored", "product.created"])
def test_woocommerce_other_topics_are_ignored(fixture_bytes: Load, topic: str) -> None:
    data = body(fixture_bytes, "woocommerce_order_created.json")
    assert isinstance(n.woocommerce_event(topic, data, shop="example.com"), n.Ignored)


def test_woocommerce_iranian_shop_keeps_persian_text_and_rials(fixture_bytes: Load) -> None:
    data = body(fixture_bytes, "woocommerce_order_created.json")
    data["currency"] = "IRR"
    data["total"] = "12500000"
    data["discount_total"] = "0"
    data["billing"].update(
        phone="۰۹۱۲۳۴۵۶۷۸۹", first_name="علی", last_name="رضایی", country="IR", city="تهران"
    )
    data["customer_id"] = 12
    for li in data["line_items"]:
        li["subtotal"] = li["total"] = "5000000"
        li["price"] = 2500000
    o = n.woocommerce_order(data, shop="shop.example.ir")
    assert minor(o.total) == (12500000, "IRR")  # IRR has no minor unit
    assert o.customer.phone == "۰۹۱۲۳۴۵۶۷۸۹"
    assert (o.customer.first_name, o.customer.city) == ("علی", "تهران")
    assert o.customer.shop_customer_id == "12"
    data["total"] = "12500000.50"
    with pytest.raises(n.NormaliseError) as exc:
        n.woocommerce_order(data, shop="shop.example.ir")
    assert exc.value.pointer == "/total"


def test_woocommerce_coupons_are_discount_codes(fixture_bytes: Load) -> None:
    data = body(fixture_bytes, "woocommerce_order_created.json")
    data["coupon_lines"] = [{"id": 1, "code": "summer10", "discount": "1.00"}]
    assert list(n.woocommerce_order(data, shop="example.com").discount_codes) == ["summer10"]


def test_woocommerce_fallback_delivery_id_is_stable(fixture_bytes: Load) -> None:
    created = body(fixture_bytes, "woocommerce_order_created.json")
    updated = body(fixture_bytes, "woocommerce_order_updated.json")
    a = n.woocommerce_fallback_delivery_id("31", "order.updated", created)
    assert a == n.woocommerce_fallback_delivery_id("31", "order.updated", created)
    assert a == "31:727:order.updated:2017-03-22T19:28:08"
    assert a != n.woocommerce_fallback_delivery_id("31", "order.updated", updated)


def test_shop_names_from_headers() -> None:
    assert n.shop_from_source("https://Shop.Example.com/") == "shop.example.com"
    assert n.shop_from_source("https://example.com:8443/wp") == "example.com"
    assert n.shop_from_domain(" JSmith.myshopify.com ") == "jsmith.myshopify.com"
    for bad in ("", None, "a b", "x:y"):
        with pytest.raises(ValueError):
            n.shop_from_domain(bad)
    with pytest.raises(ValueError):
        n.shop_from_source("")


# --- Standard Webhooks --------------------------------------------------------------------------


def vafa_order(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "shop": "shop.example.am",
        "order_id": 9007199254740993,  # 2**53 + 1: must survive exactly
        "order_number": "#42",
        "currency": "AMD",
        "total_minor": 1250000,
        "subtotal_minor": 1300000,
        "discount_total_minor": 50000,
        "discount_codes": ["NOR"],
        "customer": {
            "shop_customer_id": "c-1",
            "email": "anna@example.am",
            "phone": "+374 10 123456",
            "first_name": "Աննա",
            "country_code": "AM",
            "city": "Yerevan",
        },
        "line_items": [
            {
                "line_id": 1,
                "sku": "TEA-1",
                "quantity": 2,
                "unit_price_minor": 650000,
                "total_minor": 1300000,
            }
        ],
        "placed_at": "2026-11-20T10:00:00+04:00",
    }
    data.update(over)
    return data


def envelope(type_: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, "timestamp": "2026-11-22T10:00:00Z", "data": data}


def test_standard_order_fulfilled() -> None:
    msg = StandardOrderWebhook.model_validate(envelope("order.fulfilled", vafa_order()))
    result = n.standard_event(msg)
    assert isinstance(result.message, OrderFulfilled)
    assert result.order_ref == "standard:shop.example.am:9007199254740993"


def test_standard_order_paid() -> None:
    msg = StandardOrderWebhook.model_validate(envelope("order.paid", vafa_order()))
    result = n.standard_event(msg)
    assert isinstance(result.message, OrderPaid)
    o = result.message.order
    assert o.platform == PLATFORM_STANDARD
    assert o.order_id == "9007199254740993"
    assert result.order_ref == "standard:shop.example.am:9007199254740993"
    assert minor(o.total) == (1250000, "AMD")
    assert minor(o.discount_total) == (50000, "AMD")
    assert [li.line_id for li in o.line_items] == ["1"]
    assert o.customer.first_name == "Աննա"
    assert o.placed_at.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def test_standard_order_refunded_needs_a_refund() -> None:
    with pytest.raises(ValidationError, match="refund"):
        StandardOrderWebhook.model_validate(envelope("order.refunded", vafa_order()))
    data = vafa_order(
        refund={
            "refund_id": "r1",
            "amount_minor": 650000,
            "lines": [
                {
                    "line_id": "1",
                    "sku": "TEA-1",
                    "quantity": 1,
                    "amount_minor": 650000,
                    "restock": True,
                }
            ],
        }
    )
    result = n.standard_event(StandardOrderWebhook.model_validate(envelope("order.refunded", data)))
    assert isinstance(result.message, OrderRefunded)
    assert minor(result.message.refund.amount) == (650000, "AMD")
    assert result.message.refund.lines[0].restock is True


@pytest.mark.parametrize(
    "bad",
    [
        {"total_minor": 12.5},  # a float: money is integer minor units
        {"total_minor": "1250000"},  # a string
        {"currency": "usd"},
        {"currency": "XYZ"},
        {"shop": "a:b"},
        {"order_id": ""},
        {"total_minor": -1},
    ],
)
def test_standard_order_schema_refuses(bad: dict[str, Any]) -> None:
    raw = json.dumps(envelope("order.placed", vafa_order(**bad))).encode()
    with pytest.raises(ValidationError):
        StandardOrderWebhook.model_validate(n.parse_json(raw))


def test_standard_contact_fixtures_are_not_orders(fixture_bytes: Load) -> None:
    for name in (
        "standard_webhooks_contact_created_full.json",
        "standard_webhooks_contact_created_thin.json",
    ):
        env = StandardEnvelope.model_validate(body(fixture_bytes, name))
        assert env.type == "contact.created" and env.type not in ORDER_TYPES


# --- JSON ---------------------------------------------------------------------------------------


def test_parse_json_is_exact() -> None:
    data = n.parse_json(b'{"id": 820982911946154508, "price": 89.99}')
    assert data["id"] == 820982911946154508
    assert isinstance(data["price"], Decimal) and data["price"] == Decimal("89.99")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"\xff\xfe{",
        b"[" * 100_000,
        b'{"email": "a\\ud800b"}',  # a lone surrogate: not text a protobuf string can hold
        b'{"\\uDC00": 1}',
    ],
)
def test_parse_json_refuses(raw: bytes) -> None:
    with pytest.raises(n.BadJson):
        n.parse_json(raw)


def test_parse_json_keeps_surrogate_pairs() -> None:
    assert n.parse_json(b'{"name": "\\ud83d\\ude00 \\u0639\\u0644\\u06cc"}') == {"name": "😀 علی"}


@pytest.mark.parametrize(
    ("mutate", "pointer"),
    [
        (lambda d: d["line_items"][0].update(quantity=2**70), "/line_items/0/quantity"),
        (lambda d: d["line_items"][0].update(price=Decimal("1e999999999")), "/line_items/0/price"),
        (lambda d: d.update(total_price="1e40"), "/total_price"),
        # Must fail at once, not build a billion-digit int first.
        (
            lambda d: d["line_items"][1].update(quantity=Decimal("1e999999999")),
            "/line_items/1/quantity",
        ),
    ],
)
def test_out_of_range_numbers_are_refused(
    fixture_bytes: Load, mutate: Callable[[dict[str, Any]], Any], pointer: str
) -> None:
    data = body(fixture_bytes, "shopify_orders_create.json")
    mutate(data)
    with pytest.raises(n.NormaliseError) as exc:
        n.shopify_order(data, shop=SHOP)
    assert exc.value.pointer == pointer
