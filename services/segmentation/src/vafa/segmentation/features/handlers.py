"""Batch handlers of the feature store: a polled batch's new events, in log order, read and
checked first (a broken event raises, so the consumer replays the batch one event at a time and
dead-letters that one), then applied set-based, then the customers whose features changed are
re-evaluated against every segment in the same transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Iterable
from contextlib import suppress
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import inventory_pb2, loyalty_pb2, profile_pb2
from vafa.kit import identity
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler
from vafa.kit.db import generic_plans
from vafa.kit.worker import Subscription
from vafa.segmentation.config import Settings
from vafa.segmentation.features import customers, dates, service
from vafa.segmentation.features.customers import (
    ConsentChange,
    Erase,
    Interaction,
    Merge,
    Snapshot,
    Step,
    Unmerge,
)
from vafa.segmentation.features.service import Kind, Line, LoyaltyChange, ProductRow, Purchase
from vafa.segmentation.segments import evaluation

Clock = Callable[[], datetime]

PURCHASES_TOPIC = "profile.purchases.v1"
CUSTOMERS_TOPIC = "profile.customers.v1"
LOYALTY_TOPIC = "loyalty.events.v1"
CATALOG_TOPIC = "inventory.catalog.v1"

PURCHASE_TYPES = [profile_pb2.PurchaseAttributed]
CUSTOMER_TYPES = [
    profile_pb2.CustomerRegistered,
    profile_pb2.CustomerUpdated,
    profile_pb2.ConsentChanged,
    profile_pb2.InteractionRecorded,
    profile_pb2.CustomerMerged,
    profile_pb2.CustomerUnmerged,
    profile_pb2.CustomerErased,
]
LOYALTY_TYPES = [
    loyalty_pb2.PointsEarned,
    loyalty_pb2.PointsReversed,
    loyalty_pb2.PointsRedeemed,
    loyalty_pb2.PointsExpired,
    loyalty_pb2.PointsAdjusted,
    loyalty_pb2.PointsUnlocked,
    loyalty_pb2.TierChanged,
    loyalty_pb2.ReferralCompleted,
    loyalty_pb2.CouponRedeemed,
]
CATALOG_TYPES = [inventory_pb2.ProductUpserted]

_KINDS = {
    profile_pb2.PURCHASE_KIND_PLACED: Kind.placed,
    profile_pb2.PURCHASE_KIND_PAID: Kind.paid,
    profile_pb2.PURCHASE_KIND_FULFILLED: Kind.fulfilled,
    profile_pb2.PURCHASE_KIND_CANCELLED: Kind.cancelled,
    profile_pb2.PURCHASE_KIND_REFUNDED: Kind.refunded,
}
_CONSENTS = {
    profile_pb2.CONSENT_CHANNEL_SMS: "consent_sms",
    profile_pb2.CONSENT_CHANNEL_EMAIL: "consent_email",
    profile_pb2.CONSENT_CHANNEL_PHONE: "consent_phone",
    profile_pb2.CONSENT_CHANNEL_PUSH: "consent_push",
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{what} is not a customer id: {value!r}") from None


def _time(ts: Timestamp, has: bool, default: datetime) -> datetime:
    return ts.ToDatetime(tzinfo=UTC) if has else default


async def _reevaluate(session: AsyncSession, changed: Collection[uuid.UUID], now: datetime) -> None:
    if changed:
        await evaluation.reevaluate_customers(
            session, customer_ids=sorted(changed), now=now, cause="event"
        )


# --- profile.purchases.v1 ---------------------------------------------------------------


def read_purchase(env: Envelope) -> Purchase:
    msg = env.message
    if not isinstance(msg, profile_pb2.PurchaseAttributed):
        raise TypeError(f"not a PurchaseAttributed: {env.type}")
    kind = _KINDS.get(msg.kind)
    if kind is None:
        raise ValueError(f"PurchaseAttributed of unknown kind {msg.kind}")
    order = msg.order
    if not order.order_ref:
        raise ValueError("PurchaseAttributed without an order_ref")
    refund_id = ""
    refund_minor = 0
    at = env.time
    if kind is Kind.refunded:
        # A refund without its own id is keyed by the shop event it came from.
        refund_id = msg.refund.refund_id or msg.source_event_id or env.id
        refund_minor = msg.refund.amount.amount_minor
        at = _time(msg.refund.refunded_at, msg.refund.HasField("refunded_at"), env.time)
    lines = tuple(
        Line(
            line_id=li.line_id,
            sku=li.sku,
            vendor=li.vendor,
            quantity=li.quantity,
            amount_minor=li.total.amount_minor
            if li.HasField("total")
            else li.unit_price.amount_minor * li.quantity,
        )
        for li in order.line_items
    )
    return Purchase(
        kind=kind,
        customer_id=_uuid(msg.customer_id, "customer_id"),
        order_ref=order.order_ref,
        at=at,
        placed_at=_time(order.placed_at, order.HasField("placed_at"), env.time),
        currency=order.currency or order.total.currency,
        total_minor=order.total.amount_minor,
        discount_minor=order.discount_total.amount_minor,
        discounted=order.discount_total.amount_minor > 0 or len(order.discount_codes) > 0,
        lines=lines,
        refund_id=refund_id,
        refund_minor=refund_minor,
    )


def purchases_handler(settings: Settings, *, clock: Clock = _utcnow) -> BatchHandler:
    async def on_purchases(session: AsyncSession, envelopes: list[Envelope]) -> None:
        await generic_plans(session)
        purchases = [read_purchase(env) for env in envelopes]
        now = clock()
        changed = await service.apply_purchases(
            session, purchases, now=now, timezone=settings.timezone
        )
        await _reevaluate(session, changed, now)

    return on_purchases


# --- profile.customers.v1 ---------------------------------------------------------------


def _identities(emails: Iterable[str], phones: Iterable[str]) -> list[str]:
    """Profile sends them normalised already; written again the kit's way so that a CSV's
    "0912..." and a snapshot's "+98912..." meet, and anything malformed is left out."""
    out = []
    for email in emails:
        with suppress(identity.InvalidEmail):
            out.append(identity.normalise_email(email))
    for phone in phones:
        with suppress(identity.InvalidPhone):  # E.164 needs no region ("ZZ": unknown)
            out.append(identity.normalise_phone(phone, region="ZZ"))
    return out


def _field_value(raw: str) -> str:
    """Custom field values arrive JSON-encoded; kept as text ("fantasy", "3", "true")."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def read_snapshot(c: profile_pb2.CustomerSnapshot) -> Snapshot:
    consents: dict[str, bool] = {}
    for k in c.consents:
        column = _CONSENTS.get(k.channel)
        if column is not None:
            consents[column] = k.granted
    identities = _identities(c.emails, c.phones)
    return Snapshot(
        customer_id=_uuid(c.customer_id, "customer.customer_id"),
        kind=c.kind,
        lifecycle_stage=c.lifecycle_stage,
        gender=c.gender,
        birth_date=dates.parse_birth_date(c.birth_date),
        effective_dates=[
            {
                "date_id": d.date_id,
                "kind": d.kind,
                "label": d.label,
                "calendar": d.calendar or "gregorian",
                "year": d.year,
                "month": d.month,
                "day": d.day,
                "related_person": d.related_person,
            }
            for d in c.effective_dates
        ],
        country_code=c.country_code.upper(),
        province=c.province,
        city=c.city,
        education=c.education,
        acquisition_channel=c.acquisition_channel,
        acquisition_campaign=c.acquisition_campaign,
        referred_by_code=c.referred_by_code,
        club_status=c.club_status,
        household_id=c.household_id,
        tags=list(dict.fromkeys(c.tags)),
        custom_fields={k: _field_value(v) for k, v in sorted(c.custom_fields.items())},
        consents=consents,
        registered_at=c.created_at.ToDatetime(tzinfo=UTC) if c.HasField("created_at") else None,
        identities=identities,
    )


def read_customer_step(env: Envelope) -> Step:
    msg = env.message
    if isinstance(msg, profile_pb2.CustomerRegistered | profile_pb2.CustomerUpdated):
        return read_snapshot(msg.customer)
    if isinstance(msg, profile_pb2.ConsentChanged):
        column = _CONSENTS.get(msg.consent.channel)
        if column is None:
            raise ValueError(f"ConsentChanged of unknown channel {msg.consent.channel}")
        return ConsentChange(_uuid(msg.customer_id, "customer_id"), column, msg.consent.granted)
    if isinstance(msg, profile_pb2.InteractionRecorded):
        return Interaction(
            _uuid(msg.customer_id, "customer_id"),
            msg.kind,
            _time(msg.occurred_at, msg.HasField("occurred_at"), env.time),
        )
    if isinstance(msg, profile_pb2.CustomerMerged):
        return Merge(_uuid(msg.survivor_id, "survivor_id"), _uuid(msg.merged_id, "merged_id"))
    if isinstance(msg, profile_pb2.CustomerUnmerged):
        return Unmerge(_uuid(msg.survivor_id, "survivor_id"), _uuid(msg.restored_id, "restored_id"))
    if isinstance(msg, profile_pb2.CustomerErased):
        return Erase(_uuid(msg.customer_id, "customer_id"))
    raise TypeError(f"unexpected event: {env.type}")


def customers_handler(settings: Settings, *, clock: Clock = _utcnow) -> BatchHandler:
    zone = ZoneInfo(settings.timezone)

    async def on_customers(session: AsyncSession, envelopes: list[Envelope]) -> None:
        await generic_plans(session)
        steps = [read_customer_step(env) for env in envelopes]
        now = clock()
        changed = await customers.apply_customer_steps(
            session,
            steps,
            now=now,
            timezone=settings.timezone,
            calendar=settings.calendar,
            today=now.astimezone(zone).date(),
        )
        await _reevaluate(session, changed, now)

    return on_customers


# --- loyalty.events.v1 ------------------------------------------------------------------


def read_loyalty(envelopes: list[Envelope]) -> dict[uuid.UUID, LoyaltyChange]:
    changes: dict[uuid.UUID, LoyaltyChange] = {}

    def of(value: str, what: str) -> LoyaltyChange:
        return changes.setdefault(_uuid(value, what), LoyaltyChange())

    for env in envelopes:
        msg = env.message
        if isinstance(
            msg,
            loyalty_pb2.PointsEarned
            | loyalty_pb2.PointsReversed
            | loyalty_pb2.PointsRedeemed
            | loyalty_pb2.PointsExpired
            | loyalty_pb2.PointsAdjusted
            | loyalty_pb2.PointsUnlocked,
        ):
            of(msg.customer_id, "customer_id").balance = msg.balance
        elif isinstance(msg, loyalty_pb2.TierChanged):
            of(msg.customer_id, "customer_id").tier = msg.tier
        elif isinstance(msg, loyalty_pb2.ReferralCompleted):
            of(msg.referrer_id, "referrer_id").referrals += 1
            of(msg.referred_id, "referred_id")  # named: gets a row
        elif isinstance(msg, loyalty_pb2.CouponRedeemed):
            of(msg.customer_id, "customer_id").coupons += 1
        else:
            raise TypeError(f"unexpected event: {env.type}")
    return changes


def loyalty_handler(settings: Settings, *, clock: Clock = _utcnow) -> BatchHandler:
    async def on_loyalty(session: AsyncSession, envelopes: list[Envelope]) -> None:
        await generic_plans(session)
        changes = read_loyalty(envelopes)
        now = clock()
        await _reevaluate(session, await service.apply_loyalty(session, changes), now)

    return on_loyalty


# --- inventory.catalog.v1 ---------------------------------------------------------------


def read_product(env: Envelope) -> ProductRow:
    msg = env.message
    if not isinstance(msg, inventory_pb2.ProductUpserted):
        raise TypeError(f"not a ProductUpserted: {env.type}")
    if not msg.sku:
        raise ValueError("ProductUpserted without a sku")
    return ProductRow(
        sku=msg.sku,
        name=msg.name,
        brand=msg.brand,
        category=msg.category,
        tags=list(dict.fromkeys(msg.tags)),
        updated_at=_time(msg.updated_at, msg.HasField("updated_at"), env.time),
    )


def catalog_handler(settings: Settings, *, clock: Clock = _utcnow) -> BatchHandler:
    async def on_products(session: AsyncSession, envelopes: list[Envelope]) -> None:
        await generic_plans(session)
        rows = [read_product(env) for env in envelopes]
        now = clock()
        await _reevaluate(session, await service.apply_products(session, rows), now)

    return on_products


def subscriptions(settings: Settings) -> list[Subscription]:
    """A consumer group per topic, so a slow catalogue relabel never holds up purchases."""
    return [
        Subscription(
            "segmentation.purchases",
            [PURCHASES_TOPIC],
            batch_handler=purchases_handler(settings),
            types=PURCHASE_TYPES,
        ),
        Subscription(
            "segmentation.customers",
            [CUSTOMERS_TOPIC],
            batch_handler=customers_handler(settings),
            types=CUSTOMER_TYPES,
        ),
        Subscription(
            "segmentation.loyalty",
            [LOYALTY_TOPIC],
            batch_handler=loyalty_handler(settings),
            types=LOYALTY_TYPES,
        ),
        Subscription(
            "segmentation.catalog",
            [CATALOG_TOPIC],
            batch_handler=catalog_handler(settings),
            types=CATALOG_TYPES,
        ),
    ]
