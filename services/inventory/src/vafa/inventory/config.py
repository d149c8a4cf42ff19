from pydantic_settings import SettingsConfigDict

from vafa.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VAFA_INVENTORY_", extra="ignore")

    service_name: str = "inventory"
    port: int = 8106
    worker_metrics_port: int = 9106
    # A SKU at or below this many units shows as low stock unless it has its own threshold.
    default_low_stock_threshold: int = 5
