from pydantic_settings import SettingsConfigDict

from vafa.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VAFA_MESSAGING_", extra="ignore")

    service_name: str = "messaging"
    port: int = 8104
    worker_metrics_port: int = 9104
