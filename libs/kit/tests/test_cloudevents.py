from datetime import UTC, datetime

import pytest

from vafa.events.v1 import shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.cloudevents import EventDecodeError


def test_round_trip_binary_mode() -> None:
    msg = shop_orders_pb2.OrderPaid(
        order=shop_orders_pb2.Order(order_ref="shopify:s:1", currency="IRR")
    )
    when = datetime(2026, 3, 20, 20, 30, tzinfo=UTC)  # Nowruz
    headers, value = cloudevents.encode(
        msg,
        source="/vafa/gateway",
        subject="shopify:s:1",
        event_id="e1",
        time=when,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    h = dict(headers)
    assert h["ce_specversion"] == b"1.0" and h["ce_type"] == b"vafa.events.v1.OrderPaid"
    assert h["content-type"] == b"application/protobuf" and h["ce_time"] == b"2026-03-20T20:30:00Z"
    env = cloudevents.decode(headers, value)
    assert (
        env.message == msg and env.id == "e1" and env.time == when and env.subject == "shopify:s:1"
    )


def test_deterministic_ids() -> None:
    assert cloudevents.deterministic_id(
        "shopify", "a.myshopify.com", "42"
    ) == cloudevents.deterministic_id("shopify", "a.myshopify.com", "42")
    assert cloudevents.deterministic_id("shopify", "a", "42") != cloudevents.deterministic_id(
        "woocommerce", "a", "42"
    )


@pytest.mark.parametrize(
    ("headers", "value", "message"),
    [
        ([("ce_id", b"x")], b"", "missing CloudEvents headers"),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"x"),
                ("ce_source", b"s"),
                ("ce_type", b"vafa.events.v1.Nope"),
            ],
            b"",
            "unknown ce_type",
        ),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"x"),
                ("ce_source", b"s"),
                ("ce_type", b"vafa.events.v1.OrderPaid"),
            ],
            b"\xff\xff\xff",
            "not a valid",
        ),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"x"),
                ("ce_source", b"s"),
                ("ce_type", b"vafa.events.v1.OrderPaid"),
                ("content-type", b"application/json"),
            ],
            b"",
            "unsupported content-type",
        ),
    ],
)
def test_undecodable_records_say_why(
    headers: list[tuple[str, bytes]], value: bytes, message: str
) -> None:
    with pytest.raises(EventDecodeError, match=message):
        cloudevents.decode(headers, value)
