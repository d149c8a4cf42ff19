"""Settings from the environment, as the deployment sets them."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from vafa.gateway.config import DEFAULT_SERVICES, GatewaySettings

ENV_NAMES = (
    "VAFA_GATEWAY_PORT",
    "VAFA_GATEWAY_SERVICES",
    "VAFA_GATEWAY_SERVICES__PROFILE",
    "VAFA_ADMIN_API_KEY",
    "VAFA_API_KEYS",
    "VAFA_JWT_SECRET",
    "VAFA_SHOPIFY_WEBHOOK_SECRET",
    "VAFA_WOOCOMMERCE_WEBHOOK_SECRET",
    "VAFA_STANDARD_WEBHOOK_SECRET",
    "VAFA_INTERNAL_TOKEN",
    "VAFA_KAFKA_TOPIC_PREFIX",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    s = GatewaySettings()
    assert s.port == 8000 and s.service_name == "gateway"
    assert s.services == DEFAULT_SERVICES
    assert s.max_body_bytes == 1_048_576
    assert s.webhook_tolerance_seconds == 300
    assert s.upstream_timeout_seconds == 10.0
    assert s.all_api_keys() == []
    assert s.kafka.topic("shop.orders.v1") == "shop.orders.v1"


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.sha256(b"shop-key").hexdigest()
    monkeypatch.setenv("VAFA_GATEWAY_PORT", "8080")
    monkeypatch.setenv("VAFA_ADMIN_API_KEY", "admin-key")
    monkeypatch.setenv(
        "VAFA_API_KEYS",
        json.dumps([{"name": "storefront", "role": "shop", "key_sha256": digest.upper()}]),
    )
    monkeypatch.setenv("VAFA_SHOPIFY_WEBHOOK_SECRET", "shp")
    monkeypatch.setenv("VAFA_STANDARD_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    monkeypatch.setenv("VAFA_INTERNAL_TOKEN", "tok")
    monkeypatch.setenv("VAFA_KAFKA_TOPIC_PREFIX", "staging-")
    monkeypatch.setenv("VAFA_GATEWAY_SERVICES__PROFILE", "http://10.0.0.5:8101/")
    s = GatewaySettings()
    assert s.port == 8080
    keys = s.all_api_keys()
    assert [(k.name, k.role) for k in keys] == [("admin", "admin"), ("storefront", "shop")]
    assert keys[0].key_sha256 == hashlib.sha256(b"admin-key").hexdigest()
    assert keys[1].key_sha256 == digest  # normalised to lowercase
    assert s.shopify_webhook_secret.get_secret_value() == "shp"
    assert s.internal_token.get_secret_value() == "tok"
    assert s.kafka.topic("shop.orders.v1") == "staging-shop.orders.v1"
    # One service moved; the others keep their defaults.
    assert s.services == {**DEFAULT_SERVICES, "profile": "http://10.0.0.5:8101"}


def test_services_map_as_json_and_removal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "VAFA_GATEWAY_SERVICES", json.dumps({"ticketing": "", "crm": "http://crm:9000"})
    )
    s = GatewaySettings()
    assert "ticketing" not in s.services
    assert s.services["crm"] == "http://crm:9000"
    assert list(s.services)[:2] == ["profile", "loyalty"]  # the priority order is kept


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VAFA_STANDARD_WEBHOOK_SECRET", "not-whsec"),
        ("VAFA_STANDARD_WEBHOOK_SECRET", "whsec_***"),
        ("VAFA_STANDARD_WEBHOOK_SECRET", "whsec_c2hvcnQ="),  # 5 bytes: too short a key
        ("VAFA_API_KEYS", '[{"name": "x", "role": "root", "key_sha256": "' + "0" * 64 + '"}]'),
        ("VAFA_API_KEYS", '[{"name": "x", "role": "admin", "key_sha256": "plain-text-key"}]'),
        ("VAFA_GATEWAY_SERVICES", '{"profile": "ftp://x"}'),
    ],
)
def test_malformed_settings_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        GatewaySettings()


def test_empty_api_keys_env_means_no_extra_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAFA_API_KEYS", "")
    assert GatewaySettings().api_keys == []
    monkeypatch.setenv(
        "VAFA_API_KEYS",
        '[{"name": "storefront", "role": "shop", "key_sha256": "' + "a" * 64 + '"}]',
    )
    assert [k.name for k in GatewaySettings().api_keys] == ["storefront"]
