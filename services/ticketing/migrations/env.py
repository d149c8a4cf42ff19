from vafa.kit.migrations import run_env
from vafa.ticketing.config import Settings
from vafa.ticketing.models import Base

run_env(Base.metadata, Settings().database_url)
