import pytest

from vafa.kit.cli import ServiceSpec
from vafa.messaging.spec import SPEC


@pytest.fixture(scope="session")
def service_spec() -> ServiceSpec:
    return SPEC
