"""Which service serves a concrete path, from the path templates of the services' OpenAPI
documents. Pure: no I/O.

Matching is segment by segment. A literal segment beats a parameter segment at the same
position, leftmost first, so `/v1/customers/lookup` beats `/v1/customers/{customer_id}`, and
among templates that both match, the one with a literal earlier wins. Two templates that differ
only in their parameter names (`/v1/x/{id}` and `/v1/x/{x_id}`) are the same route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

_PARAM = re.compile(r"\{[^{}/]+\}")

# Specificity of a segment kind, lower wins.
_LITERAL, _PATTERN, _PARAMETER = 0, 1, 2


def route_key(template: str) -> str:
    """The template with its parameter names erased: equal keys are the same route."""
    return _PARAM.sub("{}", template)


@dataclass(frozen=True, slots=True)
class Segment:
    kind: int
    literal: str = ""
    pattern: re.Pattern[str] | None = None

    def matches(self, raw: str) -> bool:
        if not raw:
            return False
        if self.kind == _PARAMETER:
            return True
        value = unquote(raw)
        if self.kind == _LITERAL:
            return value == self.literal
        assert self.pattern is not None
        return self.pattern.fullmatch(value) is not None


def _segment(text: str) -> Segment:
    if _PARAM.fullmatch(text):
        return Segment(_PARAMETER)
    if _PARAM.search(text):
        parts = _PARAM.split(text)
        regex = "[^/]+".join(re.escape(p) for p in parts)
        return Segment(_PATTERN, pattern=re.compile(regex))
    return Segment(_LITERAL, literal=text)


@dataclass(frozen=True, slots=True)
class Route:
    template: str
    service: str
    methods: frozenset[str] = frozenset()
    # Methods whose operation declares `security: []`: callable without credentials.
    public_methods: frozenset[str] = frozenset()
    segments: tuple[Segment, ...] = field(default=(), compare=False)

    @classmethod
    def build(
        cls,
        template: str,
        service: str,
        methods: Iterable[str] = (),
        public_methods: Iterable[str] = (),
    ) -> Route:
        segments = tuple(_segment(s) for s in template.strip("/").split("/"))
        return cls(
            template=template,
            service=service,
            methods=frozenset(m.upper() for m in methods),
            public_methods=frozenset(m.upper() for m in public_methods),
            segments=segments,
        )

    @property
    def specificity(self) -> tuple[int, ...]:
        return tuple(s.kind for s in self.segments)

    def is_public(self, method: str) -> bool:
        return method.upper() in self.public_methods


@dataclass(frozen=True, slots=True)
class Duplicate:
    template: str
    service: str
    owner: str

    def __str__(self) -> str:
        return f"{self.template} of {self.service} is already served by {self.owner}"


class RouteTable:
    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._by_length: dict[int, list[Route]] = {}
        for route in routes:
            self._by_length.setdefault(len(route.segments), []).append(route)
        for bucket in self._by_length.values():
            bucket.sort(key=lambda r: r.specificity)

    def __len__(self) -> int:
        return sum(len(b) for b in self._by_length.values())

    def routes(self) -> list[Route]:
        return [r for b in self._by_length.values() for r in b]

    def match(self, path: str) -> Route | None:
        """The best route for a concrete path (percent-encoded as it came in, no query)."""
        parts = path.strip("/").split("/") if path.strip("/") else []
        if path.endswith("/") and path != "/":
            return None  # no template ends in a slash; let the caller answer 404
        for route in self._by_length.get(len(parts), ()):
            if all(seg.matches(raw) for seg, raw in zip(route.segments, parts, strict=True)):
                return route
        return None


def operations(path_item: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {m: op for m, op in path_item.items() if m in HTTP_METHODS and isinstance(op, dict)}


def build_table(
    documents: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    reserved: Mapping[str, str] | None = None,
) -> tuple[RouteTable, list[Duplicate]]:
    """A route table from (service, OpenAPI document) pairs, in priority order: a path that an
    earlier service (or `reserved`, the gateway's own paths: template -> owner) already has
    stays with its first owner and is reported as a duplicate."""
    owners: dict[str, str] = {route_key(t): owner for t, owner in (reserved or {}).items()}
    routes: list[Route] = []
    duplicates: list[Duplicate] = []
    for service, doc in documents:
        paths = doc.get("paths") or {}
        for template, item in paths.items():
            if not isinstance(template, str) or not isinstance(item, dict):
                continue
            key = route_key(template)
            if key in owners:
                duplicates.append(Duplicate(template, service, owners[key]))
                continue
            owners[key] = service
            ops = operations(item)
            public = [m for m, op in ops.items() if op.get("security") == []]
            routes.append(Route.build(template, service, ops.keys(), public))
    return RouteTable(routes), duplicates
