"""Platform webhook bodies to the `shop.orders.v1` contract. Pure functions: no I/O, no clock.

Conventions that hold for every platform:
- JSON is parsed with the standard library, numbers with a fraction become `Decimal` (never
  float) and integers stay exact Python ints, so Shopify's ids above 2**53 survive. Every id is
  passed on as a decimal string.
- Money becomes integer minor units with the currency's exponent (see `money.py`). An amount
  with more decimals than its currency allows is an error, not a rounding.
- Strings (names, e-mails, phones in any script, such as "۰۹۱۲...") are passed on untouched;
  profile owns their normalisation.
- A body that cannot be normalised raises `NormaliseError` with a JSON pointer to the culprit.
- The event type comes from the delivery's topic (a header), never from the body: Shopify sends
  the very same body for orders/create, orders/paid and orders/cancelled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from google.protobuf.message import Message

from vafa.events.v1.common_pb2 import Money
from vafa.events.v1.shop_orders_pb2 import (
    PLATFORM_SHOPIFY,
    PLATFORM_STANDARD,
    PLATFORM_WOOCOMMERCE,
    LineItem,
    Order,
    OrderCancelled,
    OrderFulfilled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    Refund,
    RefundLine,
    ShopCustomer,
)
from vafa.gateway.webhooks.schemas import StandardOrderWebhook, VafaOrder
from vafa.kit.money import MoneyError, exponent, to_decimal, to_minor

PLATFORM_NAMES = {
    PLATFORM_SHOPIFY: "shopify",
    PLATFORM_WOOCOMMERCE: "woocommerce",
    PLATFORM_STANDARD: "standard",
}

OrderEvent = OrderPlaced | OrderPaid | OrderFulfilled | OrderCancelled | OrderRefunded
MAX_QUANTITY = 1_000_000


class BadJson(ValueError):
    """The body is not JSON at all."""


class NormaliseError(ValueError):
    """The body is JSON but not an order we can represent; `pointer` says where."""

    def __init__(self, pointer: str, detail: str) -> None:
        super().__init__(f"{pointer or '/'}: {detail}")
        self.pointer = pointer or "/"
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Normalised:
    message: Message
    order_ref: str

    @property
    def type(self) -> str:
        return str(self.message.DESCRIPTOR.full_name)


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str


# ---------------------------------------------------------------------------------------------
# JSON and field access


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_unicode(value: Any) -> None:
    """A lone surrogate escape ("\\ud800") parses into a str that is not valid Unicode and
    cannot be put in a protobuf string; refuse it as bad JSON rather than fail later."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json(raw: bytes) -> Any:
    """Stdlib JSON: exact big integers, fractions as Decimal, NaN/Infinity refused, text that
    is valid Unicode only."""
    try:
        value = json.loads(raw, parse_float=Decimal, parse_constant=_no_constants)
        if _SURROGATE_ESCAPE.search(raw):
            _check_unicode(value)
        return value
    except RecursionError:
        raise BadJson("the JSON is nested too deeply") from None
    except UnicodeEncodeError:
        raise BadJson("a string holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise BadJson(str(exc)) from None


def _ptr(base: str, key: str | int) -> str:
    return f"{base}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _expect_obj(value: Any, pointer: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NormaliseError(pointer, "must be a JSON object")
    return value


def _obj(d: dict[str, Any], key: str, base: str) -> dict[str, Any]:
    """An optional nested object: {} when absent or null."""
    value = d.get(key)
    if value is None:
        return {}
    return _expect_obj(value, _ptr(base, key))


def _list(d: dict[str, Any], key: str, base: str) -> list[Any]:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise NormaliseError(_ptr(base, key), "must be a JSON array")
    return value


def _text(value: str, pointer: str) -> str:
    """parse_json already refuses lone surrogates; this keeps the pure functions safe too."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise NormaliseError(pointer, "is not valid Unicode text") from None
    return value


def _str(d: dict[str, Any], key: str, base: str) -> str:
    """An optional text or id field as a string ("" when absent or null)."""
    value = d.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return _text(value, _ptr(base, key))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise NormaliseError(_ptr(base, key), "must be a string")


def _id(d: dict[str, Any], key: str, base: str) -> str:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise NormaliseError(_ptr(base, key), "is required: an integer or a non-empty string")
    return _text(str(value), _ptr(base, key))


def _int(d: dict[str, Any], key: str, base: str) -> int:
    value = d.get(key)
    # 2.0 is an integer; 1e999999999 must not become a billion-digit int on the way to an error.
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and value.adjusted() < 18
        and value == value.to_integral_value()
    ):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise NormaliseError(_ptr(base, key), "is required: an integer")
    if not 0 <= value <= MAX_QUANTITY:
        raise NormaliseError(_ptr(base, key), f"must be between 0 and {MAX_QUANTITY}")
    return value


def _first(*values: str) -> str:
    return next((v for v in values if v), "")


def _money(minor: int, currency: str) -> Money:
    return Money(amount_minor=minor, currency=currency)


def _minor(value: Any, currency: str, pointer: str, *, round_half_even: bool = False) -> int:
    try:
        return to_minor(value, currency, round_half_even=round_half_even)
    except MoneyError as exc:
        raise NormaliseError(pointer, str(exc)) from None


def _amount(d: dict[str, Any], key: str, base: str, currency: str) -> int:
    if d.get(key) is None:
        raise NormaliseError(_ptr(base, key), "is required: an amount")
    return _minor(d[key], currency, _ptr(base, key))


def _decimal(value: Any, pointer: str) -> Decimal:
    try:
        return to_decimal(value)
    except MoneyError as exc:
        raise NormaliseError(pointer, str(exc)) from None


def _currency(d: dict[str, Any], key: str, base: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise NormaliseError(_ptr(base, key), "is required: an ISO 4217 currency code")
    code = value.strip().upper()
    try:
        exponent(code)
    except MoneyError as exc:
        raise NormaliseError(_ptr(base, key), str(exc)) from None
    return code


def _time(
    d: dict[str, Any], keys: Iterable[str], base: str, *, naive_is_utc: bool
) -> datetime | None:
    """The first present timestamp among `keys`, in UTC. A naive one is UTC only when the
    platform says so (WooCommerce's *_gmt fields); otherwise naive times are refused."""
    for key in keys:
        value = d.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise NormaliseError(_ptr(base, key), "must be an ISO 8601 date-time string")
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise NormaliseError(
                _ptr(base, key), f"{value!r} is not an ISO 8601 date-time"
            ) from None
        if when.tzinfo is None:
            if not naive_is_utc:
                raise NormaliseError(_ptr(base, key), f"{value!r} has no UTC offset")
            when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC)
    return None


def _unwrap(body: Any, key: str) -> tuple[dict[str, Any], str]:
    """Webhooks send the bare resource; the REST API (and Shopify's SDK fixtures) wrap it as
    {"order": {...}}. Both are accepted; the pointer prefix follows the shape."""
    body = _expect_obj(body, "")
    if "id" not in body and isinstance(body.get(key), dict) and len(body) == 1:
        return body[key], f"/{key}"
    return body, ""


def order_ref(platform: str, shop: str, order_id: str) -> str:
    return f"{platform}:{shop}:{order_id}"


def shop_from_domain(value: str | None) -> str:
    """The shop name from a Shopify X-Shopify-Shop-Domain header."""
    shop = (value or "").strip().lower()
    if not shop or any(c.isspace() or c in ":/" for c in shop) or len(shop) > 255:
        raise ValueError("must be the shop's domain, such as jsmith.myshopify.com")
    return shop


def shop_from_source(value: str | None) -> str:
    """The shop name from a WooCommerce X-WC-Webhook-Source header: the URL's host."""
    raw = (value or "").strip()
    try:
        host = urlsplit(raw if "://" in raw else f"https://{raw}").hostname
    except ValueError:
        host = None
    if not raw or not host:
        raise ValueError("must be the shop's URL, such as https://shop.example.com/")
    return host.lower()


def _set_events(
    order: Order, *, financial_status: str, placed_at: datetime | None, test: bool
) -> None:
    order.financial_status = financial_status
    order.test = test
    if placed_at is not None:
        order.placed_at.FromDatetime(placed_at)


# ---------------------------------------------------------------------------------------------
# Shopify


SHOPIFY_TOPICS: dict[str, str] = {
    "orders/create": "placed",
    "orders/paid": "paid",
    "orders/cancelled": "cancelled",
    "orders/fulfilled": "fulfilled",
    "refunds/create": "refunded",
}


def shopify_customer(body: dict[str, Any], base: str = "") -> ShopCustomer:
    """email: customer.email, else the order's email, else contact_email.
    phone: customer.phone, else the customer's default address, else the billing address, else
    the order's phone. Names: the customer's, else the billing address's. Country and city: the
    billing address's, else the customer's default address's."""
    customer = _obj(body, "customer", base)
    cbase = _ptr(base, "customer")
    default = _obj(customer, "default_address", cbase)
    dbase = _ptr(cbase, "default_address")
    billing = _obj(body, "billing_address", base)
    bbase = _ptr(base, "billing_address")
    return ShopCustomer(
        shop_customer_id=_str(customer, "id", cbase),
        email=_first(
            _str(customer, "email", cbase),
            _str(body, "email", base),
            _str(body, "contact_email", base),
        ),
        phone=_first(
            _str(customer, "phone", cbase),
            _str(default, "phone", dbase),
            _str(billing, "phone", bbase),
            _str(body, "phone", base),
        ),
        first_name=_first(_str(customer, "first_name", cbase), _str(billing, "first_name", bbase)),
        last_name=_first(_str(customer, "last_name", cbase), _str(billing, "last_name", bbase)),
        country_code=_first(
            _str(billing, "country_code", bbase), _str(default, "country_code", dbase)
        ).upper(),
        city=_first(_str(billing, "city", bbase), _str(default, "city", dbase)),
    )


def _shopify_line(li: dict[str, Any], base: str, currency: str) -> LineItem:
    """total = price x quantity - the line's discounts: the sum of its discount_allocations
    when it has any, else its total_discount."""
    quantity = _int(li, "quantity", base)
    if li.get("price") is None:
        raise NormaliseError(_ptr(base, "price"), "is required: an amount")
    price = _decimal(li["price"], _ptr(base, "price"))
    discount = Decimal(0)
    allocations = _list(li, "discount_allocations", base)
    if allocations:
        for i, alloc in enumerate(allocations):
            abase = _ptr(_ptr(base, "discount_allocations"), i)
            alloc = _expect_obj(alloc, abase)
            discount += _decimal(alloc.get("amount"), _ptr(abase, "amount"))
    elif li.get("total_discount") is not None:
        discount = _decimal(li["total_discount"], _ptr(base, "total_discount"))
    return LineItem(
        line_id=_id(li, "id", base),
        sku=_str(li, "sku", base),
        product_id=_str(li, "product_id", base),
        # `name` is the variant's full name ("IPod Nano - 8gb - green"); `title` the product's.
        title=_first(_str(li, "name", base), _str(li, "title", base)),
        vendor=_str(li, "vendor", base),
        quantity=quantity,
        unit_price=_money(_minor(price, currency, _ptr(base, "price")), currency),
        total=_money(_minor(price * quantity - discount, currency, _ptr(base, "price")), currency),
    )


def shopify_order(body: Any, *, shop: str) -> Order:
    """A Shopify order (webhook body of orders/*, or the REST {"order": {...}})."""
    body, base = _unwrap(body, "order")
    order_id = _id(body, "id", base)
    currency = _currency(body, "currency", base)
    order = Order(
        platform=PLATFORM_SHOPIFY,
        shop=shop,
        order_id=order_id,
        order_ref=order_ref("shopify", shop, order_id),
        order_number=_first(_str(body, "name", base), _str(body, "order_number", base)),
        currency=currency,
        total=_money(_amount(body, "total_price", base, currency), currency),
        customer=shopify_customer(body, base),
    )
    if body.get("subtotal_price") is not None:
        order.subtotal.CopyFrom(_money(_amount(body, "subtotal_price", base, currency), currency))
    if body.get("total_discounts") is not None:
        order.discount_total.CopyFrom(
            _money(_amount(body, "total_discounts", base, currency), currency)
        )
    for i, dc in enumerate(_list(body, "discount_codes", base)):
        dbase = _ptr(_ptr(base, "discount_codes"), i)
        code = _str(_expect_obj(dc, dbase), "code", dbase)
        if code:
            order.discount_codes.append(code)
    for i, li in enumerate(_list(body, "line_items", base)):
        lbase = _ptr(_ptr(base, "line_items"), i)
        order.line_items.append(_shopify_line(_expect_obj(li, lbase), lbase, currency))
    _set_events(
        order,
        financial_status=_str(body, "financial_status", base),
        placed_at=_time(body, ("created_at", "processed_at"), base, naive_is_utc=False),
        test=body.get("test") is True,
    )
    return order


def _set_amount(money_set: Any, currency: str) -> Any:
    """From a Shopify *_set ({shop_money, presentment_money}), the amount in `currency`."""
    if not isinstance(money_set, dict):
        return None
    for side in ("shop_money", "presentment_money"):
        m = money_set.get(side)
        if isinstance(m, dict) and m.get("currency_code") == currency:
            return m.get("amount")
    return None


def _set_currencies(value: Any) -> Iterable[str]:
    """The shop_money currency of every *_set object at this level and in refund lines."""
    if not isinstance(value, dict):
        return
    for key, v in value.items():
        if key.endswith("_set") and isinstance(v, dict):
            shop_money = v.get("shop_money")
            if isinstance(shop_money, dict) and isinstance(shop_money.get("currency_code"), str):
                yield shop_money["currency_code"]


def shopify_refund_currency(refund: dict[str, Any], base: str = "") -> str:
    """A Shopify refund has no top-level currency. We take the currency of its refund
    transactions when they state one (they are what was paid back); the webhook sample has
    `currency: null` there, so otherwise we take the shop currency, i.e. the `shop_money`
    currency_code of the refund's `*_set` objects (its own and its refund lines'), which is
    the currency the order's amounts are in. Conflicting currencies are an error."""
    found: set[str] = set()
    for t in _list(refund, "transactions", base):
        if isinstance(t, dict) and t.get("kind") == "refund" and isinstance(t.get("currency"), str):
            found.add(t["currency"].upper())
    if not found:
        found.update(_set_currencies(refund))
        for rli in _list(refund, "refund_line_items", base):
            found.update(_set_currencies(rli))
    if len(found) > 1:
        raise NormaliseError(base or "/", f"the refund mixes currencies: {sorted(found)}")
    if not found:
        raise NormaliseError(
            _ptr(base, "transactions"), "no currency: neither the transactions nor any *_set say"
        )
    code = found.pop()
    try:
        exponent(code)
    except MoneyError as exc:
        raise NormaliseError(_ptr(base, "transactions"), str(exc)) from None
    return code


def shopify_refund(body: Any, *, shop: str) -> tuple[Order, Refund]:
    """A Shopify refund (webhook body of refunds/create, or the REST {"refund": {...}}).

    The refund's amount is the sum of its successful `refund` transactions. Each line's amount
    is its `subtotal_set` in the refund's currency, else its `subtotal`, else the line item's
    price x the refunded quantity. `restock` is `restock_type != "no_restock"`, or the refund's
    own `restock` flag for old payloads without restock_type. The order carries only what the
    refund body knows: its id, ref and currency."""
    body, base = _unwrap(body, "refund")
    order_id = _id(body, "order_id", base)
    currency = shopify_refund_currency(body, base)
    refund = Refund(refund_id=_id(body, "id", base))
    total = Decimal(0)
    for i, t in enumerate(_list(body, "transactions", base)):
        tbase = _ptr(_ptr(base, "transactions"), i)
        t = _expect_obj(t, tbase)
        if t.get("kind") != "refund" or t.get("status") not in ("success", None):
            continue
        total += _decimal(t.get("amount"), _ptr(tbase, "amount"))
    refund.amount.CopyFrom(_money(_minor(total, currency, _ptr(base, "transactions")), currency))
    for i, rli in enumerate(_list(body, "refund_line_items", base)):
        rbase = _ptr(_ptr(base, "refund_line_items"), i)
        rli = _expect_obj(rli, rbase)
        li = _obj(rli, "line_item", rbase)
        libase = _ptr(rbase, "line_item")
        quantity = _int(rli, "quantity", rbase)
        amount_src = _set_amount(rli.get("subtotal_set"), currency)
        pointer = _ptr(_ptr(rbase, "subtotal_set"), "shop_money")
        if amount_src is None and rli.get("subtotal") is not None:
            amount_src, pointer = rli["subtotal"], _ptr(rbase, "subtotal")
        if amount_src is None:
            if li.get("price") is None:
                raise NormaliseError(_ptr(rbase, "subtotal"), "is required: an amount")
            amount_src = _decimal(li["price"], _ptr(libase, "price")) * quantity
            pointer = _ptr(libase, "price")
        restock_type = rli.get("restock_type")
        restock = (
            restock_type != "no_restock"
            if restock_type is not None
            else body.get("restock") is True
        )
        refund.lines.append(
            RefundLine(
                line_id=_first(_str(rli, "line_item_id", rbase), _str(li, "id", libase)),
                sku=_str(li, "sku", libase),
                quantity=quantity,
                amount=_money(_minor(amount_src, currency, pointer), currency),
                restock=restock,
            )
        )
    refunded_at = _time(body, ("processed_at", "created_at"), base, naive_is_utc=False)
    if refunded_at is not None:
        refund.refunded_at.FromDatetime(refunded_at)
    order = Order(
        platform=PLATFORM_SHOPIFY,
        shop=shop,
        order_id=order_id,
        order_ref=order_ref("shopify", shop, order_id),
        currency=currency,
    )
    return order, refund


def shopify_event(topic: str, body: Any, *, shop: str) -> Normalised | Ignored:
    kind = SHOPIFY_TOPICS.get(topic.strip().lower())
    if kind is None:
        return Ignored(f"Shopify topic {topic!r} carries nothing Vafa uses")
    if kind == "refunded":
        order, refund = shopify_refund(body, shop=shop)
        return Normalised(OrderRefunded(order=order, refund=refund), order.order_ref)
    order = shopify_order(body, shop=shop)
    if kind == "placed":
        return Normalised(OrderPlaced(order=order), order.order_ref)
    if kind == "paid":
        return Normalised(OrderPaid(order=order), order.order_ref)
    if kind == "fulfilled":
        return Normalised(OrderFulfilled(order=order), order.order_ref)
    b, base = _unwrap(body, "order")
    return Normalised(
        OrderCancelled(order=order, reason=_str(b, "cancel_reason", base)), order.order_ref
    )


# ---------------------------------------------------------------------------------------------
# WooCommerce


WOOCOMMERCE_TOPICS = ("order.created", "order.updated")
WOOCOMMERCE_STATUSES: dict[str, str] = {
    "pending": "placed",
    "on-hold": "placed",
    "processing": "paid",
    "completed": "paid",
    "cancelled": "cancelled",
    "failed": "cancelled",
    "refunded": "refunded",
}


def woocommerce_customer(body: dict[str, Any]) -> ShopCustomer:
    """customer_id 0 is a guest: no shop customer id. Everything else from `billing` (phone
    falls back to `shipping.phone`, which WooCommerce 5.6+ has)."""
    billing = _obj(body, "billing", "")
    shipping = _obj(body, "shipping", "")
    customer_id = _str(body, "customer_id", "")
    return ShopCustomer(
        shop_customer_id="" if customer_id in ("", "0") else customer_id,
        email=_str(billing, "email", "/billing"),
        phone=_first(_str(billing, "phone", "/billing"), _str(shipping, "phone", "/shipping")),
        first_name=_str(billing, "first_name", "/billing"),
        last_name=_str(billing, "last_name", "/billing"),
        country_code=_str(billing, "country", "/billing").upper(),
        city=_str(billing, "city", "/billing"),
    )


def _woocommerce_line(li: dict[str, Any], base: str, currency: str) -> tuple[LineItem, int | None]:
    """total: the line's `total` (after coupons, before tax). unit price: the line's `price`
    (a JSON number WooCommerce computes, rounded half-even to the currency), else
    subtotal / quantity. Returns the line's subtotal too when it has one."""
    quantity = _int(li, "quantity", base)
    subtotal = None if li.get("subtotal") is None else _amount(li, "subtotal", base, currency)
    if li.get("price") is not None:
        unit = _minor(li["price"], currency, _ptr(base, "price"), round_half_even=True)
    elif subtotal is not None and quantity:
        unit = _minor(
            Decimal(subtotal).scaleb(-exponent(currency)) / quantity,
            currency,
            _ptr(base, "subtotal"),
            round_half_even=True,
        )
    else:
        unit = 0
    line = LineItem(
        line_id=_id(li, "id", base),
        sku=_str(li, "sku", base),
        product_id=_str(li, "product_id", base),
        title=_str(li, "name", base),
        quantity=quantity,
        unit_price=_money(unit, currency),
        total=_money(_amount(li, "total", base, currency), currency),
    )
    return line, subtotal


def woocommerce_order(body: Any, *, shop: str) -> Order:
    """A WooCommerce wc/v3 order. subtotal = the sum of the lines' subtotals (WooCommerce has
    no order-level subtotal); discount codes from coupon_lines; placed_at from
    date_created_gmt (WooCommerce's local date_created has no offset and is not used)."""
    body = _expect_obj(body, "")
    order_id = _id(body, "id", "")
    currency = _currency(body, "currency", "")
    order = Order(
        platform=PLATFORM_WOOCOMMERCE,
        shop=shop,
        order_id=order_id,
        order_ref=order_ref("woocommerce", shop, order_id),
        order_number=_first(_str(body, "number", ""), order_id),
        currency=currency,
        total=_money(_amount(body, "total", "", currency), currency),
        customer=woocommerce_customer(body),
    )
    if body.get("discount_total") is not None:
        order.discount_total.CopyFrom(
            _money(_amount(body, "discount_total", "", currency), currency)
        )
    subtotal: int | None = 0
    for i, li in enumerate(_list(body, "line_items", "")):
        lbase = _ptr("/line_items", i)
        line, line_subtotal = _woocommerce_line(_expect_obj(li, lbase), lbase, currency)
        order.line_items.append(line)
        subtotal = None if subtotal is None or line_subtotal is None else subtotal + line_subtotal
    if subtotal is not None:
        order.subtotal.CopyFrom(_money(subtotal, currency))
    for i, cl in enumerate(_list(body, "coupon_lines", "")):
        cbase = _ptr("/coupon_lines", i)
        code = _str(_expect_obj(cl, cbase), "code", cbase)
        if code:
            order.discount_codes.append(code)
    _set_events(
        order,
        financial_status=_str(body, "status", ""),
        placed_at=_time(body, ("date_created_gmt",), "", naive_is_utc=True),
        test=False,
    )
    return order


def woocommerce_event(topic: str, body: Any, *, shop: str) -> Normalised | Ignored:
    """order.created / order.updated, mapped by the order's status. A `refunded` order is a
    whole-order refund: its amount is the order total and every line goes back in full (no
    restock: WooCommerce does not say, and restocking is the shop's manual choice there)."""
    topic = topic.strip().lower()
    if topic not in WOOCOMMERCE_TOPICS:
        return Ignored(f"WooCommerce topic {topic!r} carries nothing Vafa uses")
    body = _expect_obj(body, "")
    status = _str(body, "status", "")
    kind = WOOCOMMERCE_STATUSES.get(status)
    if kind is None:
        return Ignored(f"WooCommerce order status {status!r} is not one Vafa acts on")
    order = woocommerce_order(body, shop=shop)
    if kind == "placed":
        return Normalised(OrderPlaced(order=order), order.order_ref)
    if kind == "paid":
        return Normalised(OrderPaid(order=order), order.order_ref)
    if kind == "cancelled":
        return Normalised(OrderCancelled(order=order, reason=status), order.order_ref)
    refunds = [r for r in _list(body, "refunds", "") if isinstance(r, dict)]
    refund = Refund(
        refund_id=_str(refunds[0], "id", "/refunds/0") if refunds else "",
        amount=order.total,
        lines=[
            RefundLine(
                line_id=li.line_id, sku=li.sku, quantity=li.quantity, amount=li.total, restock=False
            )
            for li in order.line_items
        ],
    )
    modified = _time(body, ("date_modified_gmt",), "", naive_is_utc=True)
    if modified is not None:
        refund.refunded_at.FromDatetime(modified)
    return Normalised(OrderRefunded(order=order, refund=refund), order.order_ref)


def woocommerce_fallback_delivery_id(webhook_id: str, topic: str, body: Any) -> str:
    """When X-WC-Webhook-Delivery-ID is missing: webhook id + resource id + topic + the
    resource's modification date, stable across a redelivery of the same change."""
    b = body if isinstance(body, dict) else {}
    resource_id = _str(b, "id", "") if isinstance(b.get("id"), int | str) else ""
    modified = b.get("date_modified_gmt") or b.get("date_modified") or ""
    return f"{webhook_id}:{resource_id}:{topic}:{modified}"


# ---------------------------------------------------------------------------------------------
# Standard Webhooks (Vafa order schema)


def _standard_order(data: VafaOrder) -> Order:
    cur = data.currency
    c = data.customer
    order = Order(
        platform=PLATFORM_STANDARD,
        shop=data.shop,
        order_id=data.order_id,
        order_ref=order_ref("standard", data.shop, data.order_id),
        order_number=data.order_number,
        currency=cur,
        total=_money(data.total_minor, cur),
        discount_total=_money(data.discount_total_minor, cur),
        discount_codes=data.discount_codes,
        customer=ShopCustomer(
            shop_customer_id=c.shop_customer_id,
            email=c.email,
            phone=c.phone,
            first_name=c.first_name,
            last_name=c.last_name,
            country_code=c.country_code,
            city=c.city,
        ),
        line_items=[
            LineItem(
                line_id=li.line_id,
                sku=li.sku,
                product_id=li.product_id,
                title=li.title,
                vendor=li.vendor,
                quantity=li.quantity,
                unit_price=_money(li.unit_price_minor, cur),
                total=_money(li.total_minor, cur),
            )
            for li in data.line_items
        ],
    )
    if data.subtotal_minor is not None:
        order.subtotal.CopyFrom(_money(data.subtotal_minor, cur))
    _set_events(
        order,
        financial_status=data.financial_status,
        placed_at=data.placed_at.astimezone(UTC) if data.placed_at else None,
        test=data.test,
    )
    return order


def standard_event(webhook: StandardOrderWebhook) -> Normalised:
    data = webhook.data
    order = _standard_order(data)
    builders: dict[str, Callable[[], Message]] = {
        "order.placed": lambda: OrderPlaced(order=order),
        "order.paid": lambda: OrderPaid(order=order),
        "order.fulfilled": lambda: OrderFulfilled(order=order),
        "order.cancelled": lambda: OrderCancelled(order=order, reason=data.cancel_reason),
    }
    if webhook.type in builders:
        return Normalised(builders[webhook.type](), order.order_ref)
    r = data.refund
    assert r is not None  # the model requires it for order.refunded
    refund = Refund(
        refund_id=r.refund_id,
        amount=_money(r.amount_minor, data.currency),
        lines=[
            RefundLine(
                line_id=x.line_id,
                sku=x.sku,
                quantity=x.quantity,
                amount=_money(x.amount_minor, data.currency),
                restock=x.restock,
            )
            for x in r.lines
        ],
    )
    if r.refunded_at is not None:
        refund.refunded_at.FromDatetime(r.refunded_at.astimezone(UTC))
    return Normalised(OrderRefunded(order=order, refund=refund), order.order_ref)
