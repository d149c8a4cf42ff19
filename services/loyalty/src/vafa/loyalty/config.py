import json
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from vafa.kit.money import exponent
from vafa.kit.settings import ServiceSettings


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

    # Tiers: how often the worker re-evaluates every member's tier, the only time a tier goes
    # down (upgrades happen at once, on the event). 0 turns the job off.
    tier_reevaluation_seconds: float = Field(default=86_400, ge=0)
    # Referrals: what each side earns when the referred customer's first order is paid, and
    # how many referrals a referrer earns for per calendar period (week, month or year).
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
