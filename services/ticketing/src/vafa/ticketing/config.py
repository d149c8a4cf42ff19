from pydantic_settings import SettingsConfigDict

from vafa.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VAFA_TICKETING_", extra="ignore")

    service_name: str = "ticketing"
    port: int = 8105
    worker_metrics_port: int = 9105
