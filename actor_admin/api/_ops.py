"""Operations endpoints (docs/http-api.md#operations): ``/healthz``, ``/readyz``, ``/status`` and ``/metrics``.

``/status`` is what an operator opens first, so it must stay cheap with thousands of companies: the
per-company figures come from memory (the session registry and the supervisor), and the only I/O is
one round trip each to PostgreSQL and Redis plus the outbox aggregate, run concurrently and each
bounded in time — a dead dependency makes its part ``ok: false``, never the page slow or a 500.
"""

from __future__ import annotations

import gc
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import attrs
import trio
from quart import Blueprint, Response, jsonify, request

from actor_admin import __version__
from actor_admin._resources import web_dir
from actor_admin.json_types import JSON
from actor_admin.runtime import ActorState, ActorStatistics
from actor_admin.session import STATES
from actor_admin.store import (
    INTEGRATION_STATUSES,
    Company,
    IntegrationStatus,
    MigrationError,
    NodeRecord,
    StoredSalon,
    TableSize,
    load_migrations,
)

from . import _pages
from ._http import error_response, fail
from ._metrics import CONTENT_TYPE, Metrics, refresh_probes, session_counts
from ._services import Services

T = TypeVar("T")

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


async def _bounded(check: Callable[[], Awaitable[JSON]], timeout_s: float) -> JSON:
    with trio.move_on_after(timeout_s):
        try:
            return await check()
        except Exception as exc:
            return {"ok": False, "latency_ms": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": False, "latency_ms": None, "error": f"no answer within {timeout_s:g} s"}


async def check_postgres(services: Services, expected: Expected, timeout_s: float = CHECK_TIMEOUT_S) -> JSON:
    """``{"ok", "latency_ms", "schema_version", "pending"?, "error"?}`` — never raises."""

    async def check() -> JSON:
        latency_s = await services.store.ping()
        version = await services.store.schema_version()
        return {"ok": True, "latency_ms": round(latency_s * 1000.0, 3), "schema_version": version}

    result = await _bounded(check, timeout_s)
    result.setdefault("schema_version", None)
    return result


async def check_redis(services: Services, timeout_s: float = CHECK_TIMEOUT_S) -> JSON:
    """``{"ok", "latency_ms", "error"?}`` — never raises."""
    redis = services.redis
    if redis is None:
        return {"ok": False, "latency_ms": None, "error": "REDIS_URL is not configured"}

    async def check() -> JSON:
        latency_ms = await redis.ping(timeout_s=timeout_s)
        return {"ok": True, "latency_ms": round(latency_ms, 3)}

    return await _bounded(check, timeout_s)


def schema_problem(postgres: JSON, expected: Expected) -> str | None:
    """Why the schema is not fine (None when it is); only meaningful when PostgreSQL answered."""
    version = postgres.get("schema_version")
    pending = expected.pending_after(version)
    if pending is None:
        return f"the database is at {version}, newer than this code knows — upgrade actor-admin"
    if pending:
        return "pending migrations: " + ", ".join(pending) + " — run `actor-admin migrate`"
    return None


async def _answer_or_none(query: Callable[[], Awaitable[T]], timeout_s: float = CHECK_TIMEOUT_S) -> T | None:
    """``query()``'s answer, or None when it fails or takes longer than ``timeout_s``."""
    with trio.move_on_after(timeout_s):
        try:
            return await query()
        except Exception:
            return None
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


def company_records(services: Services) -> list[JSON]:
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


def _record(actor: ActorStatistics[Any], view: Any, node: str, now_trio: float, now_wall: float) -> JSON:
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


def whatsapp_view(services: Services) -> JSON:
    """``whatsapp`` of ``/status`` and ``/readyz``: this node's view of WhatsApp itself
    (docs/whatsapp.md#upstream-outage). ``upstream`` is ``ok`` or ``outage``; in an outage ``since``
    (ISO 8601 UTC), ``held_back`` (salons waiting behind the probe), ``probes`` made so far and
    ``next_probe_in_s`` (null while a probe is dialling)."""
    if services.upstream is None:
        return {"upstream": "unknown"}
    view = services.upstream.view()
    body: JSON = {"upstream": view.upstream, "since": None, "held_back": view.held_back}
    if view.since is not None:
        body["since"] = _iso(services.wall_clock() - (trio.current_time() - view.since))
        body["probes"] = view.probes
        body["next_probe_in_s"] = view.next_probe_in_s
    return body


# -- the supervisor's list and a salon's history ------------------------------------------------

#: Problems a supervisor filters on: a live session state, or (activation_failed) the integration status.
PROBLEMS: Final = ("failed", "conflict", "logged_out", "activation_failed")
PER_PAGE_DEFAULT: Final = 50
PER_PAGE_MAX: Final = 200
HISTORY_DEFAULT: Final = 50
HISTORY_MAX: Final = 500


def _whole_arg(name: str, *, default: int, high: int) -> int:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not 1 <= int(raw) <= high:
        fail(422, "invalid_query", f"{name} must be a whole number from 1 to {high}")
    return int(raw)


def _listing_filter() -> tuple[str | None, IntegrationStatus | None]:
    """``(session_state, integration_status)`` chosen by ``?state=`` or ``?problem=`` (at most one)."""
    state = request.args.get("state") or None
    problem = request.args.get("problem") or None
    if state is not None and problem is not None:
        fail(422, "invalid_query", "give state or problem, not both")
    if problem is not None:
        if problem not in PROBLEMS:
            fail(422, "invalid_query", "problem must be one of: " + ", ".join(PROBLEMS))
        state = problem
    if state is None:
        return None, None
    for status in INTEGRATION_STATUSES:
        if state == status:
            return None, status
    if state in STATES:
        return state, None
    known = ", ".join([*INTEGRATION_STATUSES, *(s for s in STATES if s not in INTEGRATION_STATUSES)])
    fail(422, "invalid_query", f"state must be one of: {known}")


def stored_state(connected: bool) -> str:
    """The state shown for a salon whose actor runs on another node: its stored connection, which
    that node's actor keeps current in ``companies`` (docs/http-api.md#status-companies)."""
    return "connected" if connected else "disconnected"


async def companies_in_state(
    services: Services, live: Mapping[int, JSON], state: str, *, page: int, per_page: int
) -> tuple[list[Company], int]:
    """One page of the salons in session state ``state`` across the cluster, in ``salon_id`` order, and
    how many there are: those running here as their sessions (``live``, this node's records) show them;
    for ``connected``, also those running on other nodes whose stored connection is up, as their owners
    keep it in ``companies`` — the only state another node stores (docs/http-api.md#status-companies).
    ``/status/companies`` and ``/admin/companies`` both filter with this."""
    matching = {salon_id for salon_id, record in live.items() if record["state"] == state}
    if state == "connected":
        matching |= (await services.store.ownership.connected_salons()).keys() - live.keys()
    ids = sorted(matching)
    chunk = ids[(page - 1) * per_page : page * per_page]
    companies = [c for c in [await services.store.companies.get(salon_id) for salon_id in chunk] if c is not None]
    return companies, len(ids)


def company_row(company: Any, record: Mapping[str, Any] | None, owner: str | None = None) -> JSON:
    """One salon as the supervisor's list shows it: the stored company, its live session if it runs
    here (else, owned by another node, its stored connection), and the node that owns it
    (``owner``, from ``salon_owners``) wherever it runs."""
    live = record or {}
    state = live.get("state")
    if record is None and owner is not None:
        state = stored_state(company.whatsapp_connected)
    return {
        "salon_id": company.salon_id,
        "title": company.title,
        "integration_status": company.integration_status,
        "state": state,
        "phone": company.whatsapp_phone or live.get("phone"),
        "node": live.get("node") or owner,
        "restarts": live.get("restarts", 0),
        "last_error": live.get("last_error"),
        "since": live.get("since"),
    }


def _event_json(event: Any, now_wall: float, scrub: Callable[[Any], Any]) -> JSON:
    at = event.at.timestamp()
    return {
        "id": event.id,
        "type": event.type,
        "at": _iso(at),
        "age_s": round(max(0.0, now_wall - at), 1),
        "data": {str(k): scrub(v) for k, v in dict(event.data).items()},
    }


def cluster_view(
    services: Services, rows: tuple[list[NodeRecord], dict[str, int]] | None, actors_here: int
) -> JSON:
    """``cluster`` of ``/status``: every node row with what it owns, from PostgreSQL.

    A node not registered in ``cluster_nodes`` runs alone (no ownership loop): it is listed as the
    one node owning what it runs. ``rows`` None (PostgreSQL did not answer) lists this node alone
    the same way, so the answer stays useful while the database is down.
    """
    me = services.settings.node_id
    records, owned = rows if rows is not None else ([], {})
    nodes = [
        {
            "id": r.node_id,
            "version": r.version,
            "heartbeat_age_s": round(max(0.0, r.heartbeat_age_s), 3),
            "owned": owned.get(r.node_id, 0),
            "draining": r.draining,
        }
        for r in records
    ]
    if any(r.node_id == me for r in records):
        return {"nodes": nodes, "owned_here": owned.get(me, 0)}
    sole = {"id": me, "version": __version__, "heartbeat_age_s": 0.0, "owned": actors_here, "draining": False}
    nodes = sorted([*nodes, sole], key=lambda n: str(n["id"]))
    return {"nodes": nodes, "owned_here": actors_here}


def cluster_records(services: Services, stored: list[StoredSalon] | None) -> list[JSON]:
    """Every salon of the cluster for ``/status``: this node's from memory, the others' as stored.

    A salon whose actor runs here is shown as the registry sees it; one owned by another node (or
    that should run and has no owner: ``node`` None) with the connection its owner last stored.
    One query for all of them (``Ownership.salons``), never a round trip per salon.
    """
    records = company_records(services)
    if not stored:
        return records
    here = {r["salon_id"] for r in records}
    for salon in stored:
        if salon.salon_id in here:
            continue
        records.append(
            {
                "salon_id": salon.salon_id,
                "state": "connected" if salon.whatsapp_connected else "disconnected",
                "phone": salon.whatsapp_phone,
                "node": salon.node_id,
                "restarts": 0,
                "last_error": None,
                "since": _iso(salon.since.timestamp()),
            }
        )
    records.sort(key=lambda r: r["salon_id"])
    return records


def rate_limiting_view(services: Services, redis_ok: bool) -> JSON:
    """``rate_limiting`` of ``/status``: ``ok``; ``degraded`` while the limiter lets every hit through
    because Redis does not answer (it has failed open since ``since``, or Redis failed this status
    check, so the next hit would); ``off`` without Redis (one process, no shared limits)."""
    limiter = services.limiter
    if limiter is None:
        return {"state": "off", "since": None, "failed_open_total": 0}
    degraded_since = limiter.degraded_since
    since = None
    if degraded_since is not None:
        since = _iso(services.wall_clock() - (trio.current_time() - degraded_since))
    state = "degraded" if degraded_since is not None or not redis_ok else "ok"
    return {"state": state, "since": since, "failed_open_total": limiter.failed_open_total}


def storage_view(services: Services, sizes: list[TableSize] | None) -> JSON:
    """``storage`` of the detailed ``/status``: table sizes (None: PostgreSQL did not answer), the
    retention in force and what its last run on this node did (docs/data.md#retention)."""
    policy = services.settings.retention
    retention: JSON = {
        "messages_days": policy.messages_days,
        "events_days": policy.events_days,
        "outbox_days": policy.outbox_days,
        "last_run": None,
    }
    run = services.pruner.last_run if services.pruner is not None else None
    if run is not None:
        wall = services.wall_clock() - (trio.current_time() - run.started_at)
        retention["last_run"] = {
            "at": _iso(wall),
            "outcome": run.outcome,
            "pruned": dict(run.pruned),
            "batches": run.batches,
            "duration_s": round(run.duration_s, 3),
        }
    tables = None if sizes is None else {
        size.table: {"rows_estimate": size.rows_estimate, "bytes": size.bytes} for size in sizes
    }
    return {"tables": tables, "retention": retention}


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


def admin_refusal(services: Services) -> Response | None:
    """None for the right admin token; else the 401 that refuses the request, counted and logged."""
    given = admin_token_given(services)
    if given is True:
        return None
    which = "a wrong" if given is False else "no"
    services.refusals.refused("bad_admin_token", f"{which} admin token for {request.path} from {request.remote_addr}")
    response = error_response(401, "unauthorized", "give Authorization: Bearer <ADMIN_TOKEN>")
    response.headers["WWW-Authenticate"] = 'Bearer realm="admin"'
    return response


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

    def clean(result: JSON) -> JSON:
        return {k: _scrub(services, v) for k, v in result.items()}

    async def readiness() -> tuple[JSON, JSON, list[str], dict[str, str]]:
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
        body: JSON = {"ready": not failing, "failing": failing}
        if reasons:
            body["reasons"] = reasons
        body["dependencies"] = {"postgres": postgres, "redis": redis}
        # Said, never failing: a node in a WhatsApp outage still serves HTTP (docs/http-api.md#readyz).
        body["whatsapp"] = whatsapp_view(services)
        response = jsonify(body)
        response.status_code = 200 if not failing else 503
        response.headers["Cache-Control"] = "no-store"
        return response

    def gc_view() -> JSON:
        """The collector as the node tuned it (docs/websocket.md#garbage-collection)."""
        return {
            "thresholds": list(gc.get_threshold()),
            "frozen": gc.get_freeze_count(),
            "collections": [generation["collections"] for generation in gc.get_stats()],
        }

    @bp.get("/status")
    async def status() -> Response:
        if _pages.prefers_html():
            # The page fetches the JSON itself (web/status.js, Accept: application/json).
            page = (web_dir() / "status.html").read_text(encoding="utf-8")
            response = Response(page, content_type="text/html; charset=utf-8")
            response.headers["Vary"] = "Accept"
            response.headers["Cache-Control"] = "no-store"
            return response
        authorized = admin_token_given(services)
        if authorized is False:
            services.refusals.refused("bad_admin_token", f"a wrong admin token for /status from {request.remote_addr}")
            return error_response(
                401, "unauthorized", "the admin token is wrong; send Authorization: Bearer <ADMIN_TOKEN>"
            )

        async def outbox() -> JSON:
            with trio.move_on_after(CHECK_TIMEOUT_S):
                try:
                    stats = await services.store.outbox.stats()
                except Exception:
                    return {"pending": None, "oldest_pending_s": None, "failed": None}
                return {"pending": stats.pending, "oldest_pending_s": stats.oldest_pending_s, "failed": stats.failed}
            return {"pending": None, "oldest_pending_s": None, "failed": None}

        async def cluster() -> tuple[list[NodeRecord], dict[str, int]] | None:
            with trio.move_on_after(CHECK_TIMEOUT_S):
                try:
                    ownership = services.store.ownership
                    rows, owned = await _gather(ownership.nodes, ownership.owned_counts)
                    return rows, owned
                except Exception:
                    return None
            return None

        async def stored_salons() -> list[StoredSalon] | None:
            return await _answer_or_none(services.store.ownership.salons) if authorized else None

        async def table_sizes() -> list[TableSize] | None:
            return await _answer_or_none(services.store.retention.table_sizes) if authorized else None

        (postgres, redis, _, _), outbox_stats, cluster_rows, stored, sizes = await _gather(
            readiness, outbox, cluster, stored_salons, table_sizes
        )
        supervisor_stats = services.router.supervisor.statistics()
        body: JSON = {
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
            "cluster": cluster_view(services, cluster_rows, supervisor_stats.actors),
            "outbox": outbox_stats,
            "websockets": {"open": services.counters.websockets_open},
            "gc": gc_view(),
            "rate_limiting": rate_limiting_view(services, bool(redis["ok"])),
            "whatsapp": whatsapp_view(services),
        }
        if authorized:
            body["companies"] = cluster_records(services, stored)
            body["storage"] = storage_view(services, sizes)
        response = jsonify(body)
        response.headers["Vary"] = "Accept, Authorization"
        response.headers["Cache-Control"] = "no-store"
        return response

    def no_store(body: JSON) -> Response:
        response = jsonify(body)
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/status/companies")
    async def status_companies() -> Response:
        """One page of salons, optionally of one state or problem (docs/http-api.md#status-companies)."""
        if (answer := admin_refusal(services)) is not None:
            return answer
        session_state, integration_status = _listing_filter()
        page = _whole_arg("page", default=1, high=10**6)
        per_page = _whole_arg("per_page", default=PER_PAGE_DEFAULT, high=PER_PAGE_MAX)
        live = {int(r["salon_id"]): r for r in company_records(services)}
        store = services.store
        if session_state is not None:
            companies, total = await companies_in_state(services, live, session_state, page=page, per_page=per_page)
        else:
            companies, total = await store.companies.list(
                integration_status=integration_status, page=page, page_size=per_page
            )
        counts = {p: sum(1 for r in live.values() if r["state"] == p) for p in PROBLEMS[:-1]}
        _, counts["activation_failed"] = await store.companies.list(integration_status="activation_failed", page_size=1)
        owners = await store.ownership.owners_of(c.salon_id for c in companies)
        return no_store(
            {
                "companies": [company_row(c, live.get(c.salon_id), owners.get(c.salon_id)) for c in companies],
                "page": page,
                "per_page": per_page,
                "total": total,
                "problems": counts,
            }
        )

    @bp.get("/status/companies/<int:salon_id>/history")
    async def status_history(salon_id: int) -> Response:
        """A salon's company record and its latest events, newest first, each with its age."""
        if (answer := admin_refusal(services)) is not None:
            return answer
        if not 0 < salon_id < 2**63:
            fail(404, "unknown_salon", "no such salon")
        limit = _whole_arg("limit", default=HISTORY_DEFAULT, high=HISTORY_MAX)
        company = await services.store.companies.get(salon_id)
        events = await services.store.events.list(salon_id, limit=limit)
        if company is None and not events:
            fail(404, "unknown_salon", f"salon {salon_id} is not known here")
        live = next((r for r in company_records(services) if r["salon_id"] == salon_id), None)
        owners = await services.store.ownership.owners_of([salon_id])
        now_wall = services.wall_clock()
        return no_store(
            {
                "salon_id": salon_id,
                "company": None if company is None else company_row(company, live, owners.get(salon_id)),
                "events": [_event_json(e, now_wall, lambda v: _scrub(services, v)) for e in events],
                "now": _iso(now_wall),
            }
        )

    @bp.get("/metrics")
    async def metrics_text() -> Response:
        await refresh_probes(services, metrics.probes)
        return Response(metrics.render(), content_type=CONTENT_TYPE)

    return bp
