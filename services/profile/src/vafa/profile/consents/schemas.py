import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Channel(StrEnum):
    sms = "sms"
    email = "email"
    phone = "phone"
    push = "push"


class ConsentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: Channel
    granted: bool
    source: str = Field(description='Where it came from: "club", "staff", "sms_keyword", ...')
    changed_at: datetime


class ConsentWrite(BaseModel):
    channel: Channel
    granted: bool
    source: str = Field(
        default="staff",
        min_length=1,
        max_length=64,
        description='Where the change came from: "staff", "club", "import", "pos", ...',
    )
    changed_at: datetime | None = Field(
        default=None, description="When the customer gave it (default now)."
    )


class ConsentChangeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: Channel
    granted: bool
    source: str
    detail: dict[str, Any]
    changed_at: datetime


class ConsentsRead(BaseModel):
    current: list[ConsentRead] = Field(description="Per channel, the consent in force.")
    history: list[ConsentChangeRead] = Field(description="Every change, newest first.")


class UnsubscribeLinkCreate(BaseModel):
    channel: Channel


class UnsubscribeLinkRead(BaseModel):
    token: str = Field(description="Signed; put it in the message's unsubscribe URL.")
    path: str = Field(description="/v1/unsubscribe/{token}")


class UnsubscribeRead(BaseModel):
    channel: Channel
    granted: bool = Field(description="Whether messages on this channel are still allowed.")


class InboundSms(BaseModel):
    phone: str = Field(max_length=64, description="The sender, in any common form.")
    text: str = Field(max_length=2000, description="The message as received.")
    message_id: str | None = Field(
        default=None, max_length=200, description="The SMS gateway's id (kept in the history)."
    )


class InboundSmsResult(BaseModel):
    keyword: bool = Field(description="Whether the text is an opt-out keyword.")
    customer_id: uuid.UUID | None = Field(description="The file of the sender, if known.")
    consent: ConsentRead | None = Field(description="The SMS consent after the message.")
