import json
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from vafa.kit.money import exponent
from vafa.kit.settings import ServiceSettings, TimeZone


def _default_rates() -> dict[str, Decimal]:
    return {
        "USD": Decimal(1),
        "EUR": Decimal(1),
        "GBP": Decimal(1),
        "AMD": Decimal("0.01"),
        "IRR": Decimal("0.0001"),
    }


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="VAFA_LOYALTY_", extra="ignore")

    service_name: str = "loyalty"
    port: int = 8102
    worker_metrics_port: int = 9102
    # Points earned per one major unit of a currency (1 USD, 1 AMD, 1 IRR), as a JSON object in
    # VAFA_LOYALTY_POINTS_PER_UNIT, e.g. {"USD": 1, "IRR": 0.0001}. JSON numbers are read as
    # Decimal, never through a float. A currency missing here earns nothing.
    points_per_unit: Annotated[dict[str, Decimal], NoDecode] = Field(default_factory=_default_rates)
    # How long granted points stay valid unless a rule says otherwise.
    points_validity_days: int = Field(default=365, ge=1, le=36500)
    # Points of a paid order are pending (not spendable) for this many days after payment...
    pending_days: int = Field(default=0, ge=0, le=3650)
    # ...or until the order is fulfilled (PurchaseKind FULFILLED), when this is true.
    pending_until_fulfilled: bool = False
    # PointsExpiryWarning this many days before a lot expires (once per lot per threshold),
    # as a JSON list in VAFA_LOYALTY_EXPIRY_WARNING_DAYS, e.g. [30, 7].
    expiry_warning_days: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [30, 7])
    # How often the worker runs the expiry / unlock / warning job, and the birthday job.
    expiry_every_seconds: float = Field(default=300, gt=0)
    birthday_every_seconds: float = Field(default=3600, gt=0)
    # The points-liability report: what one point is worth, in minor units of a currency.
    point_value_minor: Decimal = Field(default=Decimal(1), ge=0)
    point_value_currency: str = "USD"
    # The shop's time zone and calendar: the days, weeks and months of the earning caps, the
    # birthday job's "today", and the days the liability report's months are made of.
    # Jalali weeks start on Saturday and its months are the Solar Hijri ones.
    timezone: TimeZone = "UTC"
    calendar: Literal["gregorian", "jalali"] = "gregorian"

    @field_validator("expiry_warning_days", mode="before")
    @classmethod
    def _parse_days(cls, value: Any) -> Any:
        if isinstance(value, str | bytes):
            value = json.loads(value)
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 3650 for v in value
        ):
            raise ValueError("expiry_warning_days must be a JSON list of days between 1 and 3650")
        return sorted(set(value), reverse=True)

    # Tiers: how often the worker re-evaluates every member's tier, the only time a tier goes
    # down (upgrades happen at once, on the event). 0 turns the job off.
    tier_reevaluation_seconds: float = Field(default=86_400, ge=0)
    # Referrals: what each side earns when the referred customer's first order is paid, and
    # how many referrals a referrer earns for per period (week, month or year of the shop's
    # time zone and calendar, above).
    referral_referrer_points: int = Field(default=100, ge=0)
    referral_referred_points: int = Field(default=50, ge=0)
    referral_cap: int = Field(default=10, ge=0)
    referral_cap_period: Literal["week", "month", "year"] = "month"

    @field_validator("points_per_unit", mode="before")
    @classmethod
    def _parse_rates(cls, value: Any) -> Any:
        if isinstance(value, str | bytes):
            value = json.loads(value, parse_float=Decimal, parse_int=Decimal)
        if not isinstance(value, dict):
            raise ValueError("points_per_unit must be a JSON object of currency -> rate")
        rates: dict[str, Decimal] = {}
        for currency, rate in value.items():
            if isinstance(rate, float | bool) or not isinstance(rate, Decimal | int | str):
                raise ValueError(f"the rate of {currency} must be a decimal number, not {rate!r}")
            code = str(currency).upper()
            exponent(code)  # raises for anything that is not an ISO 4217 code
            try:
                amount = rate if isinstance(rate, Decimal) else Decimal(str(rate).strip())
            except InvalidOperation:
                raise ValueError(f"the rate of {code} is not a number: {rate!r}") from None
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"the rate of {code} must be a finite number >= 0")
            rates[code] = amount
        return rates
