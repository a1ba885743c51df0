"""``GET /metrics``: Prometheus text collected at scrape time from the node's live statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from actor_admin.cluster import OWNERSHIP_CHANGE_CAUSES, OwnershipChanges
from actor_admin.store import Claim, Member
from actor_admin.yclients import YClientsError
from tests._pg import _admin as admin_sql
from tests.store._ownership_helpers import add_companies, sql

from .conftest import TestNode
from .test_webhook import connect

OUTBOX_GAUGES = ("actor_admin_outbox_pending", "actor_admin_outbox_oldest_pending_seconds", "actor_admin_outbox_failed")


async def scrape(node: TestNode) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await node.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_is_prometheus_text_with_the_documented_families(node: TestNode) -> None:
    samples = await scrape(node)
    names = {name for name, _ in samples}
    for expected in (
        "actor_admin_actors",
        "actor_admin_actors_failed",
        "actor_admin_actor_restarts_total",
        "actor_admin_mailbox_depth_max",
        "actor_admin_mailbox_depth_bucket",
        "actor_admin_websockets_open",
        "actor_admin_outbox_pending",
        "actor_admin_outbox_oldest_pending_seconds",
        "actor_admin_ownership_changes_total",
        "actor_admin_bus_published_total",
        "actor_admin_process_resident_memory_bytes",
        "actor_admin_qr_latency_seconds_bucket",
        "actor_admin_inbound_unresolved_lid_total",
        "actor_admin_inbound_reannounced_total",
        "actor_admin_inbound_unpublished",
    ):
        assert expected in names, expected
    assert samples[("actor_admin_dependency_up", (("dependency", "postgres"),))] == 1.0
    assert samples[("actor_admin_dependency_up", (("dependency", "redis"),))] == 1.0


async def test_sessions_and_actors_are_counted_by_state(node: TestNode) -> None:
    for salon_id in (601, 602):
        await node.register(salon_id)
        await node.services.router.supervisor.ensure(salon_id)
        with trio.fail_after(5):
            await node.services.registry.wait_state(salon_id, "idle")
    samples = await scrape(node)
    assert samples[("actor_admin_sessions", (("state", "idle"),))] == 2.0
    assert samples[("actor_admin_actors", (("state", "running"),))] == 2.0
    assert samples[("actor_admin_mailbox_depth_count", ())] == 2.0


async def test_inbound_messages_are_counted_once_and_redeliveries_as_duplicates(node: TestNode) -> None:
    await connect(node, 604, "79001230604")
    for _ in range(2):  # the second is WhatsApp's redelivery of the same message id
        node.core.inbound("79001230604", "79990000001", "Можно записаться?", "wamid-604")
    with trio.fail_after(5):
        while node.services.registry.messages.inbound_duplicates < 1:  # noqa: ASYNC110 - no event for it
            await trio.sleep(0.01)
    samples = await scrape(node)
    assert samples[("actor_admin_messages_total", (("direction", "in"), ("outcome", "stored")))] == 1.0
    assert samples[("actor_admin_messages_total", (("direction", "in"), ("outcome", "duplicate")))] == 1.0


async def test_yclients_call_outcomes_appear_by_endpoint_and_status(node: TestNode) -> None:
    try:
        await node.services.yclients.activate(603, api_key="k" * 32, webhook_urls=[node.base_url + "/webhook/yclients"])
    except (YClientsError, httpx.HTTPError):
        pass  # whatever YClients (here: the dev double, or nothing) answered is an outcome to count
    outcomes = node.services.yclients.statistics().outcomes
    assert outcomes
    samples = await scrape(node)
    for (endpoint, status), count in outcomes.items():
        key = ("actor_admin_yclients_calls_total", (("endpoint", endpoint), ("status", status)))
        assert samples[key] == float(count)


async def test_qr_latency_observed_through_the_hook_lands_in_the_histogram(node: TestNode) -> None:
    node.services.metrics.observe_qr_latency(0.03)
    node.services.metrics.observe_qr_latency(0.2)
    samples = await scrape(node)
    assert samples[("actor_admin_qr_latency_seconds_count", ())] == 2.0
    assert samples[("actor_admin_qr_latency_seconds_bucket", (("le", "0.05"),))] == 1.0


async def test_an_open_websocket_viewer_is_counted(node: TestNode) -> None:
    await node.register(604)
    headers = [("Authorization", f"Bearer {node.token(604)}")]
    async with open_websocket_url(node.ws_url, extra_headers=headers) as ws:
        with trio.fail_after(5):
            await ws.get_message()  # the current state: the viewer is in
        samples = await scrape(node)
    assert samples[("actor_admin_websockets_open", ())] == 1.0


async def test_every_session_state_is_exported_even_at_zero(node: TestNode) -> None:
    from actor_admin.session import STATES

    samples = await scrape(node)
    for state in STATES:
        assert samples[("actor_admin_sessions", (("state", state),))] == 0.0, state
    for reason in ("forbidden_origin", "rate_limited", "shutting_down", "unauthorized"):
        assert samples[("actor_admin_websocket_refusals_total", (("reason", reason),))] == 0.0, reason


async def test_websocket_refusals_are_counted_by_reason(node: TestNode) -> None:
    with pytest.raises(ConnectionRejected):
        async with open_websocket_url(node.ws_url, extra_headers=[("Origin", "https://evil.example")]):
            pass
    async with open_websocket_url(node.ws_url, extra_headers=[("Authorization", "Bearer not-a-token")]) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
    assert closed.value.reason.code == 4401
    samples = await scrape(node)
    assert samples[("actor_admin_websocket_refusals_total", (("reason", "forbidden_origin"),))] == 1.0
    assert samples[("actor_admin_websocket_refusals_total", (("reason", "unauthorized"),))] == 1.0
    assert samples[("actor_admin_websocket_refusals_total", (("reason", "rate_limited"),))] == 0.0


async def test_sessions_that_need_a_person_are_counted_by_reason(node: TestNode) -> None:
    await connect(node, 605, "79001230605")
    node.core.ban("79001230605", 3600)
    with trio.fail_after(5):
        await node.services.registry.wait_state(605, "failed")
    samples = await scrape(node)
    key = ("actor_admin_sessions_stuck", (("reason", "temporarily_banned"), ("state", "failed")))
    assert samples[key] == 1.0
    assert samples[("actor_admin_sessions", (("state", "failed"),))] == 1.0


async def test_outbox_gauges_vanish_instead_of_freezing_while_postgres_is_down(
    node: TestNode, pg_admin_dsn: str, pg_dsn: str
) -> None:
    before = await scrape(node)
    assert before[("actor_admin_outbox_pending", ())] == 0.0
    async with postgres_refusing(pg_admin_dsn, pg_dsn):
        during = await scrape(node)
        assert during[("actor_admin_dependency_up", (("dependency", "postgres"),))] == 0.0
        for name in OUTBOX_GAUGES:
            assert (name, ()) not in during, f"{name} still shows its last value while PostgreSQL is down"
    after = await scrape(node)  # the pool reconnects by itself at the next query
    assert after[("actor_admin_dependency_up", (("dependency", "postgres"),))] == 1.0
    assert after[("actor_admin_outbox_pending", ())] == 0.0


@asynccontextmanager
async def postgres_refusing(admin_dsn: str, dsn: str) -> AsyncIterator[None]:
    """A real outage of the node's database: new connections refused, open ones terminated."""
    name = urlsplit(dsn).path.lstrip("/")
    refuse = f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'
    terminate = f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    await trio.to_thread.run_sync(admin_sql, admin_dsn, refuse, terminate)
    try:
        yield
    finally:
        await trio.to_thread.run_sync(admin_sql, admin_dsn, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


async def test_ownership_changes_are_exported_for_every_cause_from_zero(node: TestNode) -> None:
    samples = await scrape(node)
    for cause in OWNERSHIP_CHANGE_CAUSES:
        assert samples[("actor_admin_ownership_changes_total", (("cause", cause),))] == 0.0
    assert set(OWNERSHIP_CHANGE_CAUSES) == {"claimed", "handed_over", "taken_after_expiry", "fenced"}


async def test_ownership_changes_counted_by_the_keeper_show_in_the_next_scrape(node: TestNode) -> None:
    changes = node.services.ownership_changes
    changes.count("claimed", 3)
    changes.count("taken_after_expiry")
    changes.count("fenced")
    samples = await scrape(node)
    assert samples[("actor_admin_ownership_changes_total", (("cause", "claimed"),))] == 3.0
    assert samples[("actor_admin_ownership_changes_total", (("cause", "taken_after_expiry"),))] == 1.0
    assert samples[("actor_admin_ownership_changes_total", (("cause", "fenced"),))] == 1.0
    assert samples[("actor_admin_ownership_changes_total", (("cause", "handed_over"),))] == 0.0


def test_ownership_changes_refuse_an_unknown_cause_or_a_negative_count() -> None:
    changes = OwnershipChanges()
    with pytest.raises(ValueError):
        changes.count("acquired")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        changes.count("claimed", -1)
    assert changes.statistics() == dict.fromkeys(OWNERSHIP_CHANGE_CAUSES, 0)


async def test_silent_nodes_and_salons_without_a_live_owner_are_gauged_from_postgresql(
    node: TestNode, pg_dsn: str
) -> None:
    samples = await scrape(node)
    assert samples[("actor_admin_cluster_nodes_silent", ())] == 0.0
    assert samples[("actor_admin_cluster_salons_without_owner", ())] == 0.0
    ownership = node.services.store.ownership
    dead = Member("node-dead", "id", "1.0")
    await add_companies(pg_dsn, [991, 992])
    await sql(pg_dsn, "INSERT INTO whatsapp_credentials (salon_id, blob, key_id) VALUES (991, '\\x00', 'k')")
    await ownership.join(dead)
    await ownership.join(Member("node-live", "il", "1.0"))
    assert await ownership.claim(dead, [Claim(991), Claim(992)])  # 992 has no credentials: need not run
    await sql(pg_dsn, "UPDATE cluster_nodes SET heartbeat_at = now() - interval '1 minute' WHERE node_id = 'node-dead'")
    await sql(pg_dsn, "UPDATE salon_owners SET changed_at = now() - interval '1 minute'")
    samples = await scrape(node)
    assert samples[("actor_admin_cluster_nodes_silent", ())] == 1.0
    assert samples[("actor_admin_cluster_salons_without_owner", ())] == 1.0
