from pathlib import Path

from vafa.kit.cli import ServiceSpec
from vafa.loyalty.config import Settings
from vafa.loyalty.points import cli
from vafa.loyalty.worker import main as worker_main

SPEC = ServiceSpec(
    name="loyalty",
    settings=Settings,
    app_factory="vafa.loyalty.app:create_app",
    worker=worker_main,
    service_dir=Path(__file__).resolve().parents[3],
    commands={"reconcile": cli.command},
)
