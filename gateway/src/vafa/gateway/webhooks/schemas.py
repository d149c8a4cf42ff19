"""The Vafa order schema for Standard Webhooks senders, and the receivers' answers.

A shop platform without a Vafa plug-in of its own (a custom storefront, a headless shop, an
ERP) sends orders as Standard Webhooks (https://www.standardwebhooks.com): the envelope
`{type, timestamp, data}` signed with `webhook-id`, `webhook-timestamp` and
`webhook-signature`. `type` is one of `order.placed`, `order.paid`, `order.fulfilled`,
`order.cancelled`, `order.refunded`, and `data` is a `VafaOrder`. Money is always an integer in the currency's
minor units (cents for USD, rials for IRR, luma for AMD) next to the order's ISO 4217
`currency`; there are no decimal strings and no floats. Ids may be strings or integers and are
kept as strings (integers are read exactly, whatever their size).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from vafa.kit.money import MoneyError, exponent

ORDER_TYPES = (
    "order.placed",
    "order.paid",
    "order.fulfilled",
    "order.cancelled",
    "order.refunded",
)


def _id_to_str(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Id = Annotated[
    str,
    BeforeValidator(_id_to_str),
    Field(min_length=1, max_length=255, description="A string, or an integer kept exactly."),
]
OptionalId = Annotated[str, BeforeValidator(_id_to_str), Field(default="", max_length=255)]
Minor = Annotated[
    StrictInt,
    Field(ge=0, le=10**17, description="Integer amount in the currency's minor units."),
]
Text = Annotated[str, Field(default="", max_length=1000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class VafaCustomer(_Strict):
    """The buyer as the shop knows them. Phones are passed on exactly as given."""

    shop_customer_id: OptionalId = Field(
        default="", description="The shop's customer id; empty for a guest checkout."
    )
    email: Text = ""
    phone: Text = Field(default="", description="As the shop has it; profile normalises it.")
    first_name: Text = ""
    last_name: Text = ""
    country_code: str = Field(
        default="",
        pattern=r"^([A-Z]{2})?$",
        description="ISO 3166-1 alpha-2 of the billing address.",
    )
    city: Text = ""


class VafaLineItem(_Strict):
    line_id: Id = Field(description="Unique within the order.")
    sku: Text = ""
    product_id: OptionalId = ""
    title: Text = ""
    vendor: Text = ""
    quantity: StrictInt = Field(ge=0, le=1_000_000)
    unit_price_minor: Minor
    total_minor: Minor = Field(description="Line total after line discounts, in minor units.")


class VafaRefundLine(_Strict):
    line_id: Id
    sku: Text = ""
    quantity: StrictInt = Field(ge=0, le=1_000_000)
    amount_minor: Minor
    restock: StrictBool = Field(
        default=False, description="True when the units go back on the shelf."
    )


class VafaRefund(_Strict):
    refund_id: Id
    amount_minor: Minor = Field(description="The money returned, in minor units.")
    lines: list[VafaRefundLine] = Field(default_factory=list, max_length=1000)
    refunded_at: AwareDatetime | None = None


class VafaOrder(_Strict):
    """`data` of an `order.*` Standard Webhook."""

    shop: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[^\s:]+$",
        description="The shop's domain or another stable name; scopes its ids. No ':' or spaces.",
        examples=["shop.example.ir"],
    )
    order_id: Id
    order_number: Text = Field(default="", description='Human order number such as "#1001".')
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["IRR"])
    total_minor: Minor
    subtotal_minor: Minor | None = None
    discount_total_minor: Minor = 0
    discount_codes: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        default_factory=list, max_length=100
    )
    customer: VafaCustomer = Field(default_factory=VafaCustomer)
    line_items: list[VafaLineItem] = Field(default_factory=list, max_length=1000)
    financial_status: Text = ""
    placed_at: AwareDatetime | None = None
    test: StrictBool = False
    cancel_reason: Text = Field(default="", description="For order.cancelled.")
    refund: VafaRefund | None = Field(default=None, description="Required for order.refunded.")

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, v: str) -> str:
        try:
            exponent(v)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
        return v


class StandardOrderWebhook(_Strict):
    """A Standard Webhooks message carrying a Vafa order."""

    type: Literal[
        "order.placed", "order.paid", "order.fulfilled", "order.cancelled", "order.refunded"
    ]
    timestamp: AwareDatetime
    data: VafaOrder

    @model_validator(mode="after")
    def _refund_present(self) -> StandardOrderWebhook:
        if self.type == "order.refunded" and self.data.refund is None:
            raise ValueError("data.refund is required for order.refunded")
        return self


class StandardEnvelope(_Strict):
    """Just enough of any Standard Webhooks message to decide whether it is an order."""

    type: str = Field(min_length=1, max_length=255)
    timestamp: datetime | None = None
    data: Any = None


class WebhookReceipt(BaseModel):
    """What a webhook receiver answers. `accepted`: the event is durably in Kafka.
    `ignored`: the signature was good but the delivery carries nothing Vafa uses."""

    status: Literal["accepted", "ignored"]
    event_id: str | None = Field(default=None, description="The CloudEvents id (ce_id).")
    type: str | None = Field(default=None, examples=["vafa.events.v1.OrderPaid"])
    order_ref: str | None = Field(default=None, examples=["shopify:jsmith.myshopify.com:1001"])
    reason: str | None = None
