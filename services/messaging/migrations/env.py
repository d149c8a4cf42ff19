from vafa.kit.migrations import run_env
from vafa.messaging.config import Settings
from vafa.messaging.models import Base

run_env(Base.metadata, Settings().database_url)
