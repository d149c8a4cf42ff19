"""Concurrent reservation requests of one API process, applied together as one unit of work.

Every reservation holds its SKUs' row locks from the lock to the commit, some seven round trips;
requests for the same hot SKUs would queue on those locks one transaction at a time. Instead,
requests that arrive while a unit of work is running wait for the next one, which takes them
all (up to `max_batch`) through `stock.batch.apply` in order: one set of locks, one write, one
commit for many reservations (group commit). Each request still gets its own outcome: a refused
one (`Book.refuse_softly`) leaves nothing behind and does not fail the others; a unit that fails
outright is retried one request per transaction, so one bad request costs only itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from vafa.inventory.stock import batch
from vafa.inventory.stock.rules import Order, Outcome, Reserve
from vafa.kit.db import Database
from vafa.kit.logs import current_traceparent

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Pending:
    command: Reserve
    traceparent: str | None
    future: asyncio.Future[tuple[Outcome, Order]]


class Combiner:
    def __init__(self, db: Database, *, default_threshold: int, max_batch: int = 200) -> None:
        self._db = db
        self._threshold = default_threshold
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._drainer: asyncio.Task[None] | None = None

    async def reserve(self, command: Reserve) -> tuple[Outcome, Order]:
        """Applies the reservation (strict) with whatever else is waiting; its outcome and the
        order as the unit of work left it."""
        future: asyncio.Future[tuple[Outcome, Order]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(command, current_traceparent.get(), future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="reservation-combiner")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            # One turn of the event loop: requests already parsed in this turn join the unit.
            await asyncio.sleep(0)
            taken, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            try:
                results = await self._apply(taken)
            except Exception:
                log.warning("combined_reservations_failed_replaying_singly", size=len(taken))
                for p in taken:
                    try:
                        [result] = await self._apply([p])
                    except Exception as exc:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    else:
                        if not p.future.done():
                            p.future.set_result(result)
                continue
            for p, result in zip(taken, results, strict=True):
                if not p.future.done():  # a request whose client went away
                    p.future.set_result(result)

    async def _apply(self, pending: list[_Pending]) -> list[tuple[Outcome, Order]]:
        commands = [p.command for p in pending]
        async with self._db.sessionmaker() as session, session.begin():
            result = await batch.apply(
                session,
                commands,
                default_threshold=self._threshold,
                traceparents=[p.traceparent for p in pending],
                refuse_softly=True,
            )
        orders = result.book.orders
        return [(o, orders[c.order_ref]) for o, c in zip(result.outcomes, commands, strict=True)]
