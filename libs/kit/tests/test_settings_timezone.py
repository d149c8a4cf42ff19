import pytest
from pydantic import BaseModel, ValidationError

from vafa.kit.settings import TimeZone


class Shop(BaseModel):
    timezone: TimeZone = "UTC"


def test_a_known_zone_is_kept_and_an_unknown_one_refused() -> None:
    assert Shop(timezone="Asia/Tehran").timezone == "Asia/Tehran"
    assert Shop(timezone="Asia/Yerevan").timezone == "Asia/Yerevan"
    with pytest.raises(ValidationError, match="unknown time zone 'Asia/Tehrn'"):
        Shop(timezone="Asia/Tehrn")
