"""Who is calling: `Authorization: Bearer <credential>`, either a staff/shop API key or a club
member's JWT. The gateway is the only place credentials are checked; services see the result
in X-Vafa-Principal / X-Vafa-Roles (kit.auth) and enforce roles themselves.

API keys are configured as SHA-256 digests; the presented key is hashed and compared with
every configured digest in constant time. Member tokens are HS256 JWTs checked with
kit.auth.verify_member_token (audience "vafa-club", expiry required).

Where a credential is accepted:
- `/v1/club/...`: member tokens only (a staff key there is 403).
- every other proxied `/v1/...` route: staff and shop keys only (a member token there is 403).
- an operation a service documents with `security: []`: anyone (a valid credential is still
  passed on; a missing or bad one makes the call anonymous).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import jwt

from vafa.gateway.config import ApiKey
from vafa.kit.auth import ANONYMOUS, Principal, verify_member_token
from vafa.kit.errors import Problem

REALM = 'Bearer realm="vafa"'
CLUB_PREFIX = "/v1/club/"


def _unauthenticated(detail: str, *, invalid: bool) -> Problem:
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    return Problem(401, detail, type="unauthenticated", headers={"WWW-Authenticate": challenge})


class Authenticator:
    def __init__(self, keys: Sequence[ApiKey], jwt_secret: str) -> None:
        self._keys = [(bytes.fromhex(k.key_sha256), k) for k in keys]
        self._jwt_secret = jwt_secret

    def _find_key(self, token: str) -> ApiKey | None:
        digest = hashlib.sha256(token.encode()).digest()
        found: ApiKey | None = None
        # Look at every key, whatever matches, so timing says nothing about which one did.
        for configured, key in self._keys:
            if hmac.compare_digest(configured, digest) and found is None:
                found = key
        return found

    def principal(self, authorization: str | None) -> Principal:
        """The caller, or ANONYMOUS without credentials; raises 401 for a bad credential."""
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthenticated(
                "Use `Authorization: Bearer <API key or member token>`.", invalid=True
            )
        key = self._find_key(token)
        if key is not None:
            kind = "shop" if key.role == "shop" else "staff"
            return Principal(kind, key.name, frozenset({key.role}))
        if token.count(".") == 2 and self._jwt_secret:
            try:
                customer_id = verify_member_token(token, secret=self._jwt_secret)
            except jwt.ExpiredSignatureError:
                raise _unauthenticated("The member token has expired.", invalid=True) from None
            except jwt.InvalidTokenError:
                raise _unauthenticated("The member token is not valid.", invalid=True) from None
            return Principal("member", customer_id)
        raise _unauthenticated("The credential is not valid.", invalid=True)

    def authorize(self, authorization: str | None, path: str, *, public: bool) -> Principal:
        """The principal to forward for a proxied route, or a 401/403 problem."""
        if public:
            try:
                return self.principal(authorization)
            except Problem:
                return ANONYMOUS
        p = self.principal(authorization)
        club = path.startswith(CLUB_PREFIX) or path == CLUB_PREFIX.rstrip("/")
        if p.kind == "anonymous":
            what = "a club member token" if club else "an API key"
            raise _unauthenticated(f"This route needs {what}.", invalid=False)
        if club and p.kind != "member":
            raise Problem(403, "Club routes are for club members' tokens.", type="forbidden")
        if not club and p.kind == "member":
            raise Problem(
                403, "Member tokens can only be used on /v1/club/ routes.", type="forbidden"
            )
        return p
