import pytest

from vafa.inventory.spec import SPEC
from vafa.kit.cli import ServiceSpec


@pytest.fixture(scope="session")
def service_spec() -> ServiceSpec:
    return SPEC
