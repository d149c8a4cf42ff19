import pytest

from vafa.inventory.spec import SPEC
from vafa.kit.cli import ServiceSpec

pytest_plugins = ["vafa.kit.testing.plugin"]


@pytest.fixture(scope="session")
def service_spec() -> ServiceSpec:
    return SPEC
