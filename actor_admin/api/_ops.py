"""Operations endpoints (docs/http-api.md#operations): ``/healthz``, ``/readyz``, ``/status`` and ``/metrics``.

``/status`` is what an operator opens first, so it must stay cheap with thousands of companies: the
per-company figures come from memory (the session registry and the supervisor), and the only I/O is
one round trip each to PostgreSQL and Redis plus the outbox aggregate, run concurrently and each
bounded in time — a dead dependency makes its part ``ok: false``, never the page slow or a 500.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import trio
from quart import Blueprint, Response, jsonify, request

from actor_admin import __version__
from actor_admin._resources import web_dir
from actor_admin.runtime import ActorState, ActorStatistics
from actor_admin.store import MigrationError, load_migrations

from ._http import error_response
from ._metrics import CONTENT_TYPE, Metrics, refresh_probes
from ._services import Services

#: The bound on each dependency check of ``/readyz`` and ``/status``.
CHECK_TIMEOUT_S = 2.0

# A salon whose actor has no session view (it crashed, is backing off, or starts) is shown with
# the state a viewer would understand.
_SUPERVISOR_STATE_SHOWN = {
    ActorState.STARTING: "starting",
    ActorState.BACKING_OFF: "reconnecting",
    ActorState.FAILED: "failed",
    ActorState.STOPPING: "stopping",
}


@attrs.frozen
class Expected:
    """The migrations this code knows, to tell "migrated" from "pending" with one cheap query."""

    names: tuple[str, ...]

    @classmethod
    def load(cls) -> Expected:
        try:
            return cls(tuple(m.name for m in load_migrations()))
        except MigrationError:
            return cls(())

    def pending_after(self, applied: str | None) -> list[str] | None:
        """Names not yet applied after ``applied``; None when ``applied`` is unknown to this code."""
        if applied is None:
            return list(self.names)
        if applied not in self.names:
            return None
        return list(self.names[self.names.index(applied) + 1 :])


# -- dependency checks -------------------------------------------------------------------------


async def _bounded(check: Callable[[], Awaitable[dict[str, Any]]], timeout_s: float) -> dict[str, Any]:
    with trio.move_on_after(timeout_s):
        try:
            return await check()
        except Exception as exc:
            return {"ok": False, "latency_ms": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": False, "latency_ms": None, "error": f"no answer within {timeout_s:g} s"}


async def check_postgres(services: Services, expected: Expected, timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, Any]:
    """``{"ok", "latency_ms", "schema_version", "pending"?, "error"?}`` — never raises."""

    async def check() -> dict[str, Any]:
        latency_s = await services.store.ping()
        version = await services.store.schema_version()
        return {"ok": True, "latency_ms": round(latency_s * 1000.0, 3), "schema_version": version}

    result = await _bounded(check, timeout_s)
    result.setdefault("schema_version", None)
    return result


async def check_redis(services: Services, timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, Any]:
    """``{"ok", "latency_ms", "error"?}`` — never raises."""
    redis = services.redis
    if redis is None:
        return {"ok": False, "latency_ms": None, "error": "REDIS_URL is not configured"}

    async def check() -> dict[str, Any]:
        latency_ms = await redis.ping(timeout_s=timeout_s)
        return {"ok": True, "latency_ms": round(latency_ms, 3)}

    return await _bounded(check, timeout_s)


def schema_problem(postgres: dict[str, Any], expected: Expected) -> str | None:
    """Why the schema is not fine (None when it is); only meaningful when PostgreSQL answered."""
    version = postgres.get("schema_version")
    pending = expected.pending_after(version)
    if pending is None:
        return f"the database is at {version}, newer than this code knows — upgrade actor-admin"
    if pending:
        return "pending migrations: " + ", ".join(pending) + " — run `actor-admin migrate`"
    return None


async def _gather(*checks: Callable[[], Awaitable[Any]]) -> list[Any]:
    results: list[Any] = [None] * len(checks)

    async def run(i: int, check: Callable[[], Awaitable[Any]]) -> None:
        results[i] = await check()

    async with trio.open_nursery() as nursery:
        for i, check in enumerate(checks):
            nursery.start_soon(run, i, check)
    return results


# -- per-company records -----------------------------------------------------------------------


def company_records(services: Services) -> list[dict[str, Any]]:
    """Every company this node runs, as ``/status`` (and the admin API) show it, by ``salon_id``.

    Memory only: the registry's session view, the supervisor's restarts and last crash. ``since``
    is a wall-clock ISO time derived from trio's clock.
    """
    registry = services.registry
    now_trio = trio.current_time()
    now_wall = services.wall_clock()
    node = services.settings.node_id
    records = []
    for actor in services.router.supervisor.actor_statistics():
        records.append(_record(actor, registry.get(actor.key), node, now_trio, now_wall))
    records.sort(key=lambda r: r["salon_id"])
    return records


def _record(actor: ActorStatistics[Any], view: Any, node: str, now_trio: float, now_wall: float) -> dict[str, Any]:
    crash = f"{actor.last_error.type}: {actor.last_error.message}" if actor.last_error is not None else None
    if view is not None and actor.state not in (ActorState.FAILED, ActorState.BACKING_OFF):
        state, phone, since, last_error = view.state, view.phone, view.since, view.reason or crash
    else:
        state, phone, since, last_error = (
            _SUPERVISOR_STATE_SHOWN.get(actor.state, actor.state.value),
            None,
            actor.since,
            crash,
        )
    return {
        "salon_id": actor.key,
        "state": state,
        "phone": phone,
        "node": node,
        "restarts": actor.restarts,
        "last_error": last_error,
        "since": _iso(now_wall - (now_trio - since)),
    }


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def session_counts(services: Services, supervisor_by_state: Mapping[str, int], actors: int) -> dict[str, int]:
    """Companies by session state, without visiting each company (cheap at any scale).

    Running sessions publish their view to the registry; an actor that crashed and backs off, has
    failed, or has not published yet has no view, and is counted under the state its record shows.
    """
    by_state = services.registry.by_state()
    failed = supervisor_by_state.get(ActorState.FAILED.value, 0)
    backing_off = supervisor_by_state.get(ActorState.BACKING_OFF.value, 0)
    viewless = actors - sum(by_state.values()) - failed - backing_off
    for state, count in (("failed", failed), ("reconnecting", backing_off), ("starting", viewless)):
        if count > 0:
            by_state[state] = by_state.get(state, 0) + count
    return by_state


# -- the blueprint -----------------------------------------------------------------------------


def admin_token_given(services: Services) -> bool | None:
    """True: the right admin bearer token; False: a wrong one; None: no Authorization header."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return hmac.compare_digest(token.strip().encode(), services.settings.admin_token.encode())


def _prefers_html() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def _scrub(services: Services, value: Any) -> Any:
    """Remove anything secret from dependency error texts (a DSN password could sit in one)."""
    if not isinstance(value, str):
        return value
    from urllib.parse import urlsplit

    settings = services.settings
    secrets = [settings.jwt_secret, settings.admin_token, settings.yclients_partner_token]
    for url in (settings.database_url, settings.redis_url):
        if url:
            password = urlsplit(url).password
            if password:
                secrets.append(password)
    for secret in secrets:
        if secret and len(secret) >= 4:
            value = value.replace(secret, "***")
    return value


def blueprint(services: Services) -> Blueprint:
    bp = Blueprint("ops", __name__)
    expected = Expected.load()
    metrics = Metrics(services)
    services.metrics = metrics  # the websocket handler reports QR latency through it

    def clean(result: dict[str, Any]) -> dict[str, Any]:
        return {k: _scrub(services, v) for k, v in result.items()}

    async def readiness() -> tuple[dict[str, Any], dict[str, Any], list[str], dict[str, str]]:
        postgres, redis = await _gather(lambda: check_postgres(services, expected), lambda: check_redis(services))
        failing: list[str] = []
        reasons: dict[str, str] = {}
        if not postgres["ok"]:
            failing.append("postgres")
            reasons["postgres"] = postgres.get("error") or "not reachable"
        else:
            problem = schema_problem(postgres, expected)
            if problem is not None:
                failing.append("schema")
                reasons["schema"] = problem
        if not redis["ok"]:
            failing.append("redis")
            reasons["redis"] = redis.get("error") or "not reachable"
        return clean(postgres), clean(redis), failing, {k: _scrub(services, v) for k, v in reasons.items()}

    @bp.get("/healthz")
    async def healthz() -> Response:
        return jsonify({"ok": True})

    @bp.get("/readyz")
    async def readyz() -> Response:
        postgres, redis, failing, reasons = await readiness()
        if services.shutting_down.is_set():
            # Tell the load balancer to stop sending new work while the actors stop.
            failing.append("shutting_down")
            reasons["shutting_down"] = "the node is stopping"
        body: dict[str, Any] = {"ready": not failing, "failing": failing}
        if reasons:
            body["reasons"] = reasons
        body["dependencies"] = {"postgres": postgres, "redis": redis}
        response = jsonify(body)
        response.status_code = 200 if not failing else 503
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/status")
    async def status() -> Response:
        if _prefers_html():
            # The page fetches the JSON itself (web/status.js, Accept: application/json).
            page = (web_dir() / "status.html").read_text(encoding="utf-8")
            response = Response(page, content_type="text/html; charset=utf-8")
            response.headers["Vary"] = "Accept"
            response.headers["Cache-Control"] = "no-store"
            return response
        authorized = admin_token_given(services)
        if authorized is False:
            return error_response(
                401, "unauthorized", "the admin token is wrong; send Authorization: Bearer <ADMIN_TOKEN>"
            )

        async def outbox() -> dict[str, Any]:
            with trio.move_on_after(CHECK_TIMEOUT_S):
                try:
                    stats = await services.store.outbox.stats()
                except Exception:
                    return {"pending": None, "oldest_pending_s": None, "failed": None}
                return {"pending": stats.pending, "oldest_pending_s": stats.oldest_pending_s, "failed": stats.failed}
            return {"pending": None, "oldest_pending_s": None, "failed": None}

        async def nodes() -> list[str]:
            if services.nodes is None:
                return [services.settings.node_id]
            with trio.move_on_after(CHECK_TIMEOUT_S):
                try:
                    return list(await services.nodes.nodes())
                except Exception:
                    pass
            return []

        (postgres, redis, _, _), outbox_stats, live_nodes = await _gather(readiness, outbox, nodes)
        supervisor_stats = services.router.supervisor.statistics()
        body: dict[str, Any] = {
            "node": services.settings.node_id,
            "version": __version__,
            "uptime_s": round(trio.current_time() - services.started_at, 3),
            "mode": services.settings.mode,
            "dependencies": {
                "postgres": postgres,
                "redis": redis,
            },
            "actors": {
                "total": supervisor_stats.actors,
                "by_state": session_counts(services, supervisor_stats.by_state, supervisor_stats.actors),
                "restarts_total": supervisor_stats.restarts_total,
                "mailbox_max_depth": supervisor_stats.mailbox_max_depth,
            },
            "cluster": {"nodes": live_nodes, "owned_here": supervisor_stats.actors},
            "outbox": outbox_stats,
            "websockets": {"open": services.counters.websockets_open},
        }
        if authorized:
            body["companies"] = company_records(services)
        response = jsonify(body)
        response.headers["Vary"] = "Accept, Authorization"
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/metrics")
    async def metrics_text() -> Response:
        await refresh_probes(services, metrics.probes)
        return Response(metrics.render(), content_type=CONTENT_TYPE)

    return bp
