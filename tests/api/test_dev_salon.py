"""``GET /_dev/salon``: the dev landing page's view of one salon — its own device and calls, never another's."""

from __future__ import annotations

import pytest

from .conftest import TestNode
from .test_webhook import connect, eventually

pytestmark = pytest.mark.integration


async def test_a_salon_sees_its_own_linked_device_and_activation_and_no_other_salons(node: TestNode) -> None:
    await connect(node, 7)
    await node.register(8)

    async def activated() -> dict[str, object] | None:
        body = (await node.http.get("/_dev/salon", params={"salon_id": 7})).json()
        return body if body["activation"] else None

    seven = await eventually(activated)
    assert seven["device"]["phone"] == "79001234567" and seven["device"]["live"] is True
    assert seven["activation"]["path"] == "/marketplace/partner/callback"
    assert 0 <= seven["activation"]["age_s"] < 60  # an age, not the fake's clock reading
    eight = (await node.http.get("/_dev/salon", params={"salon_id": 8})).json()
    assert (eight["known"], eight["device"], eight["activation"], eight["calls"]) == (True, None, None, [])
    unknown = (await node.http.get("/_dev/salon", params={"salon_id": 9})).json()
    assert unknown["known"] is False


@pytest.mark.parametrize("value", ["", "0", "-1", "abc", "1" * 20])
async def test_a_bad_salon_id_is_a_422(node: TestNode, value: str) -> None:
    answer = await node.http.get("/_dev/salon", params={"salon_id": value})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_salon_id"
