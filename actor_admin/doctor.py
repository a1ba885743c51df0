"""``actor-admin doctor``: ops/RUNBOOK.md's diagnostic checklist as one command (docs/commands-and-settings.md#doctor).

The old guide had operators run ``pm2 status``, ``redis-cli ping``, a database script, ``curl
…/marketplace/test`` and ``wscat`` by hand and read the output. Here each of those is a check that
prints one line, ``✓`` or ``✗``, and for every ``✗`` the exact thing to do. The exit status is 1 when
anything failed, so the command also works in scripts and after deploys.

Checks, in order (each bounded in time; a failure never stops the later checks):

1. settings — the same validation ``serve`` (when ``DATABASE_URL`` is set) or ``dev`` applies, every
   missing or weak secret named;
2. postgres — reachable, with latency; 3. schema — no pending migrations (named), not too new;
4. outbox — YClients calls not backing up; 5. activations — no salon left in ``activation_failed``;
6. the cluster (docs/cluster.md), from ``cluster_nodes``/``salon_owners``: nodes — none silent for
   longer than the lease TTL; versions — live nodes run one version; node-id — no two processes of
   this machine share a ``NODE_ID``; clock — this machine's clock agrees with PostgreSQL's; owners —
   every salon that should run has a live owner;
7. redis — reachable, with latency;
8. server — ``/readyz`` of the running node (``--url`` or ``PUBLIC_URL``);
9. websocket — ``/marketplace/ws`` accepts a handshake from each origin a real page has (``PUBLIC_URL``'s
   and YClients') — a browser always sends one, and a node whose ``ALLOWED_ORIGINS`` lacks it refuses the
   page (403) — and refuses a bad token with 4401;
10. actors — none stuck in ``failed`` or ``conflict`` (``/status`` with the admin token);
11. disk — free space where the node writes: ``DATA_DIR`` (under systemd the unit's RAM-backed
    ``/run/actor-admin``). In serve it must be set, and absolute, where doctor can read it: the
    settings file both read (a guess relative to doctor's own directory would measure the wrong disk).

Hints that call the admin API use the runbook's ``admin`` helper (ops/RUNBOOK.md §0), which keeps
``ADMIN_TOKEN`` off command lines.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

import attrs
import trio

from actor_admin.cluster import OwnershipTimings, RedisClient
from actor_admin.config import YCLIENTS_ORIGINS, Settings, SettingsError, load_settings, read_dotenv, redact_url
from actor_admin.store import (
    Companies,
    Database,
    EmbeddedPostgres,
    Messages,
    MigrationChecksumMismatch,
    NodeRecord,
    Outbox,
    Ownership,
    RetentionPolicy,
    SchemaTooNew,
    pending,
)

T = TypeVar("T")

CHECK_TIMEOUT_S = 5.0
#: An outbox item older than this means the worker is not delivering (the activation window is 1 h).
OUTBOX_MAX_AGE_S = 600.0
#: An inbound message not on the stream after this long: its owner is not re-announcing it (Redis down).
INBOUND_MAX_WAIT_S = 600.0
DISK_MIN_FREE_BYTES = 1 << 30
DISK_MIN_FREE_FRACTION = 0.05
DEFAULT_DEV_URL = "http://127.0.0.1:8000"
SHOW_AT_MOST = 10
#: This machine's clock may differ from PostgreSQL's by this much before doctor complains. Nothing in
#: the protocol compares clocks, but heartbeat ages, logs and token times are read by people.
CLOCK_SKEW_MAX_S = 2.0


@attrs.frozen
class Result:
    ok: bool
    detail: str
    hint: str | None = None


@attrs.define
class Context:
    """What the checks learned so far (later checks use what earlier ones found)."""

    environ: Mapping[str, str]
    mode: str
    settings: Settings | None = None
    database_url: str | None = None
    redis_url: str | None = None
    base_url: str = DEFAULT_DEV_URL
    admin_token: str | None = None
    data_dir: Path = Path("./.data")
    postgres_ok: bool = False
    schema_ok: bool = False
    server_ok: bool = False


def run(environ: Mapping[str, str], url: str | None = None, *, out: TextIO | None = None) -> int:
    """Run every check, print one line each to ``out`` (stdout), return 1 if any failed."""
    return trio.run(_main, environ, url, out or sys.stdout)


async def _main(environ: Mapping[str, str], url: str | None, out: TextIO) -> int:
    import trio_asyncio

    ctx = _context(environ, url)
    say = _printer(out)
    say(f"actor-admin doctor — {ctx.mode} settings, server {ctx.base_url}")
    failed = 0
    checks: list[tuple[str, Callable[[Context], Awaitable[Result]]]] = [
        ("settings", _check_settings),
        ("postgres", _check_postgres),
        ("schema", _check_schema),
        ("outbox", _check_outbox),
        ("inbound", _check_inbound),
        ("activations", _check_activations),
        ("nodes", _check_nodes),
        ("versions", _check_versions),
        ("node-id", _check_node_id),
        ("clock", _check_clock),
        ("owners", _check_owners),
        ("redis", _check_redis),
        ("server", _check_server),
        ("websocket", _check_websocket),
        ("actors", _check_actors),
        ("disk", _check_disk),
    ]
    async with trio_asyncio.open_loop():
        for name, check in checks:
            with trio.move_on_after(CHECK_TIMEOUT_S * 2):
                try:
                    result = await check(ctx)
                except Exception as exc:  # a check that breaks is a failed check, not a traceback
                    result = Result(False, f"the check itself failed: {type(exc).__name__}: {exc}")
                _report(say, name, result)
                failed += not result.ok
                continue
            _report(say, name, Result(False, f"no result within {CHECK_TIMEOUT_S * 2:g} s"))
            failed += 1
    say(f"{failed} check(s) failed" if failed else "all checks passed")
    return 1 if failed else 0


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say


def _report(say: Callable[[str], None], name: str, result: Result) -> None:
    mark = "✓" if result.ok else "✗"
    lines = result.detail.split("\n")
    say(f"{mark} {name:<12} {lines[0]}")
    for extra in lines[1:]:
        say(f"  {'':<12} {extra}")
    if not result.ok and result.hint:
        for i, hint in enumerate(result.hint.split("\n")):
            say(f"  {'':<12} {'→ ' if i == 0 else '  '}{hint}")


# -- settings ----------------------------------------------------------------------------------


def _context(environ: Mapping[str, str], url: str | None) -> Context:
    mode = "serve" if environ.get("DATABASE_URL") else "dev"
    ctx = Context(environ=environ, mode=mode)
    ctx.data_dir = Path(environ.get("DATA_DIR") or "./.data")
    generated = read_dotenv(ctx.data_dir / "dev.env") if mode == "dev" else None
    try:
        ctx.settings = load_settings(mode, environ, generated=generated)  # type: ignore[arg-type]
    except SettingsError:
        ctx.settings = None
    s = ctx.settings
    ctx.database_url = environ.get("DATABASE_URL") or None
    ctx.redis_url = environ.get("REDIS_URL") or None
    if mode == "dev":
        ctx.database_url = ctx.database_url or _embedded_postgres_dsn(ctx.data_dir)
        ctx.redis_url = ctx.redis_url or _embedded_redis_url(ctx.data_dir)
    ctx.admin_token = s.admin_token if s else (environ.get("ADMIN_TOKEN") or (generated or {}).get("ADMIN_TOKEN"))
    base = url or (s.public_url if s else None) or environ.get("PUBLIC_URL") or DEFAULT_DEV_URL
    ctx.base_url = base.rstrip("/")
    return ctx


def _embedded_postgres_dsn(data_dir: Path) -> str | None:
    """The DSN of ``dev``'s embedded server when it runs (read from its ``postmaster.pid``)."""
    try:
        return EmbeddedPostgres(data_dir / "pg").dsn_for("postgres")
    except Exception:
        return None


def _embedded_redis_url(data_dir: Path) -> str | None:
    try:
        port = int((data_dir.absolute() / "redis" / "redis.port").read_text().strip())
    except (OSError, ValueError):
        return None
    return f"redis://127.0.0.1:{port}/0"


async def _check_settings(ctx: Context) -> Result:
    await trio.lowlevel.checkpoint()
    generated = read_dotenv(ctx.data_dir / "dev.env") if ctx.mode == "dev" else None
    try:
        load_settings(ctx.mode, ctx.environ, generated=generated)  # type: ignore[arg-type]
    except SettingsError as exc:
        if ctx.mode == "dev":
            hint = (
                f"`actor-admin dev` generates missing secrets into {ctx.data_dir / 'dev.env'}; fix the others in .env"
            )
        else:
            hint = (
                "fix them in /etc/actor-admin/env (or .env in the working directory), "
                "then: sudo systemctl restart actor-admin"
            )
        return Result(
            False,
            f"{len(exc.problems)} problem(s) in the {ctx.mode} settings:\n" + "\n".join(f"• {p}" for p in exc.problems),
            hint,
        )
    return Result(True, f"{ctx.mode} settings are complete (secrets present and long enough)")


# -- PostgreSQL --------------------------------------------------------------------------------


async def _pg_connect(dsn: str) -> Any:
    import asyncpg
    import trio_asyncio

    return await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn, timeout=CHECK_TIMEOUT_S)


def _shown(url: str) -> str:
    return redact_url(url)


async def _check_postgres(ctx: Context) -> Result:
    import trio_asyncio

    dsn = ctx.database_url
    if dsn is None:
        if ctx.mode == "dev":
            return Result(
                False,
                f"the embedded PostgreSQL of {ctx.data_dir} is not running",
                "start the node: actor-admin dev   (or set DATABASE_URL to check another server)",
            )
        return Result(False, "DATABASE_URL is not set", "set DATABASE_URL=postgresql://USER:PASSWORD@HOST:5432/DB")
    started = trio.current_time()
    try:
        with trio.fail_after(CHECK_TIMEOUT_S):
            conn = await _pg_connect(dsn)
            try:
                version = await trio_asyncio.aio_as_trio(conn.fetchval)("SHOW server_version")
            finally:
                await trio_asyncio.aio_as_trio(conn.close)()
    except trio.TooSlowError:
        return Result(False, f"no answer from {_shown(dsn)} within {CHECK_TIMEOUT_S:g} s", _pg_hint(dsn, "timeout"))
    except Exception as exc:
        return Result(False, f"cannot connect to {_shown(dsn)}: {_one_line(exc)}", _pg_hint(dsn, type(exc).__name__))
    ctx.postgres_ok = True
    latency_ms = (trio.current_time() - started) * 1000.0
    return Result(True, f"PostgreSQL {version} at {_shown(dsn)} answers ({latency_ms:.1f} ms to connect and query)")


def _pg_hint(dsn: str, kind: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or "the unix socket"
    database = parts.path.lstrip("/") or "postgres"
    user = parts.username or "postgres"
    if kind == "InvalidPasswordError":
        return f"the password in DATABASE_URL is wrong for user {user!r}; try: psql \"$DATABASE_URL\" -c 'select 1'"
    if kind == "InvalidCatalogNameError":
        return f"database {database!r} does not exist; create it: createdb -h {host} -U {user} {database}"
    if kind == "InvalidAuthorizationSpecificationError":
        return f'user {parts.username!r} may not connect; check pg_hba.conf and the role (psql "$DATABASE_URL")'
    return (
        f"is PostgreSQL running on {host}:{parts.port or 5432}? sudo systemctl status postgresql; pg_isready -h {host}"
    )


async def _check_schema(ctx: Context) -> Result:
    if not ctx.postgres_ok or ctx.database_url is None:
        return Result(False, "not checked: PostgreSQL is not reachable", "fix postgres first")
    try:
        with trio.fail_after(CHECK_TIMEOUT_S):
            waiting = await pending(ctx.database_url)
    except SchemaTooNew as exc:
        return Result(
            False, f"the database is newer than this code: {exc}", "upgrade actor-admin to the release that migrated it"
        )
    except MigrationChecksumMismatch as exc:
        return Result(
            False,
            f"an applied migration file changed: {exc}",
            "restore the original sql/ file; never edit applied migrations",
        )
    if waiting:
        return Result(
            False,
            f"{len(waiting)} pending migration(s): " + ", ".join(waiting),
            "apply them: actor-admin migrate   (serve applies them at start unless --no-migrate)",
        )
    ctx.schema_ok = True
    return Result(True, "schema is up to date (no pending migrations)")


async def _open_db(ctx: Context) -> Any:
    assert ctx.database_url is not None
    return await Database.open(ctx.database_url, pool_size=1)


_SCHEMA_NOT_READY = Result(False, "not checked: the schema is not ready", "fix postgres/schema first")


async def _read(ctx: Context, query: Callable[[Any], Awaitable[T]]) -> T:
    """``query(db)`` on a connection of its own, within the check timeout."""
    db = await _open_db(ctx)
    try:
        with trio.fail_after(CHECK_TIMEOUT_S):
            return await query(db)
    finally:
        await db.aclose()


async def _check_outbox(ctx: Context) -> Result:
    if not ctx.schema_ok:
        return _SCHEMA_NOT_READY
    stats = await _read(ctx, lambda db: Outbox(db).stats())
    oldest = stats.oldest_pending_s
    detail = f"{stats.pending} pending" + (f", oldest {oldest:.0f} s" if oldest is not None else "")
    detail += f", {stats.failed} given up"
    if oldest is not None and oldest > OUTBOX_MAX_AGE_S:
        return Result(
            False,
            detail + " — YClients calls are not being delivered",
            f"see why: curl -s {ctx.base_url}/metrics | grep actor_admin_yclients_calls; journalctl -u actor-admin "
            "-o cat | jq -c 'select(.logger | startswith(\"actor_admin.yclients\"))'\n"
            "check YCLIENTS_PARTNER_TOKEN / YCLIENTS_API_URL; the outbox retries by itself once YClients answers",
        )
    return Result(True, detail)


async def _check_inbound(ctx: Context) -> Result:
    """Inbound messages the AI product has not been told of (docs/data.md#reannouncing)."""
    if not ctx.schema_ok:
        return _SCHEMA_NOT_READY
    days = ctx.settings.retention.messages_days if ctx.settings else RetentionPolicy().messages_days
    waiting, oldest = await _read(
        ctx, lambda db: Messages(db).unpublished_waiting(retention_days=days, older_than_s=INBOUND_MAX_WAIT_S)
    )
    if not waiting:
        return Result(True, f"every inbound message older than {INBOUND_MAX_WAIT_S / 60:.0f} min is on the stream")
    return Result(
        False,
        f"{waiting} inbound message(s) not on the inbound stream, oldest {(oldest or 0) / 60:.0f} min"
        " — the AI receptionist has not seen them (salons some node owns)",
        "check doctor's redis line: the salons' owners announce them by themselves once Redis answers; "
        f"curl -s {ctx.base_url}/metrics | grep actor_admin_inbound_\n"
        "see ops/RUNBOOK.md §4.4",
    )


async def _check_activations(ctx: Context) -> Result:
    if not ctx.schema_ok:
        return _SCHEMA_NOT_READY
    companies, total = await _read(
        ctx, lambda db: Companies(db).list(integration_status="activation_failed", page_size=SHOW_AT_MOST)
    )
    if total:
        ids = ", ".join(str(c.salon_id) for c in companies) + (" …" if total > len(companies) else "")
        return Result(
            False,
            f"{total} salon(s) in activation_failed (YClients never confirmed them): {ids}",
            "re-activate each: admin /admin/companies/SALON_ID/activate -X POST   (admin: ops/RUNBOOK.md §0)",
        )
    return Result(True, "no salon in activation_failed")


# -- the cluster -------------------------------------------------------------------------------

_TIMINGS = OwnershipTimings()


def _live(node: NodeRecord) -> bool:
    """Heard from within the lease TTL (PostgreSQL's clock: for operators; nodes judge on their own)."""
    return node.heartbeat_age_s <= _TIMINGS.ttl_s


def _failed_listing(summary: str, lines: list[str], hint: str) -> Result:
    """A ✗ whose detail is a summary line and at most :data:`SHOW_AT_MOST` items."""
    shown = lines[:SHOW_AT_MOST] + ([f"… and {len(lines) - SHOW_AT_MOST} more"] if len(lines) > SHOW_AT_MOST else [])
    return Result(False, "\n".join([summary, *shown]), hint)


async def _cluster_nodes(ctx: Context) -> list[NodeRecord]:
    return await _read(ctx, lambda db: Ownership(db).nodes())


async def _check_nodes(ctx: Context) -> Result:
    if not ctx.schema_ok:
        return _SCHEMA_NOT_READY
    nodes = await _cluster_nodes(ctx)
    if not nodes:
        return Result(True, "no node registered in cluster_nodes (one node without the ownership loop)")
    silent = [n for n in nodes if not _live(n)]
    detail = f"{len(nodes) - len(silent)} of {len(nodes)} node(s) heard from within {_TIMINGS.ttl_s:g} s"
    if not silent:
        return Result(True, detail)
    lines = [f"{n.node_id}: last heartbeat {n.heartbeat_age_s:.0f} s ago (version {n.version})" for n in silent]
    return _failed_listing(
        detail,
        lines,
        "a node without a heartbeat is dead, paused or cut off from PostgreSQL; the others take its salons "
        "over after the TTL (ops/RUNBOOK.md, \"Several nodes\")\n"
        "on its host: sudo systemctl status actor-admin; a node that was removed on purpose is forgotten "
        "by the others after a minute",
    )


async def _check_versions(ctx: Context) -> Result:
    if not ctx.schema_ok:
        return _SCHEMA_NOT_READY
    live = [n for n in await _cluster_nodes(ctx) if _live(n)]
    versions: dict[str, list[str]] = {}
    for n in live:
        versions.setdefault(n.version, []).append(n.node_id)
    if len(versions) <= 1:
        return Result(True, f"live nodes run {next(iter(versions), 'no version yet')}")
    lines = [f"{version}: {', '.join(ids)}" for version, ids in sorted(versions.items())]
    return _failed_listing(
        f"live nodes run {len(versions)} versions",
        lines,
        "expected only during a rolling deploy; finish it (upgrade and restart the remaining nodes one by "
        "one, ops/RUNBOOK.md \"Several nodes\") or roll the new ones back",
    )


def _same_node_id_processes(proc: Path = Path("/proc")) -> dict[str, list[int]] | None:
    """``{NODE_ID: [pid, …]}`` of actor-admin processes on this machine that set ``NODE_ID``.

    Read from ``/proc/<pid>/environ`` (processes doctor may not read are skipped); a process without
    ``NODE_ID`` uses ``hostname:pid``, unique by construction.
    """
    if not proc.is_dir():
        return None
    found: dict[str, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not any(b"actor-admin" in a or b"actor_admin" in a for a in argv):
                continue
            if not any(a in (b"serve", b"dev") for a in argv):
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"NODE_ID="):
                found.setdefault(item.removeprefix(b"NODE_ID=").decode(errors="replace"), []).append(int(entry.name))
    return {node_id: sorted(pids) for node_id, pids in sorted(found.items()) if len(pids) > 1}


async def _check_node_id(ctx: Context) -> Result:
    # Reading another process's cmdline waits for that process's memory map lock; a process stuck
    # holding it must not hang the doctor, so the check's timeout may abandon the thread.
    duplicates = await trio.to_thread.run_sync(_same_node_id_processes, abandon_on_cancel=True)
    if duplicates is None:
        return Result(True, "not checked: no /proc on this machine")
    if not duplicates:
        return Result(True, "no two actor-admin processes on this machine share a NODE_ID")
    lines = [f"NODE_ID={node_id}: processes {', '.join(map(str, pids))}" for node_id, pids in duplicates.items()]
    return _failed_listing(
        f"{len(duplicates)} NODE_ID(s) used by more than one process",
        lines,
        "only the first of them joined the cluster; the others wait and own nothing. Stop the extra "
        "processes, or give each its own NODE_ID (ops/RUNBOOK.md, \"Several nodes\")",
    )


async def _check_clock(ctx: Context) -> Result:
    if not ctx.postgres_ok:
        return Result(False, "not checked: PostgreSQL does not answer", "fix postgres first")

    async def measure(db: Any) -> tuple[float, float, float]:
        before = time.time()
        server: float = await db.run(
            lambda conn: conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8"), retry=True
        )
        return before, server, time.time()

    before, server, after = await _read(ctx, measure)
    # PostgreSQL read its clock somewhere inside [before, after] on ours.
    skew = server - (before + after) / 2
    uncertainty = (after - before) / 2
    detail = f"this machine's clock is {abs(skew):.2f} s {'behind' if skew > 0 else 'ahead of'} PostgreSQL's"
    if abs(skew) - uncertainty <= CLOCK_SKEW_MAX_S:
        return Result(True, detail + f" (± {uncertainty:.3f} s)")
    return Result(
        False,
        detail + f" (more than {CLOCK_SKEW_MAX_S:g} s)",
        "ownership never compares clocks, but heartbeat ages, logs and token times do: enable time sync "
        "on both machines (timedatectl set-ntp true; chronyc tracking)",
    )


async def _check_owners(ctx: Context) -> Result:
    if not ctx.schema_ok:
        return _SCHEMA_NOT_READY

    async def read(db: Any) -> tuple[list[NodeRecord], list[Any]]:
        ownership = Ownership(db)
        return await ownership.nodes(), await ownership.salons()

    nodes, salons = await _read(ctx, read)
    if not nodes:
        return Result(True, "not checked: no node registered in cluster_nodes (one node without the ownership loop)")
    live = {n.node_id for n in nodes if _live(n)}
    pg_now = max(n.heartbeat_at.timestamp() + n.heartbeat_age_s for n in nodes)
    should_run = [s for s in salons if s.should_run]
    # A salon handed over a moment ago is briefly released: only one unowned for a whole TTL counts.
    orphans = [
        s for s in should_run if s.node_id not in live and pg_now - s.since.timestamp() > _TIMINGS.ttl_s
    ]
    if not orphans:
        return Result(True, f"{len(should_run)} salon(s) should run, each owned by a live node")
    lines = [f"{s.salon_id}: {'released' if s.node_id is None else 'owned by silent ' + s.node_id}" for s in orphans]
    return _failed_listing(
        f"{len(orphans)} of {len(should_run)} salon(s) that should run have no live owner",
        lines,
        "no live node has taken them: check the nodes line above (all nodes dead or draining?) and each "
        "node's log for claim errors (ops/RUNBOOK.md, \"Several nodes\")",
    )


# -- Redis -------------------------------------------------------------------------------------


async def _check_redis(ctx: Context) -> Result:
    url = ctx.redis_url
    if url is None:
        if ctx.mode == "dev":
            return Result(
                False, f"the embedded Redis of {ctx.data_dir} is not running", "start the node: actor-admin dev"
            )
        return Result(False, "REDIS_URL is not set", "set REDIS_URL=redis://HOST:6379/0")
    try:
        client = await RedisClient.open(url, timeout_s=CHECK_TIMEOUT_S / 2)
    except ValueError as exc:
        return Result(False, f"REDIS_URL is not a Redis URL: {exc}", "e.g. REDIS_URL=redis://127.0.0.1:6379/0")
    try:
        latency_ms = await client.ping()
    except Exception as exc:
        parts = urlsplit(url)
        return Result(
            False,
            f"no answer from {_shown(url)}: {_one_line(exc)}",
            "is Redis running? sudo systemctl status redis-server; "
            f"redis-cli -h {parts.hostname} -p {parts.port or 6379} ping",
        )
    finally:
        await client.aclose()
    return Result(True, f"{_shown(url)} answers PING in {latency_ms:.1f} ms")


# -- the running server ------------------------------------------------------------------------


def _server_hint(ctx: Context) -> str:
    if ctx.mode == "dev":
        return f"start it: actor-admin dev   (or pass --url of the node to check; tried {ctx.base_url})"
    return (
        "is the node running? sudo systemctl status actor-admin; journalctl -u actor-admin -n 100\n"
        f"(or pass --url http://127.0.0.1:PORT to check the node directly; tried {ctx.base_url})"
    )


async def _check_server(ctx: Context) -> Result:
    import httpx

    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as http:
        try:
            response = await http.get(ctx.base_url + "/readyz")
        except httpx.HTTPError as exc:
            return Result(False, f"{ctx.base_url} does not answer: {_one_line(exc)}", _server_hint(ctx))
    body = _json(response)
    if response.status_code == 200:
        ctx.server_ok = True
        return Result(True, f"{ctx.base_url}/readyz is ready")
    if response.status_code == 503 and isinstance(body, dict) and "failing" in body:
        failing = ", ".join(body["failing"])
        reasons = body.get("reasons") or {}
        lines = [f"{name}: {why}" for name, why in reasons.items()]
        return Result(
            False,
            f"{ctx.base_url}/readyz: not ready, failing: {failing}" + ("".join("\n" + line for line in lines)),
            "the node's own view; fix the failing parts above, it recovers by itself",
        )
    return Result(
        False,
        f"{ctx.base_url}/readyz answered {response.status_code} (not actor-admin, or a proxy in between?)",
        "check the nginx site (ops/nginx/actor-admin.conf) and that --url / PUBLIC_URL point at this service",
    )


def _origins(ctx: Context) -> list[str]:
    """The Origin headers of real connect pages: PUBLIC_URL's, and YClients' (the page in its iframe)."""
    public = (ctx.settings.public_url if ctx.settings else None) or ctx.environ.get("PUBLIC_URL") or ctx.base_url
    parts = urlsplit(public)
    origins = [f"{parts.scheme}://{parts.netloc}", YCLIENTS_ORIGINS[0]]
    return list(dict.fromkeys(origins))


async def _check_websocket(ctx: Context) -> Result:
    parts = urlsplit(ctx.base_url)
    ws_url = parts._replace(scheme="wss" if parts.scheme == "https" else "ws").geturl() + "/marketplace/ws"
    proxy_hint = (
        "behind nginx the /marketplace/ws location needs the Upgrade headers "
        '(proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; see ops/nginx/)'
    )
    lines: list[str] = []
    failures: list[tuple[str, str]] = []
    for origin in _origins(ctx):
        ok, text, hint = await _probe_websocket(ctx, ws_url, origin, proxy_hint)
        lines.append(f"{origin}: {text}")
        if not ok:
            failures.append((text, hint))
    if not failures:
        return Result(True, f"{ws_url} accepts the connect page's origins and refuses a bad token\n" + "\n".join(lines))
    return Result(
        False,
        f"{ws_url}: {failures[0][0]}\n" + "\n".join(lines),
        "\n".join(dict.fromkeys(hint for _, hint in failures)),
    )


async def _probe_websocket(ctx: Context, ws_url: str, origin: str, proxy_hint: str) -> tuple[bool, str, str]:
    """One handshake from ``origin`` with a token that cannot be valid: (passed, what happened, the fix)."""
    from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, open_websocket_url

    try:
        with trio.fail_after(CHECK_TIMEOUT_S):
            async with open_websocket_url(
                ws_url, connect_timeout=CHECK_TIMEOUT_S, extra_headers=[(b"Origin", origin.encode())]
            ) as ws:
                # The server must answer "unauthorized" and close 4401.
                await ws.send_message(json.dumps({"type": "auth", "token": "actor-admin-doctor"}))
                try:
                    while True:
                        frame = _json_text(await ws.get_message())
                        if isinstance(frame, dict) and frame.get("type") == "error":
                            return True, f"accepted, a bad token refused ({frame.get('code')})", ""
                except ConnectionClosed as closed:
                    code = closed.reason.code if closed.reason is not None else None
                    if code == 4401:
                        return True, "accepted, a bad token refused (4401)", ""
                    return False, f"closed with {code} instead of refusing the token", proxy_hint
    except ConnectionRejected as exc:
        if exc.status_code == 429:
            return True, "answers (this address is rate limited right now: 429)", ""
        if exc.status_code == 403:
            return (
                False,
                f"refused the origin {origin} (HTTP 403)",
                f"add {origin} to ALLOWED_ORIGINS in /etc/actor-admin/env, or remove ALLOWED_ORIGINS (its default "
                "is PUBLIC_URL and YClients' origins), then: sudo systemctl restart actor-admin",
            )
        return False, f"refused the handshake with HTTP {exc.status_code}", proxy_hint
    except trio.TooSlowError:
        return False, f"no answer within {CHECK_TIMEOUT_S:g} s", proxy_hint
    except (HandshakeError, OSError) as exc:
        return False, _one_line(exc.__cause__ or exc), _server_hint(ctx)


async def _check_actors(ctx: Context) -> Result:
    import httpx

    if not ctx.admin_token:
        return Result(
            False, "not checked: ADMIN_TOKEN is not set", "set ADMIN_TOKEN (the node's own) to list stuck salons"
        )
    headers = {"Authorization": f"Bearer {ctx.admin_token}", "Accept": "application/json"}
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_S) as http:
        try:
            response = await http.get(ctx.base_url + "/status", headers=headers)
        except httpx.HTTPError as exc:
            return Result(
                False, f"not checked: {ctx.base_url}/status does not answer: {_one_line(exc)}", _server_hint(ctx)
            )
    body = _json(response)
    if response.status_code == 401:
        return Result(
            False,
            "the node refused ADMIN_TOKEN",
            "use the node's ADMIN_TOKEN (see /etc/actor-admin/env or DATA_DIR/dev.env)",
        )
    if response.status_code != 200 or not isinstance(body, dict) or "companies" not in body:
        return Result(
            False, f"{ctx.base_url}/status answered {response.status_code} without a companies list", _server_hint(ctx)
        )
    stuck = [c for c in body["companies"] if c.get("state") in ("failed", "conflict")]
    total = len(body["companies"])
    if not stuck:
        return Result(True, f"{total} company actor(s), none stuck in failed or conflict")
    lines = [
        f"{c['salon_id']}: {c['state']}" + (f" ({c['last_error']})" if c.get("last_error") else "")
        for c in stuck[:SHOW_AT_MOST]
    ]
    if len(stuck) > SHOW_AT_MOST:
        lines.append(f"… and {len(stuck) - SHOW_AT_MOST} more (open {ctx.base_url}/status)")
    return Result(
        False,
        f"{len(stuck)} of {total} stuck:\n" + "\n".join(lines),
        "failed: fix the cause shown, then restart it: admin /admin/companies/SALON_ID/restart -X POST   "
        "(admin: ops/RUNBOOK.md §0)\n"
        "conflict: another WhatsApp Web/desktop session took the number; ask the salon to close it, then restart",
    )


# -- the machine -------------------------------------------------------------------------------


async def _check_disk(ctx: Context) -> Result:
    await trio.lowlevel.checkpoint()
    if ctx.mode == "serve" and not Path(ctx.environ.get("DATA_DIR") or ".").is_absolute():
        shown = ctx.environ.get("DATA_DIR")
        return Result(
            False,
            (f"DATA_DIR is relative ({shown})" if shown else "DATA_DIR is not set")
            + ": the node writes relative to its own working directory, which doctor cannot see",
            "set DATA_DIR in /etc/actor-admin/env, where both the unit and doctor read it "
            "(the unit's RuntimeDirectory: DATA_DIR='/run/actor-admin', see ops/systemd/env.example)",
        )
    path = ctx.data_dir.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    free_gib = usage.free / (1 << 30)
    detail = f"{free_gib:.1f} GiB free of {usage.total / (1 << 30):.1f} GiB at {path} (DATA_DIR {ctx.data_dir})"
    if usage.free < DISK_MIN_FREE_BYTES or usage.free < usage.total * DISK_MIN_FREE_FRACTION:
        return Result(
            False,
            detail + " — too little",
            "free space: sudo journalctl --vacuum-size=500M; remove old backups (actor-admin backup files)",
        )
    return Result(True, detail)


# -- helpers -----------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _json_text(message: str | bytes) -> Any:
    try:
        return json.loads(message)
    except ValueError:
        return None
