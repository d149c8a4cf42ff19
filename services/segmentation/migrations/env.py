from vafa.kit.migrations import run_env
from vafa.segmentation.config import Settings
from vafa.segmentation.models import Base

run_env(Base.metadata, Settings().database_url)
