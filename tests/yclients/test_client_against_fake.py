"""The client against the fake marketplace over real HTTP: every endpoint, and the fake's bad days."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from actor_admin.doubles.yclients import Fault
from actor_admin.yclients import (
    FinalError,
    NoThrottle,
    RetryableError,
    YClientsClient,
)
from tests._fake_yclients import APPLICATION_ID, PARTNER_TOKEN, FakeServer

API_KEY = "a" * 64
WEBHOOKS = ["http://our.example/webhook/yclients"]


async def activate(client: YClientsClient, salon_id: int = 42) -> bool:
    result = await client.activate(salon_id, api_key=API_KEY, webhook_urls=WEBHOOKS)
    return result.already_installed


async def test_activation_installs_the_salon(client: YClientsClient, fake_server: FakeServer) -> None:
    assert await activate(client) is False
    salon = fake_server.fake.salons[42]
    assert salon.api_key == API_KEY
    assert salon.webhook_urls == WEBHOOKS
    assert fake_server.fake.calls[-1]["status"] == 201


async def test_repeat_activation_is_already_installed(client: YClientsClient, fake_server: FakeServer) -> None:
    await activate(client)
    assert await activate(client) is True
    assert [c["status"] for c in fake_server.fake.calls] == [201, 403]


async def test_activation_via_redirect_endpoint(client: YClientsClient, fake_server: FakeServer) -> None:
    result = await client.activate(7, api_key=API_KEY, webhook_urls=WEBHOOKS, via_redirect=True)
    assert result.already_installed is False
    assert fake_server.fake.calls[-1]["path"] == "/marketplace/partner/callback/redirect"
    assert 7 in fake_server.fake.salons


async def test_bad_partner_token_is_final_401(fake_server: FakeServer) -> None:
    async with YClientsClient(
        api_url=fake_server.url, partner_token="wrong", application_id=APPLICATION_ID, throttle=NoThrottle()
    ) as yc:
        with pytest.raises(FinalError) as caught:
            await activate(yc)
    assert caught.value.status == 401
    assert fake_server.fake.salons == {}


async def test_wrong_application_id_is_final_422_with_field_errors(fake_server: FakeServer) -> None:
    async with YClientsClient(
        api_url=fake_server.url,
        partner_token=PARTNER_TOKEN,
        application_id=APPLICATION_ID + 1,
        throttle=NoThrottle(),
    ) as yc:
        with pytest.raises(FinalError) as caught:
            await activate(yc)
    assert caught.value.status == 422
    assert "application_id" in caught.value.errors


async def test_payment_then_refund(client: YClientsClient, fake_server: FakeServer) -> None:
    await activate(client)
    receipt = await client.report_payment(
        42,
        payment_sum=990.0,
        payment_date=datetime(2025, 3, 1, 12),
        period_from=datetime(2025, 3, 1),
        period_to=datetime(2025, 4, 1),
    )
    assert receipt.payment_id is not None
    assert fake_server.fake.payments[receipt.payment_id].payment_sum == 990.0
    await client.refund_payment(receipt.payment_id)
    assert fake_server.fake.payments[receipt.payment_id].refunded is True


async def test_second_refund_is_final(client: YClientsClient) -> None:
    await activate(client)
    receipt = await client.report_payment(
        42,
        payment_sum=1,
        payment_date="2025-03-01 00:00:00",
        period_from="2025-03-01 00:00:00",
        period_to="2025-04-01 00:00:00",
    )
    assert receipt.payment_id is not None
    await client.refund_payment(receipt.payment_id)
    with pytest.raises(FinalError) as caught:
        await client.refund_payment(receipt.payment_id)
    assert caught.value.status == 422


async def test_payment_for_uninstalled_salon_is_final_404(client: YClientsClient) -> None:
    with pytest.raises(FinalError) as caught:
        await client.report_payment(
            5,
            payment_sum=1,
            payment_date="2025-03-01 00:00:00",
            period_from="2025-03-01 00:00:00",
            period_to="2025-04-01 00:00:00",
        )
    assert caught.value.status == 404


async def test_malformed_payment_time_is_final_422(client: YClientsClient) -> None:
    await activate(client)
    with pytest.raises(FinalError) as caught:
        await client.report_payment(
            42,
            payment_sum=1,
            payment_date="01.03.2025",
            period_from="2025-03-01 00:00:00",
            period_to="2025-04-01 00:00:00",
        )
    assert set(caught.value.errors) == {"payment_date"}


async def test_installation_status_shows_logs_and_payments(client: YClientsClient) -> None:
    await activate(client)
    await client.report_payment(
        42,
        payment_sum=5,
        payment_date="2025-03-01 00:00:00",
        period_from="2025-03-01 00:00:00",
        period_to="2025-04-01 00:00:00",
    )
    status = await client.installation_status(42)
    assert status is not None
    assert status.connection_status == "active"
    assert len(status.logs) == 1
    assert [p["payment_sum"] for p in status.payments] == [5]


async def test_installation_status_of_unknown_salon_is_none(client: YClientsClient) -> None:
    assert await client.installation_status(99) is None


async def test_partner_side_uninstall_is_idempotent(client: YClientsClient, fake_server: FakeServer) -> None:
    await activate(client)
    assert await client.uninstall(42) is True
    assert await client.uninstall(42) is False
    assert await client.installation_status(42) is None


async def test_salons_are_listed_in_pages(client: YClientsClient) -> None:
    for salon_id in (3, 1, 2):
        await activate(client, salon_id)
    first = await client.list_salons(page=1, count=2)
    second = await client.list_salons(page=2, count=2)
    assert [s["id"] for s in first.salons] == [1, 2]
    assert [s["id"] for s in second.salons] == [3]
    assert first.meta["total_count"] == 3


async def test_short_names_are_stored(client: YClientsClient, fake_server: FakeServer) -> None:
    await activate(client)
    await client.set_short_names(42, ["SALON"])
    assert fake_server.fake.salons[42].short_names == ["SALON"]


async def test_empty_short_names_are_final_422(client: YClientsClient) -> None:
    await activate(client)
    with pytest.raises(FinalError) as caught:
        await client.set_short_names(42, [])
    assert "short_names" in caught.value.errors


async def test_payment_link_has_a_url(client: YClientsClient) -> None:
    url = await client.payment_link(42, discount=15)
    assert url.startswith("https://")
    assert "salon_id=42" in url and "discount=15" in url


async def test_tariffs_are_listed(client: YClientsClient) -> None:
    tariffs = await client.tariffs()
    assert tariffs and all("price" in t for t in tariffs)


async def test_discount_applies_to_installed_salons(client: YClientsClient, fake_server: FakeServer) -> None:
    await activate(client, 1)
    await activate(client, 2)
    await client.add_discount([1, 2], discount=20)
    assert [s.discount for s in fake_server.fake.salons.values()] == [20.0, 20.0]


async def test_channel_can_be_switched_off(client: YClientsClient, fake_server: FakeServer) -> None:
    await activate(client)
    await client.update_channel(42, channel_slug="whatsapp", is_available=False)
    assert fake_server.fake.salons[42].channels == {"whatsapp": False}


async def test_unknown_channel_is_final_422(client: YClientsClient) -> None:
    await activate(client)
    with pytest.raises(FinalError) as caught:
        await client.update_channel(42, channel_slug="telegram", is_available=True)
    assert "channel_slug" in caught.value.errors


async def test_html_fault_is_retryable(client: YClientsClient, fake_server: FakeServer) -> None:
    fake_server.fake.add_fault(Fault(path="/marketplace/partner/callback", html=True))
    with pytest.raises(RetryableError):
        await activate(client)
    assert fake_server.fake.salons == {}
    assert await activate(client) is False


async def test_429_fault_carries_retry_after(client: YClientsClient, fake_server: FakeServer) -> None:
    fake_server.fake.add_fault(Fault(path="/marketplace/*", status=429, retry_after=3))
    with pytest.raises(RetryableError) as caught:
        await client.tariffs()
    assert caught.value.status == 429
    assert caught.value.retry_after == 3.0


async def test_each_503_of_a_run_is_retryable_until_the_call_lands(
    client: YClientsClient, fake_server: FakeServer
) -> None:
    fake_server.fake.add_fault(Fault(path="/marketplace/partner/callback", status=503, times=3))
    for _ in range(3):
        with pytest.raises(RetryableError):
            await activate(client)
    assert await activate(client) is False
    assert [c["status"] for c in fake_server.fake.calls] == [503, 503, 503, 201]
    assert client.statistics().outcomes == {("partner_callback", "503"): 3, ("partner_callback", "201"): 1}


async def test_timed_out_activation_that_landed_is_already_installed_on_retry(
    fake_server: FakeServer,
) -> None:
    # The server did the work but was slow to say so: the retry meets "already installed", a success.
    fake_server.fake.add_fault(Fault(path="/marketplace/partner/callback", delay_s=5.0))
    async with YClientsClient(
        api_url=fake_server.url,
        partner_token=PARTNER_TOKEN,
        application_id=APPLICATION_ID,
        throttle=NoThrottle(),
        timeout_s=0.2,
    ) as yc:
        with pytest.raises(RetryableError, match="timed out"):
            await activate(yc)
        assert 42 in fake_server.fake.salons
        assert await activate(yc) is True
    assert yc.statistics().outcomes == {("partner_callback", "timeout"): 1, ("partner_callback", "403"): 1}


async def test_token_stays_out_of_logs_over_real_http(
    fake_server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with YClientsClient(
        api_url=fake_server.url, partner_token=PARTNER_TOKEN, application_id=APPLICATION_ID, throttle=NoThrottle()
    ) as yc:
        await activate(yc)
        fake_server.fake.add_fault(Fault(path="/marketplace/*", status=500))
        with pytest.raises(RetryableError) as caught:
            await yc.tariffs()
    assert caplog.records
    assert PARTNER_TOKEN not in caplog.text
    assert PARTNER_TOKEN not in str(caught.value)
