from pathlib import Path

from vafa.kit.cli import ServiceSpec
from vafa.messaging.config import Settings
from vafa.messaging.worker import main as worker_main

SPEC = ServiceSpec(
    name="messaging",
    settings=Settings,
    app_factory="vafa.messaging.app:create_app",
    worker=worker_main,
    service_dir=Path(__file__).resolve().parents[3],
)
