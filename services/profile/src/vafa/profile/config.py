from pydantic import Field, SecretStr
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
    # Signs the tokens of unsubscribe links (GET/POST /v1/unsubscribe/{token}). Set it in
    # production; links signed with one secret stop working when it changes.
    unsubscribe_secret: SecretStr = SecretStr("vafa-dev-unsubscribe-secret-change-me-in-prod")
    # Inbound SMS texts that revoke SMS consent, compared folded (Arabic/Persian letter forms,
    # Persian/Arabic/fullwidth digits, case) without spaces, punctuation or trailing digits, so
    # "لغو", "لغو ۱۱" and "لغو１" all match "لغو". Env: a JSON list.
    unsubscribe_keywords: list[str] = Field(
        default=["لغو", "انصراف", "STOP", "UNSUBSCRIBE", "ԴԱԴԱՐ", "ՉԵՂԱՐԿԵԼ"]
    )
    # The effective-dates job: how far ahead EffectiveDateUpcoming is announced, how often the
    # worker looks, and the calendar day "today" is in (dates recur by local day).
    effective_date_lookahead_days: int = Field(default=7, ge=0, le=366)
    effective_date_scan_seconds: float = Field(default=3600.0, gt=0)
    timezone: str = "Asia/Tehran"
    # Near-duplicate suggestions: the least trigram similarity of folded names.
    duplicate_name_similarity: float = Field(default=0.6, gt=0, le=1)
    # How often the worker scans files changed since its last look for near-duplicates.
    duplicate_scan_seconds: float = Field(default=300.0, gt=0)
