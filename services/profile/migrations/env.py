from vafa.kit.migrations import run_env
from vafa.profile.config import Settings
from vafa.profile.models import Base

run_env(Base.metadata, Settings().database_url)
