"""Refusals are visible: counted by cause in ``/metrics``, logged at most once a minute per cause, and
``/status`` says when rate limiting runs blind (docs/http-api.md#refusal-log). Real HTTP, real
websockets, a real Redis that is stopped and started again."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionRejected

from actor_admin.api._refusals import REFUSAL_CAUSES, Refusals
from actor_admin.cluster import EmbeddedRedis, RedisClient
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.node import Parts
from actor_admin.store import Store
from actor_admin.yclients import sign_user_data

from ._marketplace_helpers import close_code, viewer
from .conftest import ADMIN_TOKEN, PARTNER_TOKEN, TestNode, free_port, node_settings, serve_node
from .test_metrics import scrape


def refusals(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    counted = {labels: value for (name, labels), value in samples.items() if name == "actor_admin_refusals_total"}
    return {dict(labels)["cause"]: value for labels, value in counted.items()}


def refusal_lines(caplog: pytest.LogCaptureFixture, cause: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"refused ({cause})")]


async def test_every_cause_is_exported_from_zero(node: TestNode) -> None:
    assert refusals(await scrape(node)) == dict.fromkeys(REFUSAL_CAUSES, 0.0)


async def test_each_refusal_is_counted_by_its_cause(node: TestNode, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="actor_admin.api")
    # origin
    with pytest.raises(ConnectionRejected):
        async with viewer(node.ws_url, extra={"Origin": "https://evil.example"}):
            pass
    # bad onboarding tokens: on the websocket (a bad one, then none at all) and over REST
    async with viewer(node.ws_url, "not-a-token") as ws:
        assert (await close_code(ws))[0] == 4401
    async with viewer(node.ws_url, extra={"X-Auth-Token": ""}) as ws:
        assert (await close_code(ws))[0] == 4401
    forged = {"Authorization": "Bearer x.y.z"}
    assert (await node.http.get("/marketplace/api/status", headers=forged)).status_code == 401
    # admin token: a wrong one on the admin API and on /status, none on the admin API
    wrong = {"Authorization": "Bearer " + "w" * len(ADMIN_TOKEN)}
    assert (await node.http.get("/admin/companies", headers=wrong)).status_code == 401
    assert (await node.http.get("/status", headers=wrong)).status_code == 401
    assert (await node.http.get("/admin/companies")).status_code == 401
    assert (await node.http.get("/status")).status_code == 200  # no token: the aggregates, not a refusal
    # a webhook with someone else's partner token, a redirect signed by someone else
    hook = {"salon_id": 5, "application_id": 1, "event": "freeze", "partner_token": "not-" + PARTNER_TOKEN}
    assert (await node.http.post("/webhook/yclients", json=hook)).json() == {"success": False}
    user_data, sign = sign_user_data(b'{"id":1}', "someone-elses-token")
    redirect = {"salon_id": "5", "user_data": user_data, "user_data_sign": sign}
    assert (await node.http.get("/auth/yclients/redirect", params=redirect)).status_code == 403
    # rate limit: the eleventh new websocket in a minute from one address
    for _ in range(8):  # the two token handshakes above counted (a foreign origin is refused before)
        async with viewer(node.ws_url, node.token(5)):
            pass
    with pytest.raises(ConnectionRejected):
        async with viewer(node.ws_url, node.token(5)):
            pass

    assert refusals(await scrape(node)) == {
        "origin": 1.0, "bad_token": 3.0, "bad_admin_token": 3.0, "bad_partner_token": 1.0, "bad_signature": 1.0,
        "rate_limit": 1.0,
    }
    # One line per cause (the first of each; later ones within the minute are only counted).
    for cause in REFUSAL_CAUSES:
        assert len(refusal_lines(caplog, cause)) == 1, cause
    assert "https://evil.example" in refusal_lines(caplog, "origin")[0]
    assert "127.0.0.1" in refusal_lines(caplog, "rate_limit")[0]


async def test_a_flood_of_bad_tokens_logs_one_line_and_counts_them_all(
    node: TestNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actor_admin.api")
    for _ in range(30):
        response = await node.http.post("/marketplace/api/qr", headers={"Authorization": "Bearer forged"}, json={})
        assert response.status_code == 401
    assert refusals(await scrape(node))["bad_token"] == 30.0
    assert len(refusal_lines(caplog, "bad_token")) == 1
    assert "forged" not in caplog.text  # the reason is logged, never the token


async def test_log_lines_are_one_per_cause_per_minute_on_trios_clock_with_the_count_left_out(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actor_admin.api")
    log = Refusals(log_every_s=60)
    for _ in range(5):
        log.refused("origin", "https://evil.example from 203.0.113.7")
    log.refused("bad_token", "expired")
    await trio.sleep(59)
    log.refused("origin", "https://evil.example from 203.0.113.7")
    assert len(refusal_lines(caplog, "origin")) == 1
    await trio.sleep(1)
    log.refused("origin", "https://evil.example from 203.0.113.8")

    lines = refusal_lines(caplog, "origin")
    assert len(lines) == 2
    assert "5 more refused for this cause in the last 60 s" in lines[1]
    assert "203.0.113.8" in lines[1]
    assert len(refusal_lines(caplog, "bad_token")) == 1
    assert log.statistics()["origin"] == 7


# -- the limiter failing open ------------------------------------------------------------------------


@pytest.fixture
async def redis_node(store: Store, embedded_redis: EmbeddedRedis) -> AsyncIterator[tuple[TestNode, EmbeddedRedis]]:
    """A node on a Redis of its own, which the test stops and starts."""
    settings = node_settings(free_port())
    core = SimulatorCore()
    redis = await RedisClient.open(embedded_redis.url, timeout_s=0.5)
    parts = Parts(store=store, redis=redis, transport=SimulatorTransport(core), simulator=core)
    try:
        async with (
            serve_node(settings, parts) as services,
            httpx.AsyncClient(base_url=settings.public_url, timeout=10) as http,
        ):
            yield TestNode(settings, services, core, settings.public_url, http), embedded_redis
    finally:
        await redis.aclose()


async def rate_limiting(node: TestNode) -> dict[str, object]:
    body = (await node.http.get("/status")).json()
    return dict(body["rate_limiting"])


async def test_status_says_rate_limiting_is_degraded_while_the_limiter_fails_open(
    redis_node: tuple[TestNode, EmbeddedRedis],
) -> None:
    node, redis = redis_node
    async with viewer(node.ws_url, node.token(9)):
        pass
    assert await rate_limiting(node) == {"state": "ok", "since": None, "failed_open_total": 0}

    await trio.to_thread.run_sync(redis.stop)
    with trio.fail_after(10):
        async with viewer(node.ws_url, node.token(9)):  # let through uncounted: fail open
            pass
    degraded = await rate_limiting(node)
    assert degraded["state"] == "degraded" and str(degraded["since"]).endswith("Z")
    assert degraded["failed_open_total"] == 1
    samples = await scrape(node)
    assert samples[("actor_admin_rate_limiting_degraded", ())] == 1.0
    assert samples[("actor_admin_rate_limiter_failed_open_total", ())] == 1.0

    await trio.to_thread.run_sync(redis.start)
    with trio.fail_after(10):
        while (await rate_limiting(node))["state"] != "ok" or node.services.limiter.degraded_since is not None:  # type: ignore[union-attr]
            async with viewer(node.ws_url, node.token(9)):  # a counted hit ends the degraded state
                pass
            await trio.sleep(0.05)
    assert (await scrape(node))[("actor_admin_rate_limiting_degraded", ())] == 0.0
