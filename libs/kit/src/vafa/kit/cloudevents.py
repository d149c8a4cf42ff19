"""The CloudEvents Kafka binding, binary mode, with protobuf payloads.

Headers carry the attributes (`ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time`,
`ce_subject`, `content-type`, `traceparent`); the record value is the serialised message.
`ce_type` is the protobuf message's full name, so a consumer finds the class from the header
alone (every generated module registers itself in the default descriptor pool on import).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

import vafa.events.v1  # noqa: F401  - registers every contract in the descriptor pool

CONTENT_TYPE = "application/protobuf"
SPECVERSION = "1.0"

Headers = list[tuple[str, bytes]]


class EventDecodeError(ValueError):
    """A record that is not a valid CloudEvent of a known type: it goes to the DLQ unretried."""


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    source: str
    type: str
    time: datetime
    subject: str
    message: Message
    traceparent: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def event_type(message: Message) -> str:
    return message.DESCRIPTOR.full_name


def timestamp(at: datetime) -> Timestamp:
    """A protobuf Timestamp for a contract's time field."""
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


def deterministic_id(*parts: str) -> str:
    """A stable event id from a business key (e.g. platform + webhook id), so the same outside
    event always gets the same ce_id and the inbox drops the copy."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "vafa:" + ":".join(parts)))


def encode(
    message: Message,
    *,
    source: str,
    subject: str = "",
    event_id: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
) -> tuple[Headers, bytes]:
    when = (time or datetime.now(UTC)).astimezone(UTC)
    headers: Headers = [
        ("ce_specversion", SPECVERSION.encode()),
        ("ce_id", (event_id or str(uuid.uuid4())).encode()),
        ("ce_source", source.encode()),
        ("ce_type", event_type(message).encode()),
        ("ce_time", when.isoformat().replace("+00:00", "Z").encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if subject:
        headers.append(("ce_subject", subject.encode()))
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return headers, message.SerializeToString(deterministic=True)


_classes: dict[str, type[Message]] = {}


def message_class(type_name: str) -> type[Message]:
    cls = _classes.get(type_name)
    if cls is None:
        try:
            descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
        except KeyError as exc:
            raise EventDecodeError(f"unknown ce_type {type_name!r}") from exc
        cls = message_factory.GetMessageClass(descriptor)
        _classes[type_name] = cls
    return cls


def decode(headers: Any, value: bytes | None) -> Envelope:
    h = {k: (v.decode() if isinstance(v, bytes | bytearray) else str(v)) for k, v in headers or ()}
    missing = [k for k in ("ce_specversion", "ce_id", "ce_source", "ce_type") if not h.get(k)]
    if missing:
        raise EventDecodeError(f"missing CloudEvents headers: {', '.join(missing)}")
    if h.get("content-type", CONTENT_TYPE) != CONTENT_TYPE:
        raise EventDecodeError(f"unsupported content-type {h['content-type']!r}")
    cls = message_class(h["ce_type"])
    msg = cls()
    try:
        msg.ParseFromString(value or b"")
    except DecodeError as exc:
        raise EventDecodeError(f"payload is not a valid {h['ce_type']}: {exc}") from exc
    try:
        when = datetime.fromisoformat(h["ce_time"]) if h.get("ce_time") else datetime.now(UTC)
    except ValueError as exc:
        raise EventDecodeError(f"ce_time is not RFC 3339: {h['ce_time']!r}") from exc
    known = {
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_subject",
        "content-type",
        "traceparent",
    }
    return Envelope(
        id=h["ce_id"],
        source=h["ce_source"],
        type=h["ce_type"],
        time=when,
        subject=h.get("ce_subject", ""),
        message=msg,
        traceparent=h.get("traceparent"),
        extra={k: v for k, v in h.items() if k not in known},
    )
