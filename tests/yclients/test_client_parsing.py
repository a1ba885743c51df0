"""How the client judges YClients' answers: status, then ``success``, then ``errors`` / ``meta.message``.

Canned answers through ``httpx.MockTransport``, so every documented (and undocumented) shape is covered,
including those the fake never produces. The same client against the fake over HTTP is in
test_client_against_fake.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
import trio.testing

from actor_admin.yclients import (
    ALREADY_INSTALLED_MESSAGE,
    FinalError,
    NoThrottle,
    Outcome,
    RetryableError,
    TokenBucket,
    YClientsClient,
)
from actor_admin.yclients._client import parse_retry_after

TOKEN = "secret-partner-token-xyz"


class Canned:
    """A transport answering every request with one canned response, remembering the requests."""

    def __init__(self, status: int = 200, body: Any = None, *, text: str | None = None, **headers: str) -> None:
        self.status = status
        self.body = body
        self.text = text
        self.headers = {k.replace("_", "-"): v for k, v in headers.items()}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.text is not None:
            return httpx.Response(self.status, text=self.text, headers=self.headers)
        if self.body is None:
            return httpx.Response(self.status, headers=self.headers)
        return httpx.Response(self.status, json=self.body, headers=self.headers)


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., YClientsClient]]:
    made: list[YClientsClient] = []

    def make(canned: Canned, **kwargs: Any) -> YClientsClient:
        kwargs.setdefault("throttle", NoThrottle())
        yc = YClientsClient(
            api_url="https://api.example/base",
            partner_token=TOKEN,
            application_id=5,
            transport=httpx.MockTransport(canned),
            **kwargs,
        )
        made.append(yc)
        return yc

    yield make
    for yc in made:
        await yc.aclose()


ACTIVATE = {"api_key": "k" * 32, "webhook_urls": ["https://us.example/webhook/yclients"]}


async def test_activation_request_has_headers_path_and_body(make_client: Any) -> None:
    canned = Canned(201, {"success": True, "data": None, "meta": []})
    result = await make_client(canned).activate(42, channels=["whatsapp"], **ACTIVATE)
    assert result.already_installed is False
    (request,) = canned.requests
    assert request.method == "POST"
    assert str(request.url) == "https://api.example/base/marketplace/partner/callback"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/vnd.yclients.v2+json"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "salon_id": 42,
        "application_id": 5,
        "api_key": "k" * 32,
        "webhook_urls": ["https://us.example/webhook/yclients"],
        "channels": ["whatsapp"],
    }


async def test_activation_via_redirect_accepts_bare_success(make_client: Any) -> None:
    canned = Canned(200, {"success": True})
    result = await make_client(canned).activate(42, via_redirect=True, **ACTIVATE)
    assert result.already_installed is False
    assert canned.requests[0].url.path == "/base/marketplace/partner/callback/redirect"


async def test_activation_via_redirect_accepts_the_old_301(make_client: Any) -> None:
    canned = Canned(301, text="", location="https://yclients.com/")
    result = await make_client(canned).activate(42, via_redirect=True, **ACTIVATE)
    assert result.already_installed is False


async def test_already_installed_403_is_success(make_client: Any) -> None:
    canned = Canned(403, {"success": False, "data": None, "meta": {"message": ALREADY_INSTALLED_MESSAGE}})
    result = await make_client(canned).activate(42, **ACTIVATE)
    assert result.already_installed is True


async def test_other_403_is_final(make_client: Any) -> None:
    canned = Canned(403, {"success": False, "data": None, "meta": {"message": "Нет доступа"}})
    with pytest.raises(FinalError) as caught:
        await make_client(canned).activate(42, **ACTIVATE)
    assert caught.value.status == 403
    assert caught.value.message == "Нет доступа"


async def test_401_is_final_with_yclients_message(make_client: Any) -> None:
    canned = Canned(401, {"success": False, "data": None, "meta": {"message": "Необходима авторизация"}})
    with pytest.raises(FinalError) as caught:
        await make_client(canned).activate(42, **ACTIVATE)
    assert caught.value.status == 401
    assert "Необходима авторизация" in str(caught.value)


async def test_422_keeps_field_errors(make_client: Any) -> None:
    errors = {"salon_id": ["Поле salon_id обязательно."]}
    canned = Canned(422, {"success": False, "data": None, "meta": {"message": "Ошибка", "errors": errors}})
    with pytest.raises(FinalError) as caught:
        await make_client(canned).activate(42, **ACTIVATE)
    assert caught.value.status == 422
    assert caught.value.errors == errors


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"errors": {"code": 400, "message": "Агрегатор не найден"}}, "Агрегатор не найден"),
        ({"errors": [{"message": "first"}, "second"]}, "first; second"),
        ({"errors": {"salon_id": ["bad id"], "x": "worse"}}, "bad id; worse"),
        ({"errors": "plain"}, "plain"),
        ({"success": False, "message": "top-level"}, "top-level"),
    ],
)
async def test_400_messages_from_every_errors_shape(make_client: Any, body: Any, message: str) -> None:
    with pytest.raises(FinalError) as caught:
        await make_client(Canned(400, body)).activate(42, **ACTIVATE)
    assert caught.value.message == message


async def test_4xx_without_message_falls_back_to_reason(make_client: Any) -> None:
    with pytest.raises(FinalError) as caught:
        await make_client(Canned(404, {})).tariffs()
    assert caught.value.message == "Not Found"


async def test_success_false_on_200_is_final(make_client: Any) -> None:
    canned = Canned(200, {"success": False, "data": None, "meta": {"message": "Отклонено"}})
    with pytest.raises(FinalError) as caught:
        await make_client(canned).add_discount([1], discount=10)
    assert caught.value.message == "Отклонено"


@pytest.mark.parametrize("status", [200, 201, 400, 403])
async def test_html_answer_is_retryable_whatever_the_status(make_client: Any, status: int) -> None:
    canned = Canned(status, text="<html><body>Bad Gateway</body></html>", content_type="text/html")
    with pytest.raises(RetryableError) as caught:
        await make_client(canned).activate(42, **ACTIVATE)
    assert "text/html" in caught.value.message


async def test_json_that_is_not_an_object_is_retryable(make_client: Any) -> None:
    with pytest.raises(RetryableError):
        await make_client(Canned(200, [1, 2, 3])).tariffs()


async def test_empty_2xx_body_is_success(make_client: Any) -> None:
    await make_client(Canned(200)).refund_payment(9)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retryable(make_client: Any, status: int) -> None:
    with pytest.raises(RetryableError) as caught:
        await make_client(Canned(status, {"success": False, "meta": {"message": "down"}})).tariffs()
    assert caught.value.status == status
    assert caught.value.message == "down"


async def test_429_is_retryable_with_retry_after_seconds(make_client: Any) -> None:
    canned = Canned(429, text="slow down", retry_after="7")
    with pytest.raises(RetryableError) as caught:
        await make_client(canned).tariffs()
    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0


def test_retry_after_http_date_is_measured_against_date_header() -> None:
    response = httpx.Response(
        503,
        headers={"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT", "Date": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )
    assert parse_retry_after(response) == 30.0


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "soon"}, {"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}])
def test_unusable_retry_after_is_none(headers: dict[str, str]) -> None:
    assert parse_retry_after(httpx.Response(503, headers=headers)) is None


def test_negative_retry_after_is_zero() -> None:
    assert parse_retry_after(httpx.Response(429, headers={"Retry-After": "-3"})) == 0.0


class Raises(Canned):
    def __init__(self, error: type[httpx.TransportError]) -> None:
        super().__init__()
        self.error = error

    def __call__(self, request: httpx.Request) -> httpx.Response:
        raise self.error("simulated", request=request)


async def test_connection_error_is_retryable(make_client: Any) -> None:
    yc = make_client(Raises(httpx.ConnectError))
    with pytest.raises(RetryableError, match="connection failed"):
        await yc.tariffs()
    assert yc.statistics().outcomes == {("tariffs", "connection_error"): 1}


async def test_timeout_is_retryable(make_client: Any) -> None:
    yc = make_client(Raises(httpx.ReadTimeout))
    with pytest.raises(RetryableError, match="timed out"):
        await yc.tariffs()
    assert yc.statistics().outcomes == {("tariffs", "timeout"): 1}


async def test_payment_sends_formatted_times_and_returns_id(make_client: Any) -> None:
    canned = Canned(201, {"success": True, "data": {"id": 314}, "meta": []})
    receipt = await make_client(canned).report_payment(
        42,
        payment_sum=990,
        payment_date=datetime(2025, 1, 2, 3, 4, 5),
        period_from=datetime(2025, 1, 2),
        period_to="2025-02-02 00:00:00",
    )
    assert receipt.payment_id == 314
    assert json.loads(canned.requests[0].content) == {
        "salon_id": 42,
        "application_id": 5,
        "payment_sum": 990,
        "currency_iso": "RUB",
        "payment_date": "2025-01-02 03:04:05",
        "period_from": "2025-01-02 00:00:00",
        "period_to": "2025-02-02 00:00:00",
    }


async def test_payment_without_id_gives_none(make_client: Any) -> None:
    receipt = await make_client(Canned(201, {"success": True, "data": None})).report_payment(
        1, payment_sum=1, payment_date="x", period_from="x", period_to="x"
    )
    assert receipt.payment_id is None


async def test_status_404_means_not_installed(make_client: Any) -> None:
    canned = Canned(404, {"success": False, "data": None, "meta": {"message": "not installed"}})
    assert await make_client(canned).installation_status(42) is None


async def test_uninstall_404_is_false(make_client: Any) -> None:
    canned = Canned(404, {"success": False, "data": None, "meta": {"message": "not installed"}})
    assert await make_client(canned).uninstall(42) is False


async def test_payment_link_without_url_is_retryable(make_client: Any) -> None:
    with pytest.raises(RetryableError):
        await make_client(Canned(200, {"success": True, "data": {}})).payment_link(42)


async def test_salons_count_is_bounded(make_client: Any) -> None:
    with pytest.raises(ValueError):
        await make_client(Canned(200, {"success": True, "data": []})).list_salons(count=1001)


async def test_outcomes_are_counted_and_reported(make_client: Any) -> None:
    seen: list[Outcome] = []
    yc = make_client(Canned(503, text="<html/>", content_type="text/html"), on_outcome=seen.append)
    for _ in range(2):
        with pytest.raises(RetryableError):
            await yc.tariffs()
    assert yc.statistics().outcomes == {("tariffs", "503"): 2}
    assert yc.statistics().calls_total == 2
    assert [(o.endpoint, o.status, o.result) for o in seen] == [("tariffs", "503", "retryable")] * 2


async def test_not_json_outcome_has_its_own_label(make_client: Any) -> None:
    yc = make_client(Canned(200, text="<html/>", content_type="text/html"))
    with pytest.raises(RetryableError):
        await yc.tariffs()
    assert yc.statistics().outcomes == {("tariffs", "not_json"): 1}


async def test_requests_go_through_the_throttle(make_client: Any, autojump_clock: trio.testing.MockClock) -> None:
    yc = make_client(Canned(200, {"success": True, "data": []}), throttle=TokenBucket(rate=5.0))
    start = trio.current_time()
    for _ in range(6):
        await yc.tariffs()
    assert trio.current_time() - start == pytest.approx(1.0)


async def test_token_never_leaks_into_repr_errors_or_logs(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    yc = make_client(Canned(401, {"success": False, "meta": {"message": "no"}}))
    with pytest.raises(FinalError) as caught:
        await yc.activate(1, **ACTIVATE)
    assert TOKEN not in repr(yc)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert caplog.records, "expected the call to be logged"
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert TOKEN not in caplog.text
