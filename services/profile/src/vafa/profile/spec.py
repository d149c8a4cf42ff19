from pathlib import Path

from vafa.kit.cli import ServiceSpec
from vafa.profile.config import Settings
from vafa.profile.worker import main as worker_main

SPEC = ServiceSpec(
    name="profile",
    settings=Settings,
    app_factory="vafa.profile.app:create_app",
    worker=worker_main,
    service_dir=Path(__file__).resolve().parents[3],
)
