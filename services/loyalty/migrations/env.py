from vafa.kit.migrations import run_env
from vafa.loyalty.config import Settings
from vafa.loyalty.models import Base

run_env(Base.metadata, Settings().database_url)
