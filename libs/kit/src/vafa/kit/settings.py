"""Settings from the environment (pydantic-settings), one env prefix per service.

Kafka is one cluster for the whole platform, so its settings have their own shared prefix
(VAFA_KAFKA_...) instead of being repeated under every service's prefix.
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


# An IANA time zone name ("Asia/Tehran", "Asia/Yerevan"), refused at start-up when unknown.
TimeZone = Annotated[str, AfterValidator(_zone)]

PG_DEFAULT = "postgresql+asyncpg://vafa:vafa@127.0.0.1:55432"


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAFA_KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    # A test run or a second stack on the same broker sets a prefix so topics never collide.
    topic_prefix: str = ""
    partitions: int = 3
    replication_factor: int = 1

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class ServiceSettings(BaseSettings):
    """Base for every service's settings; a service subclasses it and sets its env prefix:

    class Settings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="VAFA_PROFILE_")
    """

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "vafa"
    host: str = "127.0.0.1"
    port: int = 8100
    # The worker's Prometheus endpoint; 0 turns it off.
    worker_metrics_port: int = 0
    database_url: str = ""
    db_pool_size: int = 10
    log_level: str = "INFO"
    log_json: bool = True
    # Services accept identity headers only from the gateway: it proves itself with this token.
    internal_token: SecretStr = Field(default=SecretStr(""), validation_alias="VAFA_INTERNAL_TOKEN")
    max_body_bytes: int = 1_048_576
    # Routes with their own body limit, "METHOD /path" -> bytes (JSON in the environment).
    body_limits: dict[str, int] = Field(default_factory=dict)
    # The worker forgets inbox ids after this many days (0: never). Longer than the topics'
    # retention and the shops' webhook retry horizon, so no redelivery outlives its id.
    inbox_retention_days: int = Field(default=30, ge=0)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    def model_post_init(self, __context: object) -> None:
        if not self.database_url:
            self.database_url = f"{PG_DEFAULT}/vafa_{self.service_name}"
