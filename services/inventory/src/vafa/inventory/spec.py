from pathlib import Path

from vafa.inventory.config import Settings
from vafa.inventory.worker import main as worker_main
from vafa.kit.cli import ServiceSpec

SPEC = ServiceSpec(
    name="inventory",
    settings=Settings,
    app_factory="vafa.inventory.app:create_app",
    worker=worker_main,
    service_dir=Path(__file__).resolve().parents[3],
)
