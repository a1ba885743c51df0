"""The outbox worker against real PostgreSQL and the fake marketplace over real HTTP.

Every test starts the way production does: ``record_connection`` writes "WhatsApp connected" and the
activation row in one transaction; the worker then has to turn that row into exactly one effective
activation at YClients, whatever YClients answers on the way.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
import trio

from actor_admin.backoff import Backoff
from actor_admin.doubles.yclients import Fault
from actor_admin.store import Store
from actor_admin.yclients import (
    DEADLINE_PASSED,
    NoThrottle,
    OutboxWorker,
    YClientsClient,
    run_outbox_worker,
)
from tests._fake_yclients import APPLICATION_ID, OUR_PUBLIC_URL, PARTNER_TOKEN, FakeServer

CALLBACK = "/marketplace/partner/callback"
PHONE = "79001234567"


def payload_for(salon_id: int) -> Callable[[str], Mapping[str, Any]]:
    """What ``node.activation_payload`` builds, for the fake's application."""
    return lambda api_key: {
        "salon_id": salon_id,
        "application_id": APPLICATION_ID,
        "api_key": api_key,
        "webhook_urls": [OUR_PUBLIC_URL + "/webhook/yclients"],
        "channels": ["whatsapp"],
    }


async def connected(store: Store, salon_id: int, *, window_s: float = 3600.0) -> int:
    """A registered salon whose WhatsApp just connected: ``activating`` with its activation row."""
    await store.companies.upsert_registration(salon_id, title=f"Salon {salon_id}")
    record = await store.companies.record_connection(
        salon_id, PHONE, activation_payload=payload_for(salon_id), window_s=window_s
    )
    assert record is not None and record.outbox_id is not None
    return record.outbox_id


@asynccontextmanager
async def yclients(fake_server: FakeServer, *, timeout_s: float = 2.0) -> AsyncIterator[YClientsClient]:
    async with YClientsClient(
        api_url=fake_server.url,
        partner_token=PARTNER_TOKEN,
        application_id=APPLICATION_ID,
        throttle=NoThrottle(),
        timeout_s=timeout_s,
    ) as client:
        yield client


def quick_worker(store: Store, client: YClientsClient, **options: Any) -> OutboxWorker:
    """A worker with test-sized timings: polls every 20 ms, retries after ~16-60 ms."""
    settings: dict[str, Any] = dict(
        poll_interval_s=0.02, lease_s=5.0, backoff=Backoff(initial_s=0.02, max_s=0.05), random=random.Random(7)
    )
    settings.update(options)
    return OutboxWorker(store, client, **settings)


@asynccontextmanager
async def running(*workers: OutboxWorker) -> AsyncIterator[None]:
    """The workers run in the background for the block, and are stopped (cancelled) at its end."""
    async with trio.open_nursery() as nursery:
        for worker in workers:
            nursery.start_soon(worker.run)
        yield
        nursery.cancel_scope.cancel()


async def until_status(store: Store, worker: OutboxWorker, salon_id: int, status: str) -> None:
    """Wait (bounded) for the company to reach ``status``, checking after each of the worker's passes."""
    with trio.fail_after(5):
        while True:
            company = await store.companies.get(salon_id)
            assert company is not None
            if company.integration_status == status:
                return
            await worker.wait_pass()


def callback_statuses(fake_server: FakeServer, salon_id: int | None = None) -> list[int]:
    return [
        c["status"]
        for c in fake_server.fake.calls
        if c["path"] == CALLBACK and (salon_id is None or c["json"]["salon_id"] == salon_id)
    ]


async def test_503_three_times_then_success_is_one_effective_activation(store: Store, fake_server: FakeServer) -> None:
    fake_server.fake.add_fault(Fault(path=CALLBACK, status=503, times=3))
    await connected(store, 7)
    async with yclients(fake_server) as client:
        worker = quick_worker(store, client)
        async with running(worker):
            await until_status(store, worker, 7, "active")
    assert callback_statuses(fake_server) == [503, 503, 503, 201]
    company = await store.companies.get(7)
    assert company is not None and company.connected_at is not None
    (salon,) = fake_server.fake.salons.values()
    assert (salon.salon_id, salon.api_key, salon.webhook_urls) == (
        7,
        company.api_key,
        [OUR_PUBLIC_URL + "/webhook/yclients"],
    )
    stats = worker.statistics()
    assert (stats.delivered, stats.retried, dict(stats.failed)) == (1, 3, {})
    delivered = [e for e in await store.events.list(7) if e.type == "activation_delivered"]
    assert [e.data["attempts"] for e in delivered] == [4]


async def test_an_html_answer_is_retried_not_fatal(store: Store, fake_server: FakeServer) -> None:
    fake_server.fake.add_fault(Fault(path=CALLBACK, html=True, times=1))
    item_id = await connected(store, 7)
    async with yclients(fake_server) as client:
        worker = quick_worker(store, client)
        async with running(worker):
            await until_status(store, worker, 7, "active")
    assert callback_statuses(fake_server) == [200, 201]  # the HTML page came with 200
    item = await store.outbox.get(item_id)
    assert item is not None and item.delivered_at is not None and "not a JSON object" in (item.last_error or "")


async def test_past_the_deadline_the_activation_fails_with_deadline_passed_and_is_not_sent(
    store: Store, fake_server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    item_id = await connected(store, 7, window_s=0)  # the 1-hour window, already over
    caplog.set_level(logging.WARNING, logger="actor_admin.yclients.outbox")
    async with yclients(fake_server) as client:
        worker = quick_worker(store, client)
        async with running(worker):
            await until_status(store, worker, 7, "activation_failed")
    item = await store.outbox.get(item_id)
    assert item is not None and item.failed_at is not None and (item.last_error or "") == DEADLINE_PASSED
    (event,) = [e for e in await store.events.list(7) if e.type == "activation_failed"]
    assert event.data["reason"] == DEADLINE_PASSED
    assert callback_statuses(fake_server) == []
    assert worker.statistics().failed == {DEADLINE_PASSED: 1}
    assert any("deadline_passed" in r.getMessage() and "7" in r.getMessage() for r in caplog.records)


async def test_a_failed_activation_requeued_by_an_operator_is_delivered(store: Store, fake_server: FakeServer) -> None:
    await connected(store, 7, window_s=0)
    async with yclients(fake_server) as client:
        worker = quick_worker(store, client)
        async with running(worker):
            await until_status(store, worker, 7, "activation_failed")
            record = await store.companies.requeue_activation(7, activation_payload=payload_for(7))
            assert record is not None and record.activation_enqueued
            assert record.company.integration_status == "activating"
            worker.wake()
            await until_status(store, worker, 7, "active")
    new = await store.outbox.get(record.outbox_id or 0)
    assert new is not None and new.deadline is not None and new.deadline > new.created_at + timedelta(minutes=59)
    assert callback_statuses(fake_server) == [201]


async def test_a_refusal_is_final_and_marks_activation_failed(store: Store, fake_server: FakeServer) -> None:
    fake_server.fake.add_fault(Fault(path=CALLBACK, status=422, times=1))
    item_id = await connected(store, 7)
    async with yclients(fake_server) as client:
        worker = quick_worker(store, client)
        async with running(worker):
            await until_status(store, worker, 7, "activation_failed")
    item = await store.outbox.get(item_id)
    assert item is not None and item.failed_at is not None and item.attempts == 1
    (event,) = [e for e in await store.events.list(7) if e.type == "activation_failed"]
    assert (event.data["reason"], event.data["status"]) == ("refused", 422)


async def test_a_timeout_after_yclients_installed_ends_as_one_activation(store: Store, fake_server: FakeServer) -> None:
    # The crash window between "YClients did it" and "we committed it": the fake installs, then is
    # slow to answer; the client gives up; the retry meets 403 "already installed" — a success.
    fake_server.fake.add_fault(Fault(path=CALLBACK, delay_s=1.0, times=1))
    await connected(store, 7)
    async with yclients(fake_server, timeout_s=0.3) as client:
        worker = quick_worker(store, client)
        async with running(worker):
            await until_status(store, worker, 7, "active")
    assert callback_statuses(fake_server) == [201, 403]
    assert list(fake_server.fake.salons) == [7]
    stats = worker.statistics()
    assert (stats.delivered, stats.already_installed, stats.retried) == (1, 1, 1)


async def test_a_worker_killed_mid_call_leaves_the_row_for_the_next_claim(
    store: Store, fake_server: FakeServer
) -> None:
    fake_server.fake.add_fault(Fault(path=CALLBACK, delay_s=3.0, times=1))
    item_id = await connected(store, 7)
    async with yclients(fake_server, timeout_s=10) as client:
        first = quick_worker(store, client, lease_s=0.5)
        async with running(first):
            with trio.fail_after(5):
                # The fake records a call before it delays the answer; it has no event to wait on.
                while not fake_server.fake.calls:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            # leaving the block cancels the worker: the process dies with nothing committed
        item = await store.outbox.get(item_id)
        assert item is not None and (item.delivered_at, item.failed_at) == (None, None)
        second = quick_worker(store, client, lease_s=0.5)
        async with running(second):
            await until_status(store, second, 7, "active")
    assert callback_statuses(fake_server) == [201, 403]
    assert list(fake_server.fake.salons) == [7]


async def test_two_workers_on_one_database_never_send_a_row_twice(
    store: Store, pg_dsn: str, credentials_keyring: Any, fake_server: FakeServer
) -> None:
    from actor_admin.store import open_store

    salons = list(range(101, 131))
    for salon_id in salons:
        await connected(store, salon_id)
    async with (
        open_store(pg_dsn, pool_size=4, credentials_keys=credentials_keyring) as other_store,
        yclients(fake_server) as client,
    ):
        workers = [quick_worker(store, client, batch=3), quick_worker(other_store, client, batch=3)]
        async with running(*workers):
            # Wait for the deliveries to be counted, not for the table to look empty: a row stops being
            # pending when it is claimed, before its worker has sent it and counted it.
            with trio.fail_after(10):
                while sum(w.statistics().delivered for w in workers) < len(salons):
                    await workers[0].wait_pass()
    assert (await store.outbox.stats()).pending == 0
    assert sorted(c["json"]["salon_id"] for c in fake_server.fake.calls if c["path"] == CALLBACK) == salons
    assert sum(w.statistics().delivered for w in workers) == len(salons)
    assert all(w.statistics().delivered > 0 for w in workers)  # both took part
    assert {(await store.companies.get(s)).integration_status for s in salons} == {"active"}  # type: ignore[union-attr]


async def test_retry_after_from_yclients_is_honoured(store: Store, fake_server: FakeServer) -> None:
    fake_server.fake.add_fault(Fault(path=CALLBACK, status=429, retry_after=30, times=1))
    item_id = await connected(store, 7)
    async with yclients(fake_server) as client:
        worker = quick_worker(store, client)
        assert await worker.run_once() == 1
    item = await store.outbox.get(item_id)
    assert item is not None and item.last_error is not None and item.last_error.startswith("429")
    assert item.next_attempt_at - item.created_at >= timedelta(seconds=29)
    assert worker.statistics().retried == 1


async def test_an_uninstalled_salons_activation_is_dropped_not_sent(store: Store, fake_server: FakeServer) -> None:
    item_id = await connected(store, 7)
    await store.companies.mark_uninstalled(7)
    async with yclients(fake_server) as client:
        worker = quick_worker(store, client)
        await worker.run_once()
    item = await store.outbox.get(item_id)
    assert item is not None and item.failed_at is not None
    assert callback_statuses(fake_server) == []
    company = await store.companies.get(7)
    assert company is not None and company.integration_status == "uninstalled"


async def test_run_outbox_worker_hands_back_its_worker(store: Store, fake_server: FakeServer) -> None:
    await connected(store, 7)
    async with yclients(fake_server) as client, trio.open_nursery() as nursery:
        worker = await nursery.start(run_outbox_worker, store, client, None)
        assert isinstance(worker, OutboxWorker)
        worker.wake()
        await until_status(store, worker, 7, "active")
        nursery.cancel_scope.cancel()


async def test_retries_that_run_past_the_deadline_end_in_deadline_passed(store: Store, fake_server: FakeServer) -> None:
    fake_server.fake.add_fault(Fault(path=CALLBACK, status=503, times=1000))
    item_id = await connected(store, 7, window_s=2.0)  # room for two attempts on a busy machine
    async with yclients(fake_server) as client:
        worker = quick_worker(store, client)
        async with running(worker):
            await until_status(store, worker, 7, "activation_failed")
    item = await store.outbox.get(item_id)
    assert item is not None and item.attempts > 1 and item.last_error == DEADLINE_PASSED
    assert set(callback_statuses(fake_server)) == {503}
