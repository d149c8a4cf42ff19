from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from vafa.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VAFA_SEGMENTATION_", extra="ignore")

    service_name: str = "segmentation"
    port: int = 8103
    worker_metrics_port: int = 9103
    # The shop's time zone: the months and weekdays of purchase, "today" for birthdays and
    # relative dates, the RFM and cohort months.
    timezone: str = "UTC"
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

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value
