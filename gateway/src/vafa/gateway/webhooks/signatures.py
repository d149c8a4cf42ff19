"""Webhook signatures, checked over the raw body bytes in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class SignatureError(Exception):
    """The delivery is not provably from the platform: answer 401, do nothing."""


def verify_base64_hmac_sha256(secret: str, body: bytes, signature: str | None) -> None:
    """Shopify (X-Shopify-Hmac-Sha256) and WooCommerce (X-WC-Webhook-Signature): the base64 of
    HMAC-SHA256(secret, raw body)."""
    if not signature:
        raise SignatureError("the signature header is missing")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        given = b""
    # Compare the decoded digests (so base64 spelling does not matter) in constant time.
    if not hmac.compare_digest(expected, given):
        raise SignatureError("the signature does not match the body")


def sign_base64_hmac_sha256(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class StandardVerifier:
    """Standard Webhooks through the reference `standardwebhooks` package, which checks
    `webhook-signature` over `id.timestamp.body` in constant time and refuses a timestamp more
    than 5 minutes away. `tolerance_seconds` may only tighten that window."""

    def __init__(self, secret: str, tolerance_seconds: int = 300) -> None:
        self._webhook = Webhook(secret)
        self.tolerance_seconds = tolerance_seconds

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
        wanted = ("webhook-id", "webhook-timestamp", "webhook-signature")
        h = {k: headers.get(k, "") for k in wanted}
        missing = [k for k in wanted if not h[k]]
        if missing:
            raise SignatureError(f"missing header(s): {', '.join(missing)}")
        try:
            ts = int(h["webhook-timestamp"])
        except ValueError:
            raise SignatureError("webhook-timestamp is not a Unix time in seconds") from None
        current = time.time() if now is None else now
        if abs(current - ts) > self.tolerance_seconds:
            raise SignatureError("webhook-timestamp is outside the accepted window (replay?)")
        try:
            self._webhook.verify(body, h, json_parse=False)
        except WebhookVerificationError as exc:
            raise SignatureError(str(exc)) from None
        except (ValueError, binascii.Error):  # malformed signature list, or a non-UTF-8 body
            raise SignatureError("webhook-signature is malformed") from None
