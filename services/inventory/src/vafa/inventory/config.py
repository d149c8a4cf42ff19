from pydantic import Field
from pydantic_settings import SettingsConfigDict

from vafa.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VAFA_INVENTORY_", extra="ignore")

    service_name: str = "inventory"
    port: int = 8106
    worker_metrics_port: int = 9106
    # A SKU with at most this many available units shows as low stock unless it has its own
    # threshold.
    default_low_stock_threshold: int = 5
    # How long a placed order (or an API reservation without hold_seconds) holds its units.
    reservation_hold_seconds: int = Field(default=900, ge=1)
    # How often the worker releases expired holds, and how many per transaction.
    hold_sweep_seconds: float = Field(default=5.0, gt=0)
    hold_sweep_batch: int = Field(default=500, ge=1)
