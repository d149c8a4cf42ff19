"""A storefront that sends real, signed webhooks: used by the end-to-end tests, `make demo`
and the benchmark. Bodies follow the platforms' documented formats (Shopify REST order and
refund, WooCommerce wc/v3 order), and customers come from Faker's fa_IR and hy_AM locales with
the phone forms shops in Iran and Armenia really send (0912..., Persian digits, +374 ...)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def _customer_id(locale: str, tag: str, n: int) -> int:
    """The shop's customer id: distinct per (tag, n), so separate tests never share a buyer."""
    digest = hashlib.sha256(f"{locale}:{tag}:{n}".encode()).hexdigest()
    return int(digest[:13], 16)


@dataclass
class Customer:
    shop_customer_id: int
    first_name: str
    last_name: str
    email: str
    phone: str
    city: str
    country_code: str


@dataclass
class Line:
    sku: str
    quantity: int
    price: str  # major units as the platforms send them, e.g. "12.50"
    title: str = ""


@dataclass
class ShopSimulator:
    """Builds and signs webhook deliveries. `secrets` holds the env-style names
    (VAFA_SHOPIFY_WEBHOOK_SECRET, VAFA_WOOCOMMERCE_WEBHOOK_SECRET)."""

    secrets: dict[str, str]
    shopify_domain: str = "ketab-demo.myshopify.com"
    woo_source: str = "https://shop.example.am"
    seed: int = 7
    _rng: random.Random = field(init=False)
    _fakers: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _faker(self, locale: str, seed: int) -> Any:
        # One Faker per locale (building one costs milliseconds), reseeded per customer.
        if locale not in self._fakers:
            from faker import Faker

            self._fakers[locale] = Faker(locale)
        fake = self._fakers[locale]
        fake.seed_instance(seed)
        return fake

    # -- customers -------------------------------------------------------------------------

    def persian_customer(self, n: int, *, tag: str = "") -> Customer:
        fake = self._faker("fa_IR", self.seed * 100_003 + n)
        mobile = (
            f"09{self._rng.choice('139')}{self._rng.randrange(10)}{self._rng.randrange(10**7):07d}"
        )
        # Iranian storefronts often pass on what the buyer typed: Persian digits included.
        phone = mobile.translate(PERSIAN_DIGITS) if n % 2 else mobile
        return Customer(
            shop_customer_id=_customer_id("fa", tag, n),
            first_name=fake.first_name(),
            last_name=fake.last_name(),
            email=f"fa{tag}{n}@example.ir",
            phone=phone,
            city=fake.city(),
            country_code="IR",
        )

    def armenian_customer(self, n: int, *, tag: str = "") -> Customer:
        fake = self._faker("hy_AM", self.seed * 200_003 + n)
        code = self._rng.choice(["77", "91", "93", "94", "98", "99"])
        number = f"{self._rng.randrange(10**6):06d}"
        phone = f"+374 {code} {number}" if n % 2 else f"0{code}{number}"
        return Customer(
            shop_customer_id=_customer_id("hy", tag, n),
            first_name=fake.first_name(),
            last_name=fake.last_name(),
            email=f"hy{tag}{n}@example.am",
            phone=phone,
            city=fake.city(),
            country_code="AM",
        )

    # -- Shopify ---------------------------------------------------------------------------

    def shopify_order(
        self, order_id: int, customer: Customer, lines: list[Line], *, currency: str = "USD"
    ) -> dict[str, Any]:
        subtotal = sum((Decimal(li.price) * li.quantity for li in lines), Decimal(0))
        created = datetime.now(UTC).isoformat(timespec="seconds")
        address = {
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "phone": customer.phone,
            "city": customer.city,
            "country_code": customer.country_code,
        }
        return {
            "id": order_id,
            "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
            "name": f"#{order_id % 100000}",
            "order_number": order_id % 100000,
            "email": customer.email,
            "contact_email": customer.email,
            "phone": None,
            "currency": currency,
            "presentment_currency": currency,
            "subtotal_price": str(subtotal),
            "total_price": str(subtotal),
            "current_total_price": str(subtotal),
            "total_discounts": "0.00",
            "discount_codes": [],
            "financial_status": "paid",
            "created_at": created,
            "processed_at": created,
            "test": False,
            "customer": {
                "id": customer.shop_customer_id,
                "email": customer.email,
                "phone": None,
                "first_name": customer.first_name,
                "last_name": customer.last_name,
                "default_address": address,
            },
            "billing_address": address,
            "shipping_address": address,
            "line_items": [
                {
                    "id": order_id * 100 + i,
                    "admin_graphql_api_id": f"gid://shopify/LineItem/{order_id * 100 + i}",
                    "sku": li.sku,
                    "product_id": 1000 + i,
                    "variant_id": None,
                    "title": li.title or li.sku,
                    "name": li.title or li.sku,
                    "vendor": None,
                    "quantity": li.quantity,
                    "price": li.price,
                    "total_discount": "0.00",
                }
                for i, li in enumerate(lines, start=1)
            ],
        }

    def shopify_delivery(
        self, topic: str, body: dict[str, Any], *, event_id: str
    ) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(body, ensure_ascii=False).encode()
        secret = self.secrets["VAFA_SHOPIFY_WEBHOOK_SECRET"].encode()
        signature = base64.b64encode(hmac.new(secret, raw, hashlib.sha256).digest()).decode()
        return raw, {
            "content-type": "application/json",
            "x-shopify-topic": topic,
            "x-shopify-hmac-sha256": signature,
            "x-shopify-shop-domain": self.shopify_domain,
            "x-shopify-api-version": "2026-07",
            "x-shopify-webhook-id": f"wh-{event_id}",
            "x-shopify-event-id": event_id,
            "x-shopify-triggered-at": datetime.now(UTC).isoformat(),
        }

    # -- WooCommerce -----------------------------------------------------------------------

    def woo_order(
        self,
        order_id: int,
        customer: Customer,
        lines: list[Line],
        *,
        status: str = "processing",
        currency: str = "AMD",
    ) -> dict[str, Any]:
        total = sum((Decimal(li.price) * li.quantity for li in lines), Decimal(0))
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
        return {
            "id": order_id,
            "status": status,
            "currency": currency,
            "date_created": now,
            "date_created_gmt": now,
            "date_modified": now,
            "date_modified_gmt": now,
            "discount_total": "0.00",
            "total": str(total),
            "customer_id": customer.shop_customer_id,
            "billing": {
                "first_name": customer.first_name,
                "last_name": customer.last_name,
                "city": customer.city,
                "country": customer.country_code,
                "email": customer.email,
                "phone": customer.phone,
            },
            "line_items": [
                {
                    "id": order_id * 100 + i,
                    "name": li.title or li.sku,
                    "product_id": 2000 + i,
                    "variation_id": 0,
                    "quantity": li.quantity,
                    "subtotal": str(Decimal(li.price) * li.quantity),
                    "total": str(Decimal(li.price) * li.quantity),
                    "sku": li.sku,
                    "price": float(
                        Decimal(li.price)
                    ),  # WooCommerce really sends a JSON number here
                }
                for i, li in enumerate(lines, start=1)
            ],
            "coupon_lines": [],
        }

    def woo_delivery(
        self, topic: str, body: dict[str, Any], *, delivery_id: str
    ) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(body, ensure_ascii=False).encode()
        secret = self.secrets["VAFA_WOOCOMMERCE_WEBHOOK_SECRET"].encode()
        signature = base64.b64encode(hmac.new(secret, raw, hashlib.sha256).digest()).decode()
        resource, _, event = topic.partition(".")
        return raw, {
            "content-type": "application/json",
            "x-wc-webhook-source": self.woo_source + "/",
            "x-wc-webhook-topic": topic,
            "x-wc-webhook-resource": resource,
            "x-wc-webhook-event": event,
            "x-wc-webhook-signature": signature,
            "x-wc-webhook-id": "12",
            "x-wc-webhook-delivery-id": delivery_id,
        }
