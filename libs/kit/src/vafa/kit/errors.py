"""RFC 9457 problem details for every error a service or the gateway returns.

Raise `Problem(...)` (or a subclass) from domain code; the handlers installed by
`install_problem_handlers` turn it, validation errors, HTTP errors and unexpected exceptions
into `application/problem+json`. Unexpected errors never leak their message or traceback.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://vafa.dev/problems/"

log = structlog.get_logger(__name__)


class ProblemModel(BaseModel):
    """The problem+json body, documented in every service's OpenAPI."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title or HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = f"{TYPE_BASE}{type}" if type and "://" not in type else (type or "about:blank")
        self.headers = headers or {}
        self.extensions = extensions


class NotFound(Problem):
    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(404, detail, type="not-found", **extensions)


class Conflict(Problem):
    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(409, detail, type="conflict", **extensions)


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    type: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _pointer(loc: tuple[Any, ...] | list[Any]) -> str:
    """A validation error location as a JSON pointer into the request ("/body/lines/0/sku")."""
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append(
            {
                "pointer": _pointer(err.get("loc", ())),
                "detail": err.get("msg", "invalid"),
                "type": err.get("type", "value_error"),
            }
        )
    return out


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            title=exc.title,
            type=exc.type,
            instance=request.url.path,
            headers=exc.headers,
            **exc.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        first = errors[0] if errors else None
        detail = f"{first['pointer']}: {first['detail']}" if first else "The request is invalid."
        return problem_response(
            422,
            detail,
            title="Your request is not valid",
            type=f"{TYPE_BASE}validation",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail: str | None = exc.detail if isinstance(exc.detail, str) else None
        if detail == HTTPStatus(exc.status_code).phrase:
            detail = None
        return problem_response(
            exc.status_code,
            detail,
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette runs this handler outermost, after the request-context middleware has
        # unwound, so the request id comes from the scope state that middleware left behind.
        request_id = getattr(request.state, "request_id", None)
        log.error("unhandled_error", path=request.url.path, request_id=request_id, exc_info=exc)
        return problem_response(
            500,
            "An unexpected error occurred. It has been logged; quote the request id to support.",
            instance=request.url.path,
            headers={"x-request-id": request_id} if request_id else None,
            request_id=request_id,
        )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ProblemModel, "content": {PROBLEM_JSON: {}}, "description": "Client error"},
    "5XX": {"model": ProblemModel, "content": {PROBLEM_JSON: {}}, "description": "Server error"},
}


def problem_media_type(doc: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents a `responses` model under application/json whatever media type is
    declared beside it; errors are application/problem+json, so move the schema there."""
    for item in (doc.get("paths") or {}).values():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            for status, response in (op.get("responses") or {}).items():
                content = response.get("content") if isinstance(response, dict) else None
                if str(status)[:1] not in ("4", "5") or not isinstance(content, dict):
                    continue
                plain = content.get("application/json")
                if PROBLEM_JSON in content and isinstance(plain, dict) and "schema" in plain:
                    content[PROBLEM_JSON] = {
                        **(content[PROBLEM_JSON] or {}),
                        "schema": plain["schema"],
                    }
                    del content["application/json"]
    return doc
