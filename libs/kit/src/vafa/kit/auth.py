"""Identity as the gateway asserts it, and member tokens.

The gateway authenticates every caller (staff or shop API key, member JWT) and forwards the
result in `X-Vafa-Principal` and `X-Vafa-Roles`, proving itself with `X-Vafa-Internal-Token`.
Services trust those headers only with that token, and never look at credentials themselves.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import jwt
from fastapi import Depends, Request

from vafa.kit.errors import Problem

PRINCIPAL_HEADER = "x-vafa-principal"
ROLES_HEADER = "x-vafa-roles"
INTERNAL_TOKEN_HEADER = "x-vafa-internal-token"

Kind = Literal["staff", "shop", "member", "anonymous"]
STAFF_ROLES = ("admin", "marketer", "agent", "viewer")
MEMBER_AUDIENCE = "vafa-club"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Kind
    id: str
    roles: frozenset[str] = frozenset()

    def header_value(self) -> str:
        return f"{self.kind}:{self.id}"


ANONYMOUS = Principal("anonymous", "")


def principal_from_headers(request: Request) -> Principal:
    expected = request.app.state.settings.internal_token.get_secret_value()
    given = request.headers.get(INTERNAL_TOKEN_HEADER, "")
    # Fail closed: a service without a token configured trusts no identity header at all, so a
    # forgotten secret leaves only the public routes open, never every route.
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return ANONYMOUS
    raw = request.headers.get(PRINCIPAL_HEADER, "")
    kind, _, ident = raw.partition(":")
    if kind not in ("staff", "shop", "member") or not ident:
        return ANONYMOUS
    roles = frozenset(r for r in request.headers.get(ROLES_HEADER, "").split(",") if r)
    return Principal(kind, ident, roles)  # type: ignore[arg-type]


def require(*roles: str, members: bool = False) -> Any:
    """A dependency that admits staff or shop principals holding one of `roles` (admin always),
    and members too when `members=True` (the route must then scope itself to the member)."""

    def dependency(request: Request) -> Principal:
        p = principal_from_headers(request)
        if p.kind == "anonymous":
            raise Problem(401, "Authentication is required.", type="unauthenticated")
        if p.kind == "member":
            if members:
                return p
            raise Problem(403, "Members cannot use this route.", type="forbidden")
        if "admin" in p.roles or p.roles & set(roles):
            return p
        raise Problem(
            403, f"This route needs one of the roles: {', '.join(roles)}.", type="forbidden"
        )

    return Depends(dependency)


READ_ROLES = ("marketer", "agent", "viewer", "shop")
StaffRead = Annotated[Principal, require(*READ_ROLES)]
StaffWrite = Annotated[Principal, require("marketer", "shop")]


def current_member(request: Request) -> Principal:
    p = principal_from_headers(request)
    if p.kind != "member":
        raise Problem(401, "A club member token is required.", type="unauthenticated")
    return p


MemberDep = Annotated[Principal, Depends(current_member)]


def current_member_id(request: Request) -> uuid.UUID:
    """The signed-in member's customer id; 404 when the token's subject is no customer id (a
    service can hold nothing for it)."""
    member = current_member(request)
    try:
        return uuid.UUID(member.id)
    except ValueError:
        raise Problem(404, "No customer file belongs to this member.", type="not-found") from None


# For member routes that need only the member's customer id.
MemberId = Annotated[uuid.UUID, Depends(current_member_id)]


def issue_member_token(
    customer_id: str, *, secret: str, ttl_seconds: int = 3600, issuer: str = "vafa"
) -> str:
    now = int(time.time())
    claims = {
        "sub": customer_id,
        "aud": MEMBER_AUDIENCE,
        "iss": issuer,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_member_token(token: str, *, secret: str, issuer: str = "vafa") -> str:
    """The customer id of a valid member token; raises jwt.InvalidTokenError otherwise."""
    claims = jwt.decode(
        token,
        secret,
        algorithms=["HS256"],
        audience=MEMBER_AUDIENCE,
        issuer=issuer,
        options={"require": ["exp", "sub", "aud", "iss"]},
    )
    return str(claims["sub"])
