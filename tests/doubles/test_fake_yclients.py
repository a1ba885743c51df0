"""The fake marketplace itself over real HTTP: YClients' envelopes, the control API, faults, installs,
webhooks, and both ways of mounting it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio
from quart import request
from quart_trio import QuartTrio

from actor_admin.config import load_settings
from actor_admin.doubles.yclients import (
    create_fake_yclients,
    create_standalone_app,
    make_blueprints,
    serve_fake_yclients,
)
from actor_admin.yclients import NoThrottle, YClientsClient, verify_user_data
from tests._fake_yclients import APPLICATION_ID, PARTNER_TOKEN, FakeServer, serve_app

AUTH = {"Authorization": f"Bearer {PARTNER_TOKEN}"}
CALLBACK = "/marketplace/partner/callback"
GOOD_BODY = {"salon_id": 42, "application_id": APPLICATION_ID, "api_key": "our-key", "webhook_urls": []}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def meta(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["success"] is False and body["data"] is None
    return dict(body["meta"])


# -- the API -------------------------------------------------------------------------------------------


async def test_activation_answers_201_envelope(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    response = await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    assert response.status_code == 201
    assert response.json()["success"] is True


async def test_redirect_activation_answers_bare_success(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    response = await http.post(fake_server.url + CALLBACK + "/redirect", json=GOOD_BODY, headers=AUTH)
    assert (response.status_code, response.json()) == (200, {"success": True})


async def test_repeat_activation_answers_403_already_installed(
    fake_server: FakeServer, http: httpx.AsyncClient
) -> None:
    await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    response = await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    assert response.status_code == 403
    assert meta(response)["message"] == "Пользователь уже установил это приложение."


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {PARTNER_TOKEN}"}, {"Authorization": "Bearer"}],
)
async def test_bad_bearer_answers_401(
    fake_server: FakeServer, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=headers)
    assert response.status_code == 401
    assert meta(response)["message"]


async def test_bearer_with_user_token_is_accepted(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {PARTNER_TOKEN}, User abc"}
    response = await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=headers)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"salon_id": None}, "salon_id"),
        ({"salon_id": "42"}, "salon_id"),
        ({"salon_id": True}, "salon_id"),
        ({"salon_id": -1}, "salon_id"),
        ({"application_id": None}, "application_id"),
        ({"application_id": APPLICATION_ID + 1}, "application_id"),
        ({"application_id": "77"}, "application_id"),
        ({"api_key": 5}, "api_key"),
        ({"webhook_urls": "http://x"}, "webhook_urls"),
        ({"channels": [1]}, "channels"),
    ],
)
async def test_bad_activation_body_answers_422_with_field_errors(
    fake_server: FakeServer, http: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**GOOD_BODY, **change}.items() if v is not None}
    response = await http.post(fake_server.url + CALLBACK, json=body, headers=AUTH)
    assert response.status_code == 422
    assert list(meta(response)["errors"]) == [field]
    assert fake_server.fake.salons == {}


async def test_malformed_json_answers_400(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    response = await http.post(
        fake_server.url + CALLBACK, content=b'{"salon_id": ', headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert meta(response)["message"]


@pytest.mark.parametrize("content", [b"[1, 2]", b"", b'"text"', b"\xff\xfe"])
async def test_body_that_is_not_an_object_is_refused(
    fake_server: FakeServer, http: httpx.AsyncClient, content: bytes
) -> None:
    response = await http.post(fake_server.url + CALLBACK, content=content, headers=AUTH)
    assert response.status_code in (400, 422)
    assert meta(response)["message"]


async def test_unknown_path_answers_404_envelope(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    response = await http.get(fake_server.url + "/marketplace/nothing/here", headers=AUTH)
    assert response.status_code == 404
    assert meta(response)["message"]


async def test_wrong_method_answers_405_envelope(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    response = await http.get(fake_server.url + CALLBACK, headers=AUTH)
    assert response.status_code == 405
    assert "POST" in meta(response)["message"]


@pytest.mark.parametrize("query", ["count=1001", "count=abc", "page=0"])
async def test_bad_salons_query_answers_422(fake_server: FakeServer, http: httpx.AsyncClient, query: str) -> None:
    url = f"{fake_server.url}/marketplace/application/{APPLICATION_ID}/salons?{query}"
    response = await http.get(url, headers=AUTH)
    assert response.status_code == 422


async def test_status_of_other_application_is_404(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    response = await http.get(f"{fake_server.url}/marketplace/salon/42/application/{APPLICATION_ID + 1}", headers=AUTH)
    assert response.status_code == 404


# -- calls ---------------------------------------------------------------------------------------------


async def test_calls_are_listed_oldest_first_with_their_fields(
    fake_server: FakeServer, http: httpx.AsyncClient
) -> None:
    await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    await http.get(f"{fake_server.url}/marketplace/application/{APPLICATION_ID}/tariffs", headers=AUTH)
    calls = (await http.get(fake_server.control + "/calls")).json()
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("POST", CALLBACK, 201),
        ("GET", f"/marketplace/application/{APPLICATION_ID}/tariffs", 200),
    ]
    assert calls[0]["json"] == GOOD_BODY
    assert calls[0]["at"] <= calls[1]["at"]


async def test_calls_keep_our_api_key_but_never_the_partner_token(
    fake_server: FakeServer, http: httpx.AsyncClient
) -> None:
    await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers={"Authorization": "Bearer wrong"})
    text = (await http.get(fake_server.control + "/calls")).text
    assert "our-key" in text
    assert PARTNER_TOKEN not in text
    assert "Bearer" not in text and "uthorization" not in text


async def test_calls_record_refused_and_malformed_requests(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    await http.post(fake_server.url + CALLBACK, content=b"{oops", headers=AUTH)
    (call,) = (await http.get(fake_server.control + "/calls")).json()
    assert (call["status"], call["json"]) == (400, None)


async def test_calls_can_be_filtered_by_path(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    await http.get(f"{fake_server.url}/marketplace/application/{APPLICATION_ID}/tariffs", headers=AUTH)
    calls = (await http.get(fake_server.control + "/calls", params={"path": "*/tariffs"})).json()
    assert [c["method"] for c in calls] == ["GET"]


async def test_reset_forgets_everything(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    await http.post(fake_server.control + "/faults", json={"path": CALLBACK, "status": 500})
    assert (await http.post(fake_server.control + "/reset")).status_code == 200
    assert (await http.get(fake_server.control + "/calls")).json() == []
    assert (await http.get(fake_server.control + "/state")).json()["salons"] == []
    assert (await http.get(fake_server.control + "/faults")).json() == []


# -- faults --------------------------------------------------------------------------------------------


async def test_status_fault_applies_the_given_number_of_times(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    added = await http.post(fake_server.control + "/faults", json={"path": CALLBACK, "status": 503, "times": 2})
    assert added.status_code == 201
    statuses = [
        (await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)).status_code for _ in range(3)
    ]
    assert statuses == [503, 503, 201]


async def test_html_fault_answers_an_html_page(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    await http.post(fake_server.control + "/faults", json={"path": CALLBACK, "html": True, "times": 1})
    response = await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().startswith("<!DOCTYPE html>")
    assert fake_server.fake.salons == {}


async def test_fault_path_may_be_the_mounted_path(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    await http.post(fake_server.control + "/faults", json={"path": "/_dev/yclients/api" + CALLBACK, "status": 500})
    response = await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    assert response.status_code == 500


async def test_fault_matches_only_its_path(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    await http.post(fake_server.control + "/faults", json={"path": CALLBACK + "/redirect", "status": 500})
    response = await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    assert response.status_code == 201


async def test_delay_fault_slows_the_answer(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    await http.post(fake_server.control + "/faults", json={"path": CALLBACK, "delay_s": 0.1})
    start = trio.current_time()
    response = await http.post(fake_server.url + CALLBACK, json=GOOD_BODY, headers=AUTH)
    assert response.status_code == 201
    assert trio.current_time() - start >= 0.1


@pytest.mark.parametrize(
    "body",
    [
        {"status": 500},
        {"path": CALLBACK},
        {"path": CALLBACK, "status": "500"},
        {"path": CALLBACK, "status": 99},
        {"path": CALLBACK, "status": 500, "times": 0},
        {"path": CALLBACK, "html": "yes"},
        {"path": CALLBACK, "delay_s": -1},
        [1],
    ],
)
async def test_bad_fault_is_refused_with_422(fake_server: FakeServer, http: httpx.AsyncClient, body: Any) -> None:
    response = await http.post(fake_server.control + "/faults", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"]


async def test_malformed_fault_json_is_400(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    response = await http.post(fake_server.control + "/faults", content=b"{")
    assert response.status_code == 400


# -- install -------------------------------------------------------------------------------------------


def redirect_query(response: httpx.Response) -> dict[str, list[str]]:
    """The query our redirect route would see, parsed as a server parses it."""
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == "http://our.example"
    assert location.path == "/auth/yclients/redirect"
    return parse_qs(location.query)


async def test_install_redirects_with_verifiable_user_data(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    query = redirect_query(await http.get(fake_server.control + "/install", params={"salon_id": 42}))
    assert query["salon_id"] == ["42"]
    data = verify_user_data(query["user_data"][0], query["user_data_sign"][0], PARTNER_TOKEN)
    assert {"id", "name", "phone", "email", "is_approved", "avatar", "salon_name"} <= set(data)
    assert data["salon_name"]


async def test_install_user_data_is_url_safe_by_default(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    query = redirect_query(await http.get(fake_server.control + "/install", params={"salon_id": 42}))
    assert not {"+", "/"} & set(query["user_data"][0])


@pytest.mark.parametrize("encoding", ["urlsafe", "standard", "unpadded", "standard_raw"])
async def test_every_install_encoding_verifies(fake_server: FakeServer, http: httpx.AsyncClient, encoding: str) -> None:
    params: dict[str, str | int] = {"salon_id": 42, "encoding": encoding, "name": "Ёлка ~~~>>>???"}
    query = redirect_query(await http.get(fake_server.control + "/install", params=params))
    data = verify_user_data(query["user_data"][0], query["user_data_sign"][0], PARTNER_TOKEN)
    assert data["name"] == "Ёлка ~~~>>>???"


async def test_standard_raw_install_reaches_us_with_spaces(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    # "~~~>>>???" encodes to base64 with '+' and '/'; left unescaped, '+' arrives as ' '.
    params: dict[str, str | int] = {"salon_id": 42, "encoding": "standard_raw", "name": "~~~>>>???~~~>>>???"}
    query = redirect_query(await http.get(fake_server.control + "/install", params=params))
    assert " " in query["user_data"][0]


async def test_install_of_several_salons_uses_salon_ids_brackets(
    fake_server: FakeServer, http: httpx.AsyncClient
) -> None:
    response = await http.get(fake_server.control + "/install?salon_id=1&salon_id=2")
    query = redirect_query(response)
    assert query["salon_ids[]"] == ["1", "2"]
    assert "salon_id" not in query
    verify_user_data(query["user_data"][0], query["user_data_sign"][0], PARTNER_TOKEN)


async def test_install_of_several_salons_can_use_indexes(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    query = redirect_query(await http.get(fake_server.control + "/install?salon_ids=3,4&multi=indexed"))
    assert (query["salon_ids[0]"], query["salon_ids[1]"]) == (["3"], ["4"])


async def test_install_uses_the_given_salon_name(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    params: dict[str, str | int] = {"salon_id": 42, "salon_name": "Студия «Лак»"}
    query = redirect_query(await http.get(fake_server.control + "/install", params=params))
    data = verify_user_data(query["user_data"][0], query["user_data_sign"][0], PARTNER_TOKEN)
    assert data["salon_name"] == "Студия «Лак»"


@pytest.mark.parametrize("query", ["", "salon_id=", "salon_id=abc", "salon_id=-3", "salon_id=1&encoding=rot13"])
async def test_bad_install_request_is_refused(fake_server: FakeServer, http: httpx.AsyncClient, query: str) -> None:
    response = await http.get(fake_server.control + "/install?" + query)
    assert response.status_code in (400, 422)
    assert response.json()["error"]["code"]


# -- webhooks ------------------------------------------------------------------------------------------


async def receiver(nursery: trio.Nursery, answer: dict[str, Any], seen: list[dict[str, Any]]) -> str:
    """A tiny stand-in for our server's webhook route: records bodies, answers ``answer``."""
    app = QuartTrio("webhook_receiver")

    @app.post("/webhook/yclients")
    async def webhook() -> Any:
        seen.append(json.loads(await request.get_data()))
        return answer

    return await serve_app(nursery, app)


async def test_webhook_is_forwarded_and_our_answer_returned(nursery: trio.Nursery, http: httpx.AsyncClient) -> None:
    seen: list[dict[str, Any]] = []
    our_url = await receiver(nursery, {"success": True, "handled": "uninstall"}, seen)
    fake = create_fake_yclients(PARTNER_TOKEN, APPLICATION_ID, our_url)
    fake_url = await serve_app(nursery, create_standalone_app(fake))
    response = await http.post(fake_url + "/_fake/webhook", json={"salon_id": 42, "event": "uninstall"})
    assert response.json() == {"status": 200, "body": {"success": True, "handled": "uninstall"}}
    assert seen == [
        {"salon_id": 42, "application_id": APPLICATION_ID, "event": "uninstall", "partner_token": PARTNER_TOKEN}
    ]


async def test_webhook_can_carry_a_forged_token(nursery: trio.Nursery) -> None:
    seen: list[dict[str, Any]] = []
    fake = create_fake_yclients(PARTNER_TOKEN, APPLICATION_ID, await receiver(nursery, {"success": False}, seen))
    status, body = await fake.send_webhook(42, "freeze", partner_token="forged")
    assert (status, body) == (200, {"success": False})
    assert seen[0]["partner_token"] == "forged"


async def test_uninstall_webhook_removes_the_installation(nursery: trio.Nursery) -> None:
    fake = create_fake_yclients(PARTNER_TOKEN, APPLICATION_ID, await receiver(nursery, {}, []))
    await fake.handle_api("POST", CALLBACK, {}, f"Bearer {PARTNER_TOKEN}", json.dumps(GOOD_BODY).encode())
    assert 42 in fake.salons
    await fake.send_webhook(42, "uninstall")
    assert 42 not in fake.salons


async def test_freeze_webhook_freezes_the_installation(nursery: trio.Nursery) -> None:
    fake = create_fake_yclients(PARTNER_TOKEN, APPLICATION_ID, await receiver(nursery, {}, []))
    await fake.handle_api("POST", CALLBACK, {}, f"Bearer {PARTNER_TOKEN}", json.dumps(GOOD_BODY).encode())
    await fake.send_webhook(42, "freeze")
    assert fake.salons[42].connection_status == "frozen"


async def test_webhook_to_an_unreachable_server_is_502(fake_server: FakeServer, http: httpx.AsyncClient) -> None:
    # our.example is not served by anything here; resolution or connection fails.
    fake_server.fake.our_public_url = "http://127.0.0.1:9"
    response = await http.post(fake_server.control + "/webhook", json={"salon_id": 42, "event": "uninstall"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "webhook_failed"


@pytest.mark.parametrize(
    "body",
    [{"event": "uninstall"}, {"salon_id": "42", "event": "uninstall"}, {"salon_id": 42}, {"salon_id": 42, "event": 1}],
)
async def test_bad_webhook_request_is_422(fake_server: FakeServer, http: httpx.AsyncClient, body: Any) -> None:
    response = await http.post(fake_server.control + "/webhook", json=body)
    assert response.status_code == 422


# -- mounting ------------------------------------------------------------------------------------------


async def test_blueprints_mount_at_the_dev_prefixes(nursery: trio.Nursery, http: httpx.AsyncClient) -> None:
    fake = create_fake_yclients(PARTNER_TOKEN, APPLICATION_ID, "http://our.example")
    app = QuartTrio("dev_like")
    for blueprint in make_blueprints(fake):
        app.register_blueprint(blueprint)
    public_url = await serve_app(nursery, app)
    async with YClientsClient(
        api_url=public_url + "/_dev/yclients/api",
        partner_token=PARTNER_TOKEN,
        application_id=APPLICATION_ID,
        throttle=NoThrottle(),
    ) as yc:
        result = await yc.activate(42, api_key="k", webhook_urls=[])
    assert result.already_installed is False
    calls = (await http.get(public_url + "/_dev/yclients/calls")).json()
    assert [c["path"] for c in calls] == [CALLBACK]
    install = await http.get(public_url + "/_dev/yclients/install?salon_id=42")
    assert install.status_code == 302


async def test_serve_fake_yclients_uses_the_settings(nursery: trio.Nursery, http: httpx.AsyncClient) -> None:
    settings = load_settings(
        "dev",
        {
            "JWT_SECRET": "j" * 32,
            "ADMIN_TOKEN": "a" * 32,
            "CREDENTIALS_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "YCLIENTS_PARTNER_TOKEN": PARTNER_TOKEN,
            "YCLIENTS_APP_ID": "9",
            "PUBLIC_URL": "http://our.example",
        },
        dotenv=None,
    )
    binds = await nursery.start(serve_fake_yclients, "127.0.0.1", 0, settings)
    response = await http.post(binds[0] + CALLBACK, json={"salon_id": 1, "application_id": 9}, headers=AUTH)
    assert response.status_code == 201
    install = await http.get(binds[0] + "/_fake/install?salon_id=1")
    assert install.headers["location"].startswith("http://our.example/auth/yclients/redirect?")
