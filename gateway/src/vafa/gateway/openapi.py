"""One OpenAPI 3.1 document for the whole platform, at /openapi.json (Swagger UI at /docs).

`merge_openapi` is pure: the gateway's own document plus each service's, in priority order.
- Every path appears once. A path (or one differing only in parameter names) that an earlier
  owner already has stays with that owner and is reported as a duplicate.
- Components are merged per section. Identical definitions are shared (every service has the
  same ProblemModel); a name that clashes with a different definition is renamed to
  `<service>_<Name>` and every `$ref` of that service is rewritten to match.
- Each service's operations are tagged with the service's name (their own tags are kept in
  `x-vafa-tags`), and there is one tag per service.
- One bearer security scheme applies everywhere, except on operations that say `security: []`
  (the webhook receivers, which are signed instead, and any public service route).
- Error responses are documented as `application/problem+json` with the ProblemModel schema.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic.json_schema import models_json_schema

from vafa.gateway.routing import operations, route_key
from vafa.kit.errors import problem_media_type

SECURITY_SCHEME = "bearer"
_REF = re.compile(r"^#/components/(?P<section>[^/]+)/(?P<name>.+)$")


@dataclass
class MergeResult:
    document: dict[str, Any]
    duplicates: list[str] = field(default_factory=list)
    # service -> {section/old name: new name}
    renamed: dict[str, dict[str, str]] = field(default_factory=dict)


def _rewrite_refs(node: Any, renames: Mapping[str, Mapping[str, str]]) -> Any:
    """A copy of `node` whose local component $refs follow `renames` (section -> old -> new)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                m = _REF.match(value)
                if m and m["name"] in renames.get(m["section"], {}):
                    value = f"#/components/{m['section']}/{renames[m['section']][m['name']]}"
                out[key] = value
            elif key == "mapping" and isinstance(value, dict):  # discriminator mappings
                out[key] = {
                    k: _rewrite_refs({"$ref": v}, renames)["$ref"] for k, v in value.items()
                }
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def _unique_name(name: str, service: str, taken: Mapping[str, Any]) -> str:
    candidate = f"{service}_{name}"
    n = 2
    while candidate in taken:
        candidate = f"{service}_{name}_{n}"
        n += 1
    return candidate


def _merge_components(
    merged: dict[str, Any], incoming: dict[str, Any], service: str
) -> dict[str, dict[str, str]]:
    """The renames a service needs so its components can sit next to `merged`'s."""
    renames: dict[str, dict[str, str]] = {}
    for section, defs in incoming.items():
        if not isinstance(defs, dict):
            continue
        target = merged.get(section, {})
        section_renames: dict[str, str] = {}
        renames[section] = section_renames
        # A definition that refers to a renamed one differs from its namesake even if its own
        # text is equal, so rename to a fixed point.
        while True:
            grew = False
            for name, definition in defs.items():
                if name in section_renames or name not in target:
                    continue
                if _rewrite_refs(definition, renames) != target[name]:
                    taken = {**target, **defs, **{v: 1 for v in section_renames.values()}}
                    section_renames[name] = _unique_name(name, service, taken)
                    grew = True
            if not grew:
                break
    return {s: r for s, r in renames.items() if r}


def merge_openapi(
    gateway: Mapping[str, Any],
    services: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    gateway_owner: str = "gateway",
) -> MergeResult:
    doc: dict[str, Any] = copy.deepcopy(dict(gateway))
    doc["openapi"] = "3.1.0"
    doc.setdefault("info", {"title": "Vafa", "version": "0.1.0"})
    doc.setdefault("paths", {})
    components: dict[str, Any] = doc.setdefault("components", {})
    problem_media_type(doc)
    result = MergeResult(doc)

    owners: dict[str, str] = {route_key(p): gateway_owner for p in doc["paths"]}
    operation_ids: set[str] = set()
    for item in doc["paths"].values():
        for op in operations(item).values():
            if isinstance(op.get("operationId"), str):
                operation_ids.add(op["operationId"])
    tags: list[dict[str, Any]] = list(doc.get("tags") or [])

    for service, original in services:
        sdoc: dict[str, Any] = copy.deepcopy(dict(original))
        problem_media_type(sdoc)
        renames = _merge_components(components, sdoc.get("components") or {}, service)
        if renames:
            sdoc = _rewrite_refs(sdoc, renames)
            result.renamed[service] = {
                f"{section}/{old}": new for section, r in renames.items() for old, new in r.items()
            }
        for section, defs in (sdoc.get("components") or {}).items():
            if not isinstance(defs, dict):
                continue
            target = components.setdefault(section, {})
            for name, definition in defs.items():
                new = renames.get(section, {}).get(name, name)
                target.setdefault(new, definition)

        served = False
        for template, item in (sdoc.get("paths") or {}).items():
            if not isinstance(item, dict):
                continue
            key = route_key(template)
            if key in owners:
                result.duplicates.append(
                    f"{template} of {service} is already served by {owners[key]}"
                )
                continue
            owners[key] = service
            item = {k: v for k, v in item.items() if k != "servers"}
            for op in operations(item).values():
                own_tags = op.pop("tags", None)
                if own_tags:
                    op["x-vafa-tags"] = own_tags
                op["tags"] = [service]
                op_id = op.get("operationId")
                if isinstance(op_id, str):
                    if op_id in operation_ids:
                        op_id = f"{service}_{op_id}"
                        op["operationId"] = op_id
                    operation_ids.add(op_id)
            doc["paths"][template] = item
            served = True
        if served:
            info = sdoc.get("info") or {}
            description = " — ".join(
                str(x) for x in (info.get("title"), info.get("description")) if x
            )
            tags.append({"name": service, "description": description or f"The {service} service."})

    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "A staff or shop API key (`Authorization: Bearer <key>`), or a club member's JWT "
            "for the /v1/club/ routes."
        ),
    }
    doc["security"] = [{SECURITY_SCHEME: []}]
    doc["tags"] = tags
    return result


# ---------------------------------------------------------------------------------------------
# The gateway's own document and the routes that serve the merged one.


def gateway_document(app: FastAPI, extra_models: Sequence[type[Any]] = ()) -> dict[str, Any]:
    """The gateway's own routes, plus models referenced only from `openapi_extra` bodies."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    if extra_models:
        _, defs = models_json_schema(
            [(m, "validation") for m in extra_models],
            ref_template="#/components/schemas/{model}",
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in defs.get("$defs", {}).items():
            schemas.setdefault(name, schema)
    return doc


router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi_json(request: Request) -> JSONResponse:
    state = request.app.state
    directory = state.directory
    await directory.ensure()
    cached = getattr(state, "merged_openapi", None)
    if cached is None or cached[0] != directory.version:
        result = merge_openapi(state.gateway_openapi, directory.documents())
        state.merged_openapi = (directory.version, result.document)
        cached = state.merged_openapi
    return JSONResponse(cached[1])


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{request.app.title} — docs")
