from pathlib import Path

from vafa.kit.cli import ServiceSpec
from vafa.ticketing.config import Settings
from vafa.ticketing.worker import main as worker_main

SPEC = ServiceSpec(
    name="ticketing",
    settings=Settings,
    app_factory="vafa.ticketing.app:create_app",
    worker=worker_main,
    service_dir=Path(__file__).resolve().parents[3],
)
