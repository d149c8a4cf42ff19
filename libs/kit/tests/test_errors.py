"""Every error a service returns is RFC 9457 problem+json, and unexpected ones leak nothing."""

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from vafa.kit.errors import Problem, install_problem_handlers
from vafa.kit.http import BodySizeLimitMiddleware, RequestContextMiddleware


class Body(BaseModel):
    phone: str = Field(min_length=5)


def make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=100,
        overrides={"post /upload": 1000, "POST /lists/{list_id}/import": 500},
    )
    app.add_middleware(RequestContextMiddleware)

    @app.post("/things")
    async def create(body: Body) -> dict[str, str]:
        return {"phone": body.phone}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.post("/lists/{list_id}/import")
    async def list_import(list_id: str, request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/conflict")
    async def conflict() -> None:
        raise Problem(409, "Already yours.", type="conflict", customer_id="c-1")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("password=hunter2 in a stack trace")

    return app


async def call(method: str, path: str, **kw: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.request(method, path, **kw)  # type: ignore[arg-type]


async def test_validation_error_points_at_the_field() -> None:
    r = await call("POST", "/things", json={"phone": "1"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["errors"][0]["pointer"] == "/body/phone" and body["detail"].startswith(
        "/body/phone"
    )


async def test_not_found_method_and_size() -> None:
    assert (await call("GET", "/nope")).json()["status"] == 404
    r = await call("GET", "/things")
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    r = await call(
        "POST", "/things", content=b"x" * 101, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["title"] == "Content Too Large"
    assert r.json()["limit_bytes"] == 100


async def test_a_route_with_its_own_body_limit() -> None:
    r = await call("POST", "/upload", content=b"x" * 900)
    assert r.status_code == 200 and r.json() == {"size": 900}
    r = await call("POST", "/upload", content=b"x" * 1001)
    assert r.status_code == 413 and r.json()["limit_bytes"] == 1000

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(11):
            yield b"x" * 100

    r = await call("POST", "/upload", content=chunks())
    assert r.status_code == 413 and r.json()["limit_bytes"] == 1000
    assert (await call("POST", "/things", content=b"x" * 101)).status_code == 413


async def test_a_templated_route_with_its_own_body_limit() -> None:
    assert (await call("POST", "/lists/a-1/import", content=b"x" * 450)).status_code == 200
    r = await call("POST", "/lists/a-1/import", content=b"x" * 501)
    assert r.status_code == 413 and r.json()["limit_bytes"] == 500
    # The template matches one path segment only, and whole paths only.
    assert (await call("POST", "/lists/a/b/import", content=b"x" * 450)).status_code == 413
    assert (await call("POST", "/lists/a-1/import/x", content=b"x" * 450)).status_code == 413


async def test_domain_problem_with_extension_members() -> None:
    r = await call("GET", "/conflict")
    assert r.status_code == 409
    assert r.json() == {
        "type": "https://vafa.dev/problems/conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "Already yours.",
        "instance": "/conflict",
        "customer_id": "c-1",
    }


async def test_unexpected_error_leaks_nothing_but_gives_the_request_id() -> None:
    r = await call("GET", "/boom", headers={"x-request-id": "req-123"})
    assert r.status_code == 500
    assert "hunter2" not in r.text and "RuntimeError" not in r.text
    assert r.json()["request_id"] == "req-123" and r.headers["x-request-id"] == "req-123"


def test_service_documents_errors_as_problem_json() -> None:
    from fastapi import APIRouter

    from vafa.kit.app import create_service_app
    from vafa.kit.settings import ServiceSettings

    router = APIRouter()

    @router.get("/v1/things/{thing_id}")
    async def read(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app = create_service_app(
        ServiceSettings(service_name="t"), title="t", description="t", routers=[router]
    )
    responses = app.openapi()["paths"]["/v1/things/{thing_id}"]["get"]["responses"]
    for status in ("4XX", "5XX"):
        assert list(responses[status]["content"]) == ["application/problem+json"]
        assert responses[status]["content"]["application/problem+json"]["schema"]["$ref"].endswith(
            "/ProblemModel"
        )
    assert "/healthz" not in app.openapi()["paths"]
