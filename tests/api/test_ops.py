"""``/healthz``, ``/readyz`` and ``/status`` (docs/http-api.md#operations) against real PostgreSQL and Redis,
healthy and broken."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from actor_admin.api import Services, create_app
from actor_admin.cluster import RedisClient
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.node import Parts, open_services
from actor_admin.runtime import open_supervisor
from actor_admin.store import Keyring, Store, load_migrations
from tests._pg import drop_database, make_database

from .conftest import ADMIN_TOKEN, JWT_SECRET, PARTNER_TOKEN, TestNode, node_settings

STATUS_KEYS = {
    "node", "version", "uptime_s", "mode", "dependencies", "actors", "cluster", "outbox", "websockets", "gc",
    "rate_limiting", "whatsapp",
}


@asynccontextmanager
async def app_client(store: Any, redis: Any) -> AsyncIterator[tuple[Any, Services]]:
    """An app wired like a node's, driven through Quart's test client (no socket needed)."""
    parts = Parts(store=store, transport=SimulatorTransport(SimulatorCore()), redis=redis)
    async with open_services(node_settings(8000), parts) as services:
        yield create_app(services).test_client(), services


async def test_healthz_answers_ok_while_the_process_runs(node: TestNode) -> None:
    response = await node.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


async def test_readyz_is_200_when_postgres_redis_and_schema_are_fine(node: TestNode) -> None:
    response = await node.http.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["failing"] == []
    assert body["dependencies"]["postgres"]["schema_version"] == load_migrations()[-1].name


async def test_readyz_names_redis_when_redis_does_not_answer(store: Store, closed_port_url: str) -> None:
    redis = await RedisClient.open(closed_port_url, timeout_s=0.5)
    async with app_client(store, redis) as (client, _):
        with trio.fail_after(5):
            response = await client.get("/readyz")
    await redis.aclose()
    assert response.status_code == 503
    body = await response.get_json()
    assert body["ready"] is False and body["failing"] == ["redis"]


async def test_readyz_names_the_schema_and_the_pending_migrations_on_an_unmigrated_database(
    aio_loop: object, pg_empty_dsn: str, redis_client: RedisClient
) -> None:
    async with (
        await Store.open(pg_empty_dsn, pool_size=2, credentials_keys=Keyring(bytes(32))) as store,
        app_client(store, redis_client) as (client, _),
    ):
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = await response.get_json()
    assert body["failing"] == ["schema"]
    for migration in load_migrations():
        assert migration.name in body["reasons"]["schema"]


async def test_readyz_names_postgres_when_its_database_is_gone(
    aio_loop: object, pg_admin_dsn: str, redis_client: RedisClient
) -> None:
    dsn = await trio.to_thread.run_sync(make_database, pg_admin_dsn)
    async with await Store.open(dsn, pool_size=1, credentials_keys=Keyring(bytes(32))) as store:
        async with app_client(store, redis_client) as (client, _):
            await trio.to_thread.run_sync(drop_database, pg_admin_dsn, dsn)
            with trio.fail_after(5):
                response = await client.get("/readyz")
    assert response.status_code == 503
    assert (await response.get_json())["failing"] == ["postgres"]


async def test_readyz_turns_503_once_the_node_begins_shutting_down(node: TestNode) -> None:
    node.services.shutting_down.set()
    response = await node.http.get("/readyz")
    assert response.status_code == 503
    assert "shutting_down" in response.json()["failing"]


async def test_status_without_the_admin_token_shows_only_the_documented_aggregates(node: TestNode) -> None:
    await node.register(501)
    await node.services.router.supervisor.ensure(501)
    response = await node.http.get("/status", headers={"Accept": "application/json"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == STATUS_KEYS
    assert body["node"] == node.settings.node_id and body["mode"] == "dev"
    assert set(body["dependencies"]["postgres"]) >= {"ok", "latency_ms", "schema_version"}
    assert body["dependencies"]["postgres"]["ok"] is True and body["dependencies"]["redis"]["ok"] is True
    assert set(body["actors"]) == {"total", "by_state", "restarts_total", "mailbox_max_depth"}
    assert set(body["cluster"]) == {"nodes", "owned_here"}
    assert set(body["outbox"]) == {"pending", "oldest_pending_s", "failed"}
    assert body["websockets"] == {"open": node.services.counters.websockets_open}


async def test_status_with_the_admin_token_lists_each_company_with_its_session_state(node: TestNode) -> None:
    await node.register(502)
    await node.services.router.supervisor.ensure(502)
    with trio.fail_after(5):
        await node.services.registry.wait_state(502, "idle")
    response = await node.http.get("/status", headers=node.admin)
    body = response.json()
    assert body["actors"]["total"] == 1
    (company,) = body["companies"]
    assert set(company) == {"salon_id", "state", "phone", "node", "restarts", "last_error", "since"}
    assert company["salon_id"] == 502 and company["node"] == node.settings.node_id
    assert company["state"] == node.services.registry.get(502).state
    assert body["actors"]["by_state"] == {company["state"]: 1}


async def test_status_refuses_a_wrong_admin_token_with_401(node: TestNode) -> None:
    response = await node.http.get("/status", headers={"Authorization": "Bearer " + "x" * 40})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_status_never_shows_a_secret(node: TestNode) -> None:
    text = (await node.http.get("/status", headers=node.admin)).text
    key = base64.b64encode(node.settings.credentials_key).decode()
    for secret in (ADMIN_TOKEN, JWT_SECRET, PARTNER_TOKEN, key):
        assert secret not in text


async def test_status_serves_the_status_page_to_a_browser_that_prefers_html(node: TestNode) -> None:
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = await node.http.get("/status", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/static/status.js" in response.text


async def test_status_answers_json_to_a_client_without_preferences(node: TestNode) -> None:
    response = await node.http.get("/status", headers={"Accept": "*/*"})
    assert response.headers["content-type"].startswith("application/json")


async def _idle_actor(ctx: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    async for _ in ctx.inbox:
        pass


async def test_status_counts_10000_companies_and_lists_them_all_with_the_admin_token(
    store: Store, redis_client: RedisClient
) -> None:
    # How fast this answers is measured by `make bench` (status_10k_ms), never asserted here.
    factory: Callable[[int], Any] = lambda salon_id: _idle_actor  # noqa: E731
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with app_client(store, redis_client) as (client, services), open_supervisor(factory) as supervisor:
        services.router.supervisor = supervisor
        for salon_id in range(1, 10_001):
            await supervisor.ensure(salon_id)
            services.registry.update(salon_id, "connected", f"7900{salon_id:07d}", None)
        body = await (await client.get("/status")).get_json()
        detailed = await (await client.get("/status", headers=admin)).get_json()
        await supervisor.aclose()
    assert body["actors"]["by_state"] == {"connected": 10_000}
    assert "companies" not in body
    assert len(detailed["companies"]) == 10_000
    assert {c["salon_id"] for c in detailed["companies"]} == set(range(1, 10_001))


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/status", "/metrics"])
async def test_ops_endpoints_refuse_other_methods_with_the_json_error_shape(node: TestNode, path: str) -> None:
    response = await node.http.post(path)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
