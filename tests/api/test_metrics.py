"""``GET /metrics``: Prometheus text collected at scrape time from the node's live statistics."""

from __future__ import annotations

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from actor_admin.yclients import YClientsError

from .conftest import TestNode


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
        "actor_admin_lease_changes_total",
        "actor_admin_bus_published_total",
        "actor_admin_process_resident_memory_bytes",
        "actor_admin_qr_latency_seconds_bucket",
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
    from actor_admin.session import RequestQr

    await node.register(604)
    await node.services.router.ask(604, RequestQr())
    node.core.scan(await node.core.wait_qr(604), "79001230604")
    with trio.fail_after(5):
        await node.services.registry.wait_state(604, "connected")
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


async def test_every_metric_the_grafana_dashboard_queries_is_exported(node: TestNode) -> None:
    import json
    import re

    from actor_admin._resources import web_dir

    dashboard = json.loads((web_dir().parent / "ops" / "grafana" / "actor-admin-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(actor_admin_[a-z_]+)", target["expr"])
    }
    # Family names, so a family with no sample yet (no YClients call so far) counts as exported.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    exported = set()
    for family in text_string_to_metric_families((await node.http.get("/metrics")).text):
        exported.add(family.name)
        exported.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    assert queried - exported == set()
