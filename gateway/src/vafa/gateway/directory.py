"""The services' OpenAPI documents, fetched lazily with retry and cached, and the route table
built from them.

Services may start after the gateway, so nothing here is needed at start-up: a background
warm-up keeps trying until every service has answered once, a request for a path no route
matches refreshes the documents when they are older than `refresh_after` seconds, and the
merged /openapi.json fetches what it is missing. Concurrent refreshes share one fetch. A
service that stops answering keeps its last document (its routes then answer 502, which says
more than 404).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from vafa.gateway.routing import Duplicate, Route, RouteTable, build_table

log = structlog.get_logger(__name__)

OPENAPI_PATH = "/openapi.json"


class ServiceDirectory:
    def __init__(
        self,
        services: Mapping[str, str],
        client: httpx.AsyncClient,
        *,
        refresh_after: float = 5.0,
        fetch_timeout: float = 3.0,
        reserved: Mapping[str, str] | None = None,
    ) -> None:
        self.services = dict(services)
        self.client = client
        self.refresh_after = refresh_after
        self.fetch_timeout = fetch_timeout
        self.reserved = dict(reserved or {})
        self._docs: dict[str, dict[str, Any]] = {}
        self._errors: dict[str, str] = {}
        self._refreshed_at = float("-inf")
        self._table = RouteTable()
        self.duplicates: list[Duplicate] = []
        # Bumped whenever the documents change, so the merged OpenAPI knows to rebuild.
        self.version = 0
        self._inflight: asyncio.Task[None] | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def table(self) -> RouteTable:
        return self._table

    def documents(self) -> list[tuple[str, dict[str, Any]]]:
        """The cached documents, in the configured (priority) order."""
        return [(name, self._docs[name]) for name in self.services if name in self._docs]

    def missing(self) -> list[str]:
        return [name for name in self.services if name not in self._docs]

    def errors(self) -> dict[str, str]:
        return dict(self._errors)

    def stale(self) -> bool:
        return time.monotonic() - self._refreshed_at >= self.refresh_after

    # -- fetching ----------------------------------------------------------------------------

    async def _fetch(self, name: str, attempts: int) -> dict[str, Any]:
        url = self.services[name] + OPENAPI_PATH
        delay = 0.2
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                r = await self.client.get(url, timeout=self.fetch_timeout)
                r.raise_for_status()
                doc = r.json()
                if not isinstance(doc, dict) or not isinstance(doc.get("paths", {}), dict):
                    raise ValueError("not an OpenAPI document")
                return doc
            except (httpx.HTTPError, ValueError) as exc:
                last = exc
                if attempt + 1 < attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        assert last is not None
        raise last

    async def _refresh(self, attempts: int) -> None:
        names = list(self.services)
        results = await asyncio.gather(
            *(self._fetch(n, attempts) for n in names), return_exceptions=True
        )
        changed = False
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if name not in self._errors:  # log a change of state, not every attempt
                    log.warning("service_openapi_unavailable", service=name, error=repr(result))
                self._errors[name] = repr(result)
                continue
            if self._errors.pop(name, None) is not None:
                log.info("service_openapi_available", service=name)
            if self._docs.get(name) != result:
                self._docs[name] = result
                changed = True
        self._refreshed_at = time.monotonic()
        if changed:
            table, duplicates = build_table(self.documents(), reserved=self.reserved)
            for dup in duplicates:
                if dup not in self.duplicates:
                    # Two owners for one path is a deployment error: make it impossible to miss.
                    log.error(
                        "duplicate_path",
                        path=dup.template,
                        service=dup.service,
                        owner=dup.owner,
                        detail=f"{dup}; the first owner keeps it",
                    )
            self._table, self.duplicates = table, duplicates
            self.version += 1
            log.info("routes_loaded", routes=len(table), services=[n for n, _ in self.documents()])

    async def refresh(self, attempts: int = 2) -> None:
        """Fetch every service's document; concurrent callers share one fetch."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._refresh(attempts))
        await asyncio.shield(self._inflight)

    async def ensure(self) -> None:
        """Fetch what is missing, unless that was just tried."""
        if self.missing() and self.stale():
            await self.refresh()

    async def resolve(self, path: str) -> Route | None:
        """The route for a path. Only a path that matches nothing waits for a refresh (at most
        one per `refresh_after`); a missing service is otherwise left to the warm-up, so a
        service that is down never slows the requests for the others."""
        route = self._table.match(path)
        if route is None and self.stale():
            await self.refresh()
            route = self._table.match(path)
        return route

    async def warm_up(self, *, max_interval: float = 15.0) -> None:
        """Runs in the background from start-up until every service has answered once."""
        interval = 0.5
        while True:
            try:
                await self.refresh(attempts=1)
            except Exception as exc:  # never let the warm-up die silently
                log.warning("openapi_warm_up_failed", error=repr(exc))
            if not self.missing():
                return
            await asyncio.sleep(interval)
            interval = min(interval * 2, max_interval)
