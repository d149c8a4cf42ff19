from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vafa.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VAFA_PROFILE_", extra="ignore")

    service_name: str = "profile"
    port: int = 8101
    worker_metrics_port: int = 9101
    # ISO 3166-1 alpha-2 region for local phone numbers ("0912...") when an order's billing
    # country does not say otherwise.
    default_region: str = Field(default="IR", min_length=2, max_length=2)
