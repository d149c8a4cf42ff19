"""JSON logs (structlog) that carry the request id and the W3C trace id of whatever is being
handled, whether an HTTP request or a Kafka record."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

import structlog


def configure_logging(level: str = "INFO", *, json: bool = True, service: str = "vafa") -> None:
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        # Cached for speed: a test that captures logs gives the module a fresh logger inside
        # structlog.testing.capture_logs (a cached one does not see the reconfiguration).
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries that use stdlib logging (uvicorn, aiokafka, alembic) go to stderr as plain lines
    # at WARNING and above, so they do not drown the JSON stream.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )


def trace_id_from_traceparent(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent header (version-traceid-parentid-flags)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return None


# The traceparent of whatever is being handled now; the outbox copies it onto the events it
# writes, so a trace runs from a webhook through every service it touches.
current_traceparent: ContextVar[str | None] = ContextVar("current_traceparent", default=None)
