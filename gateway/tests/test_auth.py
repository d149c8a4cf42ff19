"""API keys and member tokens: the Authenticator on its own, then through the app to a real
(small) service that shows what it received."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import jwt
import pytest

from vafa.gateway.auth import Authenticator
from vafa.gateway.config import ApiKey
from vafa.gateway.testing import assert_problem
from vafa.kit.auth import ANONYMOUS, MEMBER_AUDIENCE, issue_member_token
from vafa.kit.errors import Problem

SECRET = "a-member-token-secret-of-32-bytes!!"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def authenticator() -> Authenticator:
    return Authenticator(
        [
            ApiKey(name="admin", role="admin", key_sha256=sha("k-admin")),
            ApiKey(name="storefront", role="shop", key_sha256=sha("k-shop")),
            ApiKey(name="mina", role="marketer", key_sha256=sha("k-marketer").upper()),
        ],
        SECRET,
    )


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_api_keys_map_to_staff_and_shop_principals(authenticator: Authenticator) -> None:
    admin = authenticator.principal(bearer("k-admin"))
    assert (admin.kind, admin.id, admin.roles) == ("staff", "admin", frozenset({"admin"}))
    shop = authenticator.principal(bearer("k-shop"))
    assert (shop.kind, shop.id, shop.roles) == ("shop", "storefront", frozenset({"shop"}))
    marketer = authenticator.principal("bearer  k-marketer ")  # scheme is case-insensitive
    assert (marketer.kind, marketer.roles) == ("staff", frozenset({"marketer"}))
    assert authenticator.principal(None) is ANONYMOUS
    assert authenticator.principal("") is ANONYMOUS


@pytest.mark.parametrize(
    "header", ["Bearer nope", "Bearer ", "Basic azphZG1pbg==", "k-admin", "Bearer k-admi"]
)
def test_bad_credentials_are_401_with_a_challenge(
    authenticator: Authenticator, header: str
) -> None:
    with pytest.raises(Problem) as exc:
        authenticator.principal(header)
    assert exc.value.status == 401
    assert exc.value.headers["WWW-Authenticate"].startswith('Bearer realm="vafa"')
    assert 'error="invalid_token"' in exc.value.headers["WWW-Authenticate"]


def test_member_tokens(authenticator: Authenticator) -> None:
    member = authenticator.principal(bearer(issue_member_token("cust-7", secret=SECRET)))
    assert (member.kind, member.id, member.roles) == ("member", "cust-7", frozenset())

    expired = issue_member_token("cust-7", secret=SECRET, ttl_seconds=-60)
    with pytest.raises(Problem, match="expired") as exc:
        authenticator.principal(bearer(expired))
    assert exc.value.status == 401

    forged = issue_member_token("cust-7", secret="another-secret-of-32-bytes-length!")
    wrong_audience = jwt.encode(
        {"sub": "cust-7", "aud": "elsewhere", "iss": "vafa", "exp": int(time.time()) + 60},
        SECRET,
        algorithm="HS256",
    )
    no_expiry = jwt.encode(
        {"sub": "cust-7", "aud": MEMBER_AUDIENCE, "iss": "vafa"}, SECRET, algorithm="HS256"
    )
    for token in (forged, wrong_audience, no_expiry, "a.b.c"):
        with pytest.raises(Problem) as exc:
            authenticator.principal(bearer(token))
        assert exc.value.status == 401


def test_member_tokens_need_the_jwt_secret() -> None:
    no_secret = Authenticator([], "")
    with pytest.raises(Problem) as exc:
        no_secret.principal(bearer(issue_member_token("cust-7", secret=SECRET)))
    assert exc.value.status == 401


def test_where_each_credential_is_accepted(authenticator: Authenticator) -> None:
    member = bearer(issue_member_token("cust-7", secret=SECRET))
    assert authenticator.authorize(member, "/v1/club/me", public=False).id == "cust-7"
    assert (
        authenticator.authorize(bearer("k-shop"), "/v1/products/x/stock", public=False).kind
        == "shop"
    )
    for header, path, status in (
        (bearer("k-admin"), "/v1/club/me", 403),
        (member, "/v1/customers/cust-7", 403),
        (None, "/v1/customers", 401),
        (None, "/v1/club/me", 401),
    ):
        with pytest.raises(Problem) as exc:
            authenticator.authorize(header, path, public=False)
        assert exc.value.status == status, (header, path)
    # A public operation admits anyone; a bad credential there just makes the call anonymous.
    assert authenticator.authorize(None, "/v1/club/login", public=True) is ANONYMOUS
    assert authenticator.authorize(bearer("junk"), "/v1/club/login", public=True) is ANONYMOUS


# --- through the app ----------------------------------------------------------------------------


def received(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_admin_and_shop_keys_reach_the_service_as_principals(
    gw: httpx.AsyncClient, secrets: Any
) -> None:
    echo = received(
        await gw.get("/v1/customers/42", headers={"Authorization": bearer(secrets.admin_key)})
    )
    h = echo["headers"]
    assert echo["service"] == "profile:customer"
    assert h["x-vafa-principal"] == "staff:admin" and h["x-vafa-roles"] == "admin"
    assert h["x-vafa-internal-token"] == secrets.internal_token
    assert "authorization" not in h  # credentials stop at the gateway

    echo = received(
        await gw.get(
            "/v1/products/TEA-1/stock", headers={"Authorization": bearer(secrets.shop_key)}
        )
    )
    assert echo["service"] == "inventory:stock"
    assert (echo["headers"]["x-vafa-principal"], echo["headers"]["x-vafa-roles"]) == (
        "shop:storefront",
        "shop",
    )


async def test_client_sent_identity_headers_are_replaced(
    gw: httpx.AsyncClient, secrets: Any
) -> None:
    r = await gw.get(
        "/v1/customers/42",
        headers=[
            ("Authorization", bearer(secrets.viewer_key)),
            ("X-Vafa-Principal", "staff:root"),
            ("X-Vafa-Roles", "admin"),
            ("x-vafa-roles", "admin,marketer"),
            ("X-Vafa-Internal-Token", "guessed"),
            ("X-Vafa-Anything", "x"),
        ],
    )
    raw = r.json()["headers"]
    assert raw["x-vafa-principal"] == "staff:vera"
    assert raw["x-vafa-roles"] == "viewer"
    assert raw["x-vafa-internal-token"] == secrets.internal_token
    assert "x-vafa-anything" not in raw


async def test_missing_and_unknown_keys_are_401(gw: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic eDp5"}):
        r = await gw.get("/v1/customers/42", headers=headers)
        p = assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith('Bearer realm="vafa"')
        assert p["type"].endswith("/unauthenticated")
    # Unknown paths do not tell an anonymous caller whether they exist.
    assert_problem(await gw.get("/v1/does-not-exist"), 401)


async def test_member_tokens_through_the_app(gw: httpx.AsyncClient, secrets: Any) -> None:
    token = issue_member_token("cust-9", secret=secrets.jwt)
    echo = received(await gw.get("/v1/club/me", headers={"Authorization": bearer(token)}))
    assert echo["headers"]["x-vafa-principal"] == "member:cust-9"
    assert echo["headers"]["x-vafa-roles"] == ""
    assert_problem(
        await gw.get("/v1/customers/cust-9", headers={"Authorization": bearer(token)}), 403
    )
    expired = issue_member_token("cust-9", secret=secrets.jwt, ttl_seconds=-5)
    r = await gw.get("/v1/club/me", headers={"Authorization": bearer(expired)})
    assert "expired" in assert_problem(r, 401)["detail"]
    forged = issue_member_token("cust-9", secret="not-the-gateway-secret-but-long-enough")
    assert_problem(await gw.get("/v1/club/me", headers={"Authorization": bearer(forged)}), 401)
    assert_problem(
        await gw.get("/v1/club/me", headers={"Authorization": bearer(secrets.admin_key)}), 403
    )


async def test_public_operation_needs_no_credentials(gw: httpx.AsyncClient) -> None:
    echo = received(await gw.post("/v1/club/login", json={"phone": "+989121234567"}))
    assert echo["service"] == "profile:club-login"
    assert "x-vafa-principal" not in echo["headers"]
    assert echo["body"] == '{"phone":"+989121234567"}'


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/docs", "/metrics"])
async def test_ops_and_docs_are_public(gw: httpx.AsyncClient, path: str) -> None:
    assert (await gw.get(path)).status_code == 200
