from sqlalchemy.orm import DeclarativeBase

from vafa.kit.db import new_metadata
from vafa.kit.inbox import inbox_table
from vafa.kit.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
