"""``GET /auth/yclients/redirect`` (docs/http-api.md#redirect): signed installs register salons and hand out
onboarding links in the URL fragment; everything else is refused and stores nothing."""

from __future__ import annotations

import html
import re
import time

import pytest

from actor_admin.api._tokens import verify_onboarding_token
from actor_admin.session import Freeze
from actor_admin.yclients import sign_user_data

from ._marketplace_helpers import frame_of, install_url, qr_shown, viewer
from .conftest import JWT_SECRET, PARTNER_TOKEN, TestNode

LINK = re.compile(r'href="(/marketplace/onboarding#token=[^"]+)"')


def token_of(location: str) -> str:
    path, _, fragment = location.partition("#")
    assert path == "/marketplace/onboarding"
    assert fragment.startswith("token=")
    return fragment.removeprefix("token=")


async def assert_nothing_stored(node: TestNode, salon_id: int) -> None:
    assert await node.services.store.companies.get(salon_id) is None
    assert await node.services.store.events.list(salon_id) == []


async def test_one_salon_is_registered_and_sent_to_the_connect_page_with_a_token_in_the_fragment(
    node: TestNode,
) -> None:
    response = await node.http.get(install_url(node, [101]))

    assert response.status_code == 302
    location = response.headers["location"]
    assert "?" not in location
    claims = verify_onboarding_token(JWT_SECRET, token_of(location), now=time.time())
    assert claims.salon_id == 101
    assert response.headers["cache-control"] == "no-store"
    company = await node.services.store.companies.get(101)
    assert company is not None and company.integration_status == "pending_whatsapp"
    assert company.title == node.services.fake_yclients.salon_name(101)
    assert [e.type for e in await node.services.store.events.list(101)] == ["registration_started"]


async def test_the_registration_event_holds_no_secret(node: TestNode) -> None:
    url = install_url(node, [102])
    await node.http.get(url)

    (event,) = await node.services.store.events.list(102)
    text = repr(event.data)
    sign = url.rsplit("user_data_sign=", 1)[1]
    assert sign not in text and PARTNER_TOKEN not in text


@pytest.mark.parametrize("multi", ["brackets", "indexed"])
async def test_several_salons_get_a_page_with_one_link_each(node: TestNode, multi: str) -> None:
    url = install_url(node, [201, 202, 203], multi=multi)
    assert ("salon_ids%5B%5D" in url) == (multi == "brackets")

    response = await node.http.get(url)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    links = [html.unescape(href) for href in LINK.findall(response.text)]
    salons = [verify_onboarding_token(JWT_SECRET, token_of(link), now=time.time()).salon_id for link in links]
    assert salons == [201, 202, 203]
    assert "{{" not in response.text
    for salon_id in (201, 202, 203):
        company = await node.services.store.companies.get(salon_id)
        assert company is not None and company.integration_status == "pending_whatsapp"


@pytest.mark.parametrize("encoding", ["urlsafe", "standard", "unpadded", "standard_raw"])
async def test_user_data_is_accepted_in_every_base64_variant(node: TestNode, encoding: str) -> None:
    response = await node.http.get(install_url(node, [301], encoding=encoding))

    assert response.status_code == 302
    assert await node.services.store.companies.get(301) is not None


async def test_user_fields_are_stored_from_user_data(node: TestNode) -> None:
    payload = '{"id":77,"name":"Анна","phone":"79001234567","email":"a@example.com","salon_name":"Лотос"}'
    user_data, sign = sign_user_data(payload.encode(), PARTNER_TOKEN)

    response = await node.http.get(
        "/auth/yclients/redirect", params={"salon_id": "302", "user_data": user_data, "user_data_sign": sign}
    )

    assert response.status_code == 302
    company = await node.services.store.companies.get(302)
    assert company is not None and company.title == "Лотос"
    (event,) = await node.services.store.events.list(302)
    assert event.data["user_id"] == "77"


async def test_missing_signature_is_refused_with_403_and_stores_nothing(node: TestNode) -> None:
    url = install_url(node, [401]).split("&user_data_sign=")[0]

    response = await node.http.get(url)

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Ссылка не прошла проверку" in response.text and "failed verification" in response.text
    assert response.text.index("Ссылка не прошла проверку") < response.text.index("failed verification")
    await assert_nothing_stored(node, 401)


async def test_bad_signature_is_refused_with_403_and_stores_nothing(node: TestNode) -> None:
    url = install_url(node, [402])
    sign = url.rsplit("=", 1)[1]
    forged = url[: -len(sign)] + ("0" if sign[0] != "0" else "1") + sign[1:]

    response = await node.http.get(forged)

    assert response.status_code == 403
    await assert_nothing_stored(node, 402)


async def test_a_signature_made_with_another_partner_token_is_refused(node: TestNode) -> None:
    user_data, sign = sign_user_data(b'{"id":1}', "someone-elses-token")

    response = await node.http.get(
        "/auth/yclients/redirect", params={"salon_id": "403", "user_data": user_data, "user_data_sign": sign}
    )

    assert response.status_code == 403
    await assert_nothing_stored(node, 403)


async def test_no_salon_id_is_refused_with_a_400_page_russian_first(node: TestNode) -> None:
    url = install_url(node, [404]).replace("salon_id=404&", "")

    response = await node.http.get(url)

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.index("Не указан салон") < response.text.index("No salon given")
    assert "{{" not in response.text
    await assert_nothing_stored(node, 404)


@pytest.mark.parametrize("bad", ["abc", "0", "-5", "1.5", "", "9" * 30, "<script>"])
async def test_a_salon_id_that_is_not_a_positive_number_is_refused_with_400(node: TestNode, bad: str) -> None:
    url = install_url(node, [405]).replace("salon_id=405", "salon_id=" + bad)

    response = await node.http.get(url)

    assert response.status_code == 400
    assert "<script>" not in response.text
    await assert_nothing_stored(node, 405)


async def test_reinstalling_an_uninstalled_salon_makes_it_pending_whatsapp_again(node: TestNode) -> None:
    await node.register(501)
    await node.services.store.companies.mark_uninstalled(501)

    response = await node.http.get(install_url(node, [501]))

    assert response.status_code == 302
    company = await node.services.store.companies.get(501)
    assert company is not None and company.integration_status == "pending_whatsapp"


async def test_reinstalling_wakes_a_frozen_session(node: TestNode) -> None:
    await node.register(502)
    await node.services.router.ask(502, Freeze())
    await node.services.store.companies.mark_frozen(502)
    assert node.services.registry.get(502).state == "frozen"  # type: ignore[union-attr]

    await node.http.get(install_url(node, [502]))

    view = node.services.registry.get(502)
    assert view is not None and view.state not in ("frozen", "uninstalled")


async def test_an_active_salon_stays_active_and_its_page_shows_it_connected(node: TestNode) -> None:
    await node.register(503)
    node.core.scan(await qr_shown(node, 503), "79005550303")
    await node.services.registry.wait_state(503, "connected")
    await node.services.store.companies.set_integration_status(503, "active")

    response = await node.http.get(install_url(node, [503]))

    company = await node.services.store.companies.get(503)
    assert company is not None and company.integration_status == "active"
    async with viewer(node.ws_url, token_of(response.headers["location"])) as ws:
        state = await frame_of(ws, "state")
    assert state["state"] == "connected" and state["phone"] == "79005550303"
