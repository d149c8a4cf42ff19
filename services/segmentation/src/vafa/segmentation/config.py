from pydantic_settings import SettingsConfigDict

from vafa.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VAFA_SEGMENTATION_", extra="ignore")

    service_name: str = "segmentation"
    port: int = 8103
    worker_metrics_port: int = 9103
