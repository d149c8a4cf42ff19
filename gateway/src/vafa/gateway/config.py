"""Gateway settings: env prefix VAFA_GATEWAY_, except the platform-wide secrets, which keep
their own names (VAFA_ADMIN_API_KEY, VAFA_API_KEYS, VAFA_JWT_SECRET, VAFA_*_WEBHOOK_SECRET,
VAFA_INTERNAL_TOKEN) because other processes and the deployment share them.

Every secret is optional at start-up; a feature whose secret is unset fails closed at request
time (503 for a webhook receiver, 401 for a credential it cannot check). A secret that is set
but malformed stops the gateway from starting, loudly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from vafa.kit.settings import ServiceSettings

Role = Literal["admin", "marketer", "agent", "viewer", "shop"]

# Each service's base URL, in the order that decides who owns a path both of them document.
DEFAULT_SERVICES: dict[str, str] = {
    "profile": "http://127.0.0.1:8101",
    "loyalty": "http://127.0.0.1:8102",
    "segmentation": "http://127.0.0.1:8103",
    "messaging": "http://127.0.0.1:8104",
    "ticketing": "http://127.0.0.1:8105",
    "inventory": "http://127.0.0.1:8106",
}

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class ApiKey(BaseModel):
    """One staff or shop API key. Only the SHA-256 of the key is configured, never the key."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role
    key_sha256: str

    @field_validator("key_sha256")
    @classmethod
    def _hex_digest(cls, v: str) -> str:
        v = v.strip().lower()
        if not _SHA256_HEX.match(v):
            raise ValueError("key_sha256 must be the 64-character hex SHA-256 of the key")
        return v


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="VAFA_GATEWAY_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    service_name: str = "gateway"
    port: int = 8000

    # Base URLs of the services the gateway fronts. A value given here (JSON in
    # VAFA_GATEWAY_SERVICES, or VAFA_GATEWAY_SERVICES__PROFILE=...) replaces that service's
    # default and leaves the others; an empty URL removes a service.
    services: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SERVICES))
    # Routes whose bodies may pass the 1 MiB default: the customer CSV import (profile answers
    # with its own, lower limit) and a static segment's member list. Paths may be templates.
    # JSON in VAFA_GATEWAY_BODY_LIMITS replaces this map.
    body_limits: dict[str, int] = Field(
        default_factory=lambda: {
            "POST /v1/customers/imports": 26 * 1024 * 1024,
            "POST /v1/segments/{segment_id}/members/import": 16 * 1024 * 1024,
        }
    )

    # The first admin key, in clear (it is what an operator types); hashed at start-up.
    admin_api_key: SecretStr = Field(default=SecretStr(""), validation_alias="VAFA_ADMIN_API_KEY")
    # More keys as JSON: [{"name": "storefront", "role": "shop", "key_sha256": "..."}].
    # NoDecode: the JSON is parsed by _api_keys below, so an empty VAFA_API_KEYS= (what env
    # files tend to hold) means no extra keys instead of a start-up crash.
    api_keys: Annotated[list[ApiKey], NoDecode] = Field(
        default_factory=list, validation_alias="VAFA_API_KEYS"
    )
    # HS256 secret of the club member tokens (the same secret profile signs them with).
    jwt_secret: SecretStr = Field(default=SecretStr(""), validation_alias="VAFA_JWT_SECRET")

    shopify_webhook_secret: SecretStr = Field(
        default=SecretStr(""), validation_alias="VAFA_SHOPIFY_WEBHOOK_SECRET"
    )
    woocommerce_webhook_secret: SecretStr = Field(
        default=SecretStr(""), validation_alias="VAFA_WOOCOMMERCE_WEBHOOK_SECRET"
    )
    # Standard Webhooks secret, "whsec_<base64>".
    standard_webhook_secret: SecretStr = Field(
        default=SecretStr(""), validation_alias="VAFA_STANDARD_WEBHOOK_SECRET"
    )
    # A Standard Webhooks message older or newer than this is refused (replay protection). The
    # reference verifier also enforces its own fixed 5 minutes, so a larger value has no effect.
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=300)

    # The whole exchange with a service (connect, send, wait, read) must finish within this.
    upstream_timeout_seconds: float = Field(default=10.0, gt=0)
    upstream_max_connections: int = Field(default=200, ge=1)
    upstream_max_keepalive: int = Field(default=50, ge=0)
    # A path that matches no known route triggers a refresh of the services' OpenAPI documents
    # when the cached ones are older than this.
    openapi_refresh_seconds: float = Field(default=5.0, ge=0)
    # How long a webhook waits for Kafka to acknowledge its event before answering 503.
    kafka_send_timeout_seconds: float = Field(default=10.0, gt=0)
    # Retry-After sent with a 503 when Kafka is down, so the platform tries again later.
    retry_after_seconds: int = Field(default=30, ge=1)

    @field_validator("services", mode="after")
    @classmethod
    def _merge_services(cls, v: dict[str, str]) -> dict[str, str]:
        merged = {**DEFAULT_SERVICES, **v}
        out: dict[str, str] = {}
        for name, url in merged.items():
            if not url:
                continue
            if not _SERVICE_NAME.match(name):
                raise ValueError(f"service name {name!r} must be lowercase letters and digits")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"service {name!r}: base URL {url!r} must be http(s)")
            out[name] = url.rstrip("/")
        return out

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, v: object) -> object:
        if isinstance(v, str):
            return json.loads(v) if v.strip() else []
        return v

    @field_validator("standard_webhook_secret", mode="after")
    @classmethod
    def _whsec(cls, v: SecretStr) -> SecretStr:
        raw = v.get_secret_value()
        if not raw:
            return v
        if not raw.startswith("whsec_"):
            raise ValueError("VAFA_STANDARD_WEBHOOK_SECRET must look like whsec_<base64>")
        try:
            body = raw.removeprefix("whsec_").rstrip("=")
            key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("VAFA_STANDARD_WEBHOOK_SECRET is not valid base64") from exc
        if len(key) < 16:
            raise ValueError("VAFA_STANDARD_WEBHOOK_SECRET must decode to at least 16 bytes")
        return v

    def all_api_keys(self) -> list[ApiKey]:
        """The configured keys, with VAFA_ADMIN_API_KEY first as the admin key named 'admin'."""
        keys = []
        admin = self.admin_api_key.get_secret_value()
        if admin:
            digest = hashlib.sha256(admin.encode()).hexdigest()
            keys.append(ApiKey(name="admin", role="admin", key_sha256=digest))
        return [*keys, *self.api_keys]
