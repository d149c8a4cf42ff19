from vafa.inventory.config import Settings
from vafa.inventory.models import Base
from vafa.kit.migrations import run_env

run_env(Base.metadata, Settings().database_url)
