from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from vafa.kit.settings import ServiceSettings, TimeZone


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
    timezone: TimeZone = "Asia/Tehran"
    # Near-duplicate suggestions: the least trigram similarity of folded names.
    duplicate_name_similarity: float = Field(default=0.6, gt=0, le=1)
    # How often the worker scans files changed since its last look for near-duplicates.
    duplicate_scan_seconds: float = Field(default=300.0, gt=0)

    # -- the club account ------------------------------------------------------------------
    # Signs member tokens; the gateway verifies them with the same variable.
    jwt_secret: SecretStr = Field(default=SecretStr(""), validation_alias="VAFA_JWT_SECRET")
    member_token_ttl_seconds: int = Field(default=3600, ge=60)
    # Failed sign-ins (password or code) per identifier before it is locked, and for how long.
    lockout_threshold: int = Field(default=5, ge=1)
    lockout_minutes: int = Field(default=15, ge=1)
    # One-time codes: digits, lifetime, wrong tries before the code is spent, and the pause
    # before another code for the same purpose is sent (a resend inside it is dropped quietly).
    code_digits: int = Field(default=6, ge=4, le=10)
    code_ttl_seconds: int = Field(default=300, ge=30)
    code_max_attempts: int = Field(default=5, ge=1)
    code_resend_seconds: int = Field(default=60, ge=0)
    password_min_length: int = Field(default=8, ge=6)
    # Language of the code messages messaging sends ("fa", "hy", "en").
    club_language: str = "fa"

    # -- CSV import ------------------------------------------------------------------------
    import_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # Files of up to this many rows are imported in the request; larger ones by the worker.
    import_inline_rows: int = Field(default=20_000, ge=0)
    # Rows per transaction: an import records its progress after each batch.
    import_batch_rows: int = Field(default=5_000, ge=1)
    # The upload route's body limit sits above the import's own, so the import's 413 (naming
    # its limit) is the one that answers; every other route keeps the kit's 1 MiB.
    body_limits: dict[str, int] = Field(
        default_factory=lambda: {"POST /v1/customers/imports": 26 * 1024 * 1024}
    )
