"""Builders for the feature store's tests: events as the consumer hands them to a batch handler,
and a spy on the evaluation seam that records which customers were re-evaluated (and still
calls the real evaluation)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, profile_pb2, shop_orders_pb2
from vafa.kit.cloudevents import Envelope, event_type
from vafa.segmentation.segments import evaluation

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def ts(at: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(at)
    return t


def envelope(message: Message, *, at: datetime = NOW, event_id: str | None = None) -> Envelope:
    return Envelope(
        id=event_id or str(uuid.uuid4()),
        source="/vafa/test",
        type=event_type(message),
        time=at,
        subject="",
        message=message,
    )


def money(amount: int, currency: str = "USD") -> common_pb2.Money:
    return common_pb2.Money(amount_minor=amount, currency=currency)


def line(
    line_id: str, sku: str, amount: int, *, quantity: int = 1, vendor: str = ""
) -> shop_orders_pb2.LineItem:
    return shop_orders_pb2.LineItem(
        line_id=line_id,
        sku=sku,
        vendor=vendor,
        quantity=quantity,
        unit_price=money(amount // max(quantity, 1)),
        total=money(amount),
    )


def order(
    ref: str,
    total: int,
    *,
    placed_at: datetime = NOW,
    lines: list[shop_orders_pb2.LineItem] | None = None,
    discount: int = 0,
    codes: tuple[str, ...] = (),
    currency: str = "USD",
) -> shop_orders_pb2.Order:
    return shop_orders_pb2.Order(
        order_ref=ref,
        currency=currency,
        total=money(total, currency),
        discount_total=money(discount, currency),
        discount_codes=list(codes),
        line_items=lines or [],
        placed_at=ts(placed_at),
    )


KINDS = {
    "placed": profile_pb2.PURCHASE_KIND_PLACED,
    "paid": profile_pb2.PURCHASE_KIND_PAID,
    "fulfilled": profile_pb2.PURCHASE_KIND_FULFILLED,
    "cancelled": profile_pb2.PURCHASE_KIND_CANCELLED,
    "refunded": profile_pb2.PURCHASE_KIND_REFUNDED,
}


def purchase(
    customer: uuid.UUID,
    kind: str,
    o: shop_orders_pb2.Order,
    *,
    refund_id: str = "",
    refund: int = 0,
    at: datetime = NOW,
) -> Envelope:
    msg = profile_pb2.PurchaseAttributed(
        customer_id=str(customer), kind=KINDS[kind], order=o, source_event_id=f"shop-{kind}"
    )
    if kind == "refunded":
        msg.refund.CopyFrom(
            shop_orders_pb2.Refund(refund_id=refund_id, amount=money(refund, o.currency))
        )
    return envelope(msg, at=at)


def snapshot(customer: uuid.UUID, **fields: Any) -> profile_pb2.CustomerSnapshot:
    return profile_pb2.CustomerSnapshot(customer_id=str(customer), **fields)


def registered(customer: uuid.UUID, **fields: Any) -> Envelope:
    return envelope(
        profile_pb2.CustomerRegistered(customer=snapshot(customer, **fields), source="api")
    )


async def features(session: AsyncSession, customer: uuid.UUID) -> dict[str, Any]:
    row = (
        (
            await session.execute(
                text("SELECT * FROM features WHERE customer_id = :id"), {"id": customer}
            )
        )
        .mappings()
        .one()
    )
    return dict(row)


async def lines_of(session: AsyncSession, customer: uuid.UUID) -> list[dict[str, Any]]:
    rows = await session.execute(
        text(
            "SELECT order_ref, line_id, sku, brand, category, tags, quantity, amount_minor, "
            "discounted FROM purchase_lines WHERE customer_id = :id ORDER BY order_ref, line_id"
        ),
        {"id": customer},
    )
    return [dict(r) for r in rows.mappings()]


@dataclass
class Reevaluations:
    calls: list[tuple[frozenset[uuid.UUID], str, datetime]] = field(default_factory=list)

    @property
    def customers(self) -> set[uuid.UUID]:
        return {c for ids, _, _ in self.calls for c in ids}

    def clear(self) -> None:
        self.calls.clear()


@pytest.fixture
def reevaluations(monkeypatch: pytest.MonkeyPatch) -> Reevaluations:
    """Records every call of the evaluation seam, then runs the real evaluation."""
    spy = Reevaluations()
    real = evaluation.reevaluate_customers

    async def recording(
        session: AsyncSession, *, customer_ids: Collection[uuid.UUID], now: datetime, cause: str
    ) -> None:
        spy.calls.append((frozenset(customer_ids), cause, now))
        await real(session, customer_ids=customer_ids, now=now, cause=cause)

    monkeypatch.setattr(evaluation, "reevaluate_customers", recording)
    return spy
