"""Test data: unique values (tests that commit share one database) and shop orders."""

import uuid

from vafa.events.v1 import common_pb2, shop_orders_pb2


def unique(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def make_order(
    *,
    ref: str | None = None,
    shop_customer_id: str = "",
    email: str = "",
    phone: str = "",
    first_name: str = "Sara",
    last_name: str = "Ahmadi",
    country_code: str = "IR",
    city: str = "Tehran",
    total_minor: int = 1_250_000,
    currency: str = "IRR",
    number: str = "#1001",
) -> shop_orders_pb2.Order:
    order_id = unique()
    return shop_orders_pb2.Order(
        platform=shop_orders_pb2.PLATFORM_SHOPIFY,
        shop="demo.myshopify.com",
        order_id=order_id,
        order_ref=ref or f"shopify:demo.myshopify.com:{order_id}",
        order_number=number,
        currency=currency,
        total=common_pb2.Money(amount_minor=total_minor, currency=currency),
        customer=shop_orders_pb2.ShopCustomer(
            shop_customer_id=shop_customer_id,
            email=email,
            phone=phone,
            first_name=first_name,
            last_name=last_name,
            country_code=country_code,
            city=city,
        ),
        line_items=[shop_orders_pb2.LineItem(line_id="1", sku="SKU-1", quantity=2)],
    )
