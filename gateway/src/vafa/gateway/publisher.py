"""The gateway's one Kafka producer (kit.make_producer: idempotent, acks=all).

It starts with the app, but the gateway does not refuse to start while Kafka is down: the
proxy keeps working, and the producer is (re)started on the next publish. A publish that cannot
be acknowledged in time raises `PublishError`; the webhook answers 503 so the platform retries.
"""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from vafa.kit.cloudevents import Headers
from vafa.kit.kafka import make_producer
from vafa.kit.settings import KafkaSettings

log = structlog.get_logger(__name__)


class PublishError(Exception):
    """Kafka did not acknowledge the record."""


class EventPublisher:
    def __init__(self, settings: KafkaSettings, *, client_id: str = "vafa-gateway") -> None:
        self.settings = settings
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self, timeout: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self._ensure(), timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("kafka_producer_not_started", error=repr(exc))

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = make_producer(self.settings, client_id=self.client_id)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
                log.info("kafka_producer_started", bootstrap=self.settings.bootstrap_servers)
            return self._producer

    async def publish(
        self, topic: str, *, key: str, value: bytes, headers: Headers, timeout: float
    ) -> None:
        """Returns once every in-sync replica has the record (acks=all)."""
        try:
            async with asyncio.timeout(timeout):
                producer = await self._ensure()
                await producer.send_and_wait(topic, value=value, key=key.encode(), headers=headers)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise PublishError(repr(exc)) from exc

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
