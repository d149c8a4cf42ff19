import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vafa.profile.club.service import ClubStatus
from vafa.profile.customers.schemas import Gender, check_birth_date, parse_birth_date


class ClubSignUp(BaseModel):
    """Joining the club from the storefront or the club panel: at least one of email and phone."""

    first_name: str | None = Field(default=None, max_length=200, description="Given name.")
    last_name: str | None = Field(default=None, max_length=200, description="Family name.")
    email: str | None = Field(default=None, max_length=320, description="Email address.")
    phone: str | None = Field(
        default=None,
        max_length=64,
        description="Phone in any common form (09121234567, +98 912..., Persian digits).",
    )
    password: str = Field(
        min_length=1, max_length=200, description="At least `password_min_length` characters."
    )
    referral_code: str | None = Field(
        default=None, max_length=64, description="The code of the member who referred you."
    )
    country_code: str | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        pattern="^[A-Za-z]{2}$",
        description="ISO 3166-1 alpha-2; local phone forms are read in its region.",
    )
    city: str | None = Field(default=None, max_length=200, description="City.")

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if not (self.email or "").strip() and not (self.phone or "").strip():
            raise ValueError("give at least one of email and phone")
        return self


Identifier = Field(
    min_length=1,
    max_length=320,
    description="The email address or phone number (any form) the account is known by.",
)


class PasswordSignIn(BaseModel):
    identifier: str = Identifier
    password: str = Field(min_length=1, max_length=200)


class CodeSignIn(BaseModel):
    identifier: str = Identifier
    code: str = Field(min_length=1, max_length=20, description="The code that was sent.")


class CodeRequestPurpose(StrEnum):
    sign_in = "sign_in"
    password_reset = "password_reset"


class CodeRequest(BaseModel):
    identifier: str = Identifier
    purpose: CodeRequestPurpose = Field(description="What the code is for.")


class PasswordReset(BaseModel):
    identifier: str = Identifier
    code: str = Field(min_length=1, max_length=20, description="The password_reset code.")
    new_password: str = Field(min_length=1, max_length=200)


class VerificationRequest(BaseModel):
    channel: Literal["sms", "email"] = Field(
        default="sms", description="Prove the phone ('sms') or the email ('email')."
    )


class VerificationCode(BaseModel):
    code: str = Field(min_length=1, max_length=20)


class Accepted(BaseModel):
    detail: str = Field(description="What happens next.")


class TokenRead(BaseModel):
    access_token: str = Field(description="The member JWT (HS256), sent as `Bearer <token>`.")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")
    customer_id: uuid.UUID = Field(description="The member's customer id.")


class ClubAccountRead(BaseModel):
    status: ClubStatus = Field(
        description="member: joined, phone/email not yet proved by a code; verified: proved."
    )
    joined_via: str = Field(description="signup, purchase or code.")
    joined_at: datetime
    verified_at: datetime | None
    has_password: bool


class MemberUpdate(BaseModel):
    """What a member may change on their own file: a field left out is unchanged, null clears
    it. Identities, lifecycle, acquisition and custom fields stay with staff."""

    model_config = ConfigDict(extra="forbid")

    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    birth_date: date | None = Field(
        default=None,
        description="ISO 8601; Persian digits accepted; a year before 1700 is read as Jalali.",
    )
    gender: Gender | None = None
    country_code: str | None = Field(
        default=None, min_length=2, max_length=2, pattern="^[A-Za-z]{2}$"
    )
    province: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=1000)
    education: str | None = Field(default=None, max_length=200)
    personality_type: str | None = Field(default=None, max_length=64)

    _birth = field_validator("birth_date", mode="before")(parse_birth_date)

    _birth_range = field_validator("birth_date")(check_birth_date)


class MemberConsentWrite(BaseModel):
    channel: Literal["sms", "email", "phone", "push"]
    granted: bool
