from pathlib import Path

from vafa.kit.cli import ServiceSpec
from vafa.segmentation.config import Settings
from vafa.segmentation.worker import main as worker_main

SPEC = ServiceSpec(
    name="segmentation",
    settings=Settings,
    app_factory="vafa.segmentation.app:create_app",
    worker=worker_main,
    service_dir=Path(__file__).resolve().parents[3],
)
