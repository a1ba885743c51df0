"""Location transparency through the front door: two nodes (app + supervisor each) on one PostgreSQL
and one Redis, and a test ``Locator`` that says node B owns the salon. REST, websocket, admin and
webhook calls arriving at node A reach B's session; with no reachable owner every one of them gets
the documented ``owner_unreachable`` answer within its deadline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import attrs
import httpx
import pytest
import trio

from actor_admin.cluster import Keeper, NodeRpc, place
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.node import Parts
from actor_admin.session import RequestQr
from actor_admin.store import Member
from actor_admin.yclients import WEBHOOK_PATH
from tests._owners import Owners, TableLocator

from ._marketplace_helpers import frame_of, receive, viewer
from .conftest import ADMIN_TOKEN, PARTNER_TOKEN, TestNode, free_port, node_settings, serve_node

pytestmark = pytest.mark.integration

SALON = 9101


@attrs.define
class Cluster:
    owners: Owners
    a: TestNode
    b: TestNode


@pytest.fixture
async def cluster(store: Any, redis_client: Any) -> AsyncIterator[Cluster]:
    owners = Owners({SALON: "node-b"})
    async with AsyncExitStack() as stack:
        nodes = []
        for name in ("node-a", "node-b"):
            settings = node_settings(free_port(), NODE_ID=name)
            core = SimulatorCore()
            parts = Parts(store=store, redis=redis_client, transport=SimulatorTransport(core), simulator=core)
            services = await stack.enter_async_context(
                serve_node(settings, parts, workers=False, locator=TableLocator(name, owners))
            )
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=settings.public_url, timeout=10))
            assert services.router.remote is not None
            await services.router.remote.wait_ready()
            await services.bus.wait_connected()
            nodes.append(TestNode(settings, services, core, settings.public_url, http))
        yield Cluster(owners, nodes[0], nodes[1])


def runs_on_b_only(cluster: Cluster) -> bool:
    return cluster.b.services.router.running(SALON) and not cluster.a.services.router.running(SALON)


async def test_rest_qr_at_the_non_owner_is_answered_by_the_owners_session(cluster: Cluster) -> None:
    a = cluster.a
    await a.register(SALON)
    response = await a.http.post("/marketplace/api/qr", headers=a.bearer(SALON), json={})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "qr" and body["qr"]
    assert runs_on_b_only(cluster)
    metrics = (await a.http.get("/metrics")).text
    routed_ok = next(
        line for line in metrics.splitlines() if line.startswith('actor_admin_routed_calls_total{outcome="ok"}')
    )
    assert float(routed_ok.split()[-1]) >= 2  # request_qr and the snapshot (and is_running polls, if any)
    assert 'actor_admin_routed_call_seconds_bucket{le="+Inf"}' in metrics


async def test_a_viewer_at_the_non_owner_gets_the_owners_snapshot_and_every_frame(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    await a.register(SALON)
    async with viewer(a.ws_url, a.token(SALON)) as on_a, viewer(b.ws_url, b.token(SALON)) as on_b:
        assert await receive(on_a) == {"type": "state", "state": "idle"}  # the owner's snapshot
        assert await receive(on_b) == {"type": "state", "state": "idle"}
        await on_a.send_message('{"type": "request_qr"}')
        qr_a, qr_b = await frame_of(on_a, "qr"), await frame_of(on_b, "qr")
        assert qr_a == qr_b and qr_a["qr"]  # the same frame, on both nodes
        assert runs_on_b_only(cluster)
        b.core.scan(qr_a["qr"], "+7 900 555-91-01")
        assert await frame_of(on_a, "connected") == {"type": "connected", "phone": "79005559101"}
        assert await frame_of(on_b, "connected") == {"type": "connected", "phone": "79005559101"}
        # A late joiner at the non-owner gets the owner's current state first.
        async with viewer(a.ws_url, a.token(SALON)) as late:
            assert await receive(late) == {"type": "state", "state": "connected", "phone": "79005559101"}


async def test_an_admin_restart_at_the_non_owner_restarts_the_owners_session(cluster: Cluster) -> None:
    a = cluster.a
    await a.register(SALON)
    response = await a.http.post(f"/admin/companies/{SALON}/restart", headers=a.admin)
    assert response.status_code == 200, response.text
    assert runs_on_b_only(cluster)


async def test_an_uninstall_webhook_at_the_non_owner_stops_the_owners_actor_before_answering(
    cluster: Cluster,
) -> None:
    a, b = cluster.a, cluster.b
    await a.register(SALON)
    async with viewer(b.ws_url, b.token(SALON)) as on_b:
        await receive(on_b)
        await on_b.send_message('{"type": "request_qr"}')
        await frame_of(on_b, "qr")
        assert runs_on_b_only(cluster)
        response = await a.http.post(
            WEBHOOK_PATH,
            json={"salon_id": SALON, "application_id": 1, "event": "uninstall", "partner_token": PARTNER_TOKEN},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True, "event": "uninstall", "salon_id": SALON}
        assert not b.services.router.running(SALON)  # stopped on B before A answered
        assert await frame_of(on_b, "state", state="uninstalled")
    company = await a.services.store.companies.get(SALON)
    assert company.integration_status == "uninstalled"


# -- no reachable owner ------------------------------------------------------------------------------


@pytest.fixture
def owner_gone(cluster: Cluster) -> Cluster:
    cluster.owners.table[SALON] = "node-gone"  # placement names a node that does not answer
    return cluster


def is_owner_unreachable(response: httpx.Response) -> bool:
    return response.status_code == 503 and response.json()["error"]["code"] == "owner_unreachable"


async def test_rest_without_a_reachable_owner_is_503_owner_unreachable(owner_gone: Cluster) -> None:
    a = owner_gone.a
    await a.register(SALON)
    with trio.fail_after(3):
        response = await a.http.post("/marketplace/api/qr", headers=a.bearer(SALON), json={})
    assert is_owner_unreachable(response), response.text
    assert a.services.router.statistics().calls["owner_unreachable"] == 1


async def test_admin_and_webhook_without_a_reachable_owner_are_503_owner_unreachable(owner_gone: Cluster) -> None:
    a = owner_gone.a
    await a.register(SALON)
    with trio.fail_after(10):
        restart = await a.http.post(f"/admin/companies/{SALON}/restart", headers=a.admin)
        logout = await a.http.post(f"/admin/companies/{SALON}/logout", headers=a.admin)
        webhook = await a.http.post(
            WEBHOOK_PATH,
            json={"salon_id": SALON, "application_id": 1, "event": "freeze", "partner_token": PARTNER_TOKEN},
        )
    for response in (restart, logout, webhook):
        assert is_owner_unreachable(response), response.text
    assert (await a.services.store.companies.get(SALON)).integration_status == "frozen"  # the intent is kept


async def test_a_viewer_without_a_reachable_owner_gets_an_error_frame_and_stays_connected(owner_gone: Cluster) -> None:
    a = owner_gone.a
    await a.register(SALON)
    owner_gone.owners.table[SALON] = None  # no live owner at all this time
    async with viewer(a.ws_url, a.token(SALON)) as ws:
        assert await receive(ws) == {"type": "state", "state": "idle"}
        first_error = await receive(ws)
        assert first_error["type"] == "error" and first_error["code"] == "owner_unreachable"
        await ws.send_message('{"type": "request_qr"}')
        error = await frame_of(ws, "error")
        assert error["code"] == "owner_unreachable"
        await ws.send_message('{"type": "ping"}')
        assert await frame_of(ws, "pong") == {"type": "pong"}  # still open
    assert json.dumps(error, ensure_ascii=False)  # the message is plain text
    assert ADMIN_TOKEN not in error["message"]


# -- with the real ownership keeper as the locator --------------------------------------------------


@pytest.fixture
async def keeper_cluster(store: Any, redis_client: Any) -> AsyncIterator[tuple[TestNode, TestNode]]:
    """Two nodes whose locators are their ownership keepers (PostgreSQL decides who owns what)."""
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        nodes = []
        for name in ("node-a", "node-b"):
            settings = node_settings(free_port(), NODE_ID=name, CLUSTER_TTL="3", CLUSTER_HEARTBEAT_INTERVAL="0.3")
            core = SimulatorCore()
            parts = Parts(
                store=store,
                redis=redis_client,
                transport=SimulatorTransport(core),
                simulator=core,
                member=Member.new(name, "test"),
            )
            services = await stack.enter_async_context(serve_node(settings, parts, workers=False))
            assert parts.keeper is not None and services.router.locator is parts.keeper
            nursery.start_soon(parts.keeper.run)
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=settings.public_url, timeout=10))
            nodes.append(TestNode(settings, services, core, settings.public_url, http))

        def sees_both(node: TestNode) -> bool:
            membership = node.services.router.locator.membership  # type: ignore[attr-defined]
            return membership is not None and {"node-a", "node-b"} <= set(membership.live)

        with trio.fail_after(15):
            # Membership lives in PostgreSQL rows renewed on their own schedule: nothing to wait on but them.
            while not all(sees_both(node) for node in nodes):  # noqa: ASYNC110
                await trio.sleep(0.05)
        yield nodes[0], nodes[1]


def placed_on(node_id: str, candidates: range) -> list[int]:
    """The salons among ``candidates`` that placement gives ``node_id`` of the keeper cluster's two nodes."""
    return [s for s in candidates if place(s, ["node-a", "node-b"]) == node_id]


async def test_with_the_keeper_a_call_at_one_node_reaches_the_salon_placed_on_the_other(
    keeper_cluster: tuple[TestNode, TestNode],
) -> None:
    a, b = keeper_cluster
    salon = placed_on("node-b", range(9200, 9300))[0]
    await a.register(salon)
    response = await a.http.post("/marketplace/api/qr", headers=a.bearer(salon), json={})
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "qr"
    assert b.services.router.running(salon) and not a.services.router.running(salon)
    owner = (await a.services.store.ownership.owners())[salon]
    assert owner.node_id == "node-b"  # claimed on demand by b, the node placement names


async def test_a_draining_node_nudges_the_new_owner_over_redis_and_it_plans_at_once(
    keeper_cluster: tuple[TestNode, TestNode],
) -> None:
    a, b = keeper_cluster
    salon = placed_on("node-b", range(9300, 9400))[0]
    await a.register(salon)
    await a.services.router.ask(salon, RequestQr())  # b claims it on demand and runs it
    assert b.services.router.running(salon)
    a_keeper, b_keeper = a.services.router.locator, b.services.router.locator
    assert isinstance(a_keeper, Keeper) and isinstance(b_keeper, Keeper)
    assert a.services.router.remote is not None
    rpc = a.services.router.remote
    assert isinstance(rpc, NodeRpc)
    before = rpc.statistics().nudges_total
    with trio.fail_after(10):
        await b_keeper.drain(deadline_s=8)  # hands the salon over to a: stop, release, nudge
    assert not b.services.router.running(salon)
    with trio.fail_after(5):
        while rpc.statistics().nudges_total == before or a_keeper.nudged_total == 0:  # noqa: ASYNC110 - counters only
            await trio.sleep(0.02)
