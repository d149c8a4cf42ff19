import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from vafa.loyalty.models import ReferralStatus


class ReferralCodeRead(BaseModel):
    customer_id: uuid.UUID
    code: str
    referrer_points: int = Field(description="What the member earns per referral.")
    referred_points: int = Field(description="What the friend earns on their first order.")


class ReferralRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    referred_id: uuid.UUID
    referrer_id: uuid.UUID | None
    code: str
    status: ReferralStatus
    note: str | None
    order_ref: str | None
    referrer_points: int
    referred_points: int
    created_at: datetime
    completed_at: datetime | None


class ReferralReport(BaseModel):
    referrals: list[ReferralRead]
    by_status: dict[str, int]
    referrer_points: int
    referred_points: int
