import pytest

from vafa.kit.cli import ServiceSpec
from vafa.profile.spec import SPEC


@pytest.fixture(scope="session")
def service_spec() -> ServiceSpec:
    return SPEC
