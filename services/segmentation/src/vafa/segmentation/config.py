from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from vafa.kit.settings import ServiceSettings, TimeZone


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VAFA_SEGMENTATION_", extra="ignore")

    service_name: str = "segmentation"
    port: int = 8103
    worker_metrics_port: int = 9103
    # The shop's time zone: the months and weekdays of purchase, "today" for birthdays and
    # relative dates, the RFM and cohort months.
    timezone: TimeZone = "UTC"
    # ISO 3166-1 region in which a static segment's CSV reads local phone numbers ("0912...").
    phone_region: str = Field(default="IR", min_length=2, max_length=2)
    # A static segment's CSV may hold a few hundred thousand emails or phones; every other
    # route keeps the kit's 1 MiB.
    body_limits: dict[str, int] = Field(
        default_factory=lambda: {"POST /v1/segments/{segment_id}/members/import": 16 * 1024 * 1024}
    )
    # The feature store: the calendar birthdays recur on (in a Jalali shop a birthday is kept on
    # its Jalali day); how often the window job looks for customers whose 30/90/365-day windows,
    # birthdays or segment rechecks came due, and how many it takes per transaction.
    calendar: Literal["gregorian", "jalali"] = "gregorian"
    windows_every_seconds: float = Field(default=60, gt=0)
    windows_batch_size: int = Field(default=500, ge=1, le=10_000)

    # Scores (segmentation/scores). How often the worker recomputes RFM and refits CLV (0 turns
    # a job off); the CLV horizon; the CLV bands: customers at or above the `clv_high_percentile`
    # percentile of CLV are "high", below `clv_low_percentile` "low", the rest "medium".
    rfm_every_seconds: float = Field(default=3600, ge=0)
    clv_every_seconds: float = Field(default=86_400, ge=0)
    clv_horizon_days: int = Field(default=365, ge=1, le=3650)
    clv_high_percentile: float = Field(default=80, gt=0, lt=100)
    clv_low_percentile: float = Field(default=50, gt=0, lt=100)
    # Discovery: at most this many customers (a uniform random sample) are clustered.
    cluster_sample_cap: int = Field(default=50_000, ge=100, le=1_000_000)

    @model_validator(mode="after")
    def _bands(self) -> "Settings":
        if self.clv_low_percentile > self.clv_high_percentile:
            raise ValueError("clv_low_percentile must not exceed clv_high_percentile")
        return self
