import pytest

from vafa.kit.cli import ServiceSpec
from vafa.loyalty.spec import SPEC

pytest_plugins = ["vafa.kit.testing.plugin"]


@pytest.fixture(scope="session")
def service_spec() -> ServiceSpec:
    return SPEC
