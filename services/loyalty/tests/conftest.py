import pytest

from vafa.kit.cli import ServiceSpec
from vafa.loyalty.spec import SPEC


@pytest.fixture(scope="session")
def service_spec() -> ServiceSpec:
    return SPEC
