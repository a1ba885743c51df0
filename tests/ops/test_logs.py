"""Logs an operator can filter (ops/logging.md): every line ``serve`` writes is JSON — start, stop and a
refused start included — with the syslog priority journald reads, ``salon_id`` on every line about a
salon, and every actor crash and move to ``failed`` logged once with its cause.

The process tests assert the exact bytes systemd reads from the unit's stderr; one of them hands those
bytes to a real journald (a private namespace of its own) and reads them back with ``journalctl -p``.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from actor_admin import logs
from actor_admin.runtime import ActorState, SupervisorPolicy, open_supervisor
from actor_admin.store import Keyring, open_store
from tests.api.conftest import ADMIN_TOKEN, PARTNER_TOKEN, TestNode, free_port
from tests.api.test_webhook import connect, eventually
from tests.runtime._probe import Probe

from ._journald import Journald
from ._serve import (
    journal_lines,
    poll_until,
    run_refused,
    serve_env,
    start_serve,
    stop_serve,
)
from ._unit import journal_stream as journal_stream_of

CRASHING_SALON = 701


# -- in-process: what the node's code logs ------------------------------------------------------


@attrs.define
class Captured:
    """The node's log records, formatted by the real JSON formatter behind the real salon filter."""

    stream: io.StringIO

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def json_log() -> Iterator[Captured]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.SalonFilter())
    handler.setFormatter(logs.JsonFormatter("test-node"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class _Signal(logging.Handler):
    """Sets ``event`` when a record whose message contains ``text`` is logged."""

    def __init__(self, text: str, event: trio.Event) -> None:
        super().__init__()
        self.text, self.event = text, event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_each_actor_crash_and_the_move_to_failed_are_logged_once_with_their_cause(
    json_log: Captured, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe(crash_on_start={CRASHING_SALON: 3})
    failed = trio.Event()
    signal = _Signal("actor failed", failed)
    logging.getLogger().addHandler(signal)
    try:
        policy = SupervisorPolicy(intensity_max_restarts=2)
        async with open_supervisor(probe.factory, policy=policy, log_key="salon_id") as supervisor:
            ref = await supervisor.ensure(CRASHING_SALON)
            with trio.fail_after(600):
                await failed.wait()
            assert ref.state is ActorState.FAILED
    finally:
        logging.getLogger().removeHandler(signal)

    lines = [r for r in json_log.records() if r["logger"] == "actor_admin.runtime"]
    crashes = [r for r in lines if r["msg"].startswith("actor crashed")]
    assert len(crashes) == 3 == len(probe.starts[CRASHING_SALON])
    for crash in crashes:
        assert crash["level"] == "error" and crash["salon_id"] == CRASHING_SALON
        assert "Crash: 701 crashed on start" in crash["msg"]
        assert "Traceback" in crash["exc"] and "tests/runtime/_probe.py" in crash["exc"]
    [moved] = [r for r in lines if r["msg"].startswith("actor failed")]
    assert moved["level"] == "error" and moved["salon_id"] == CRASHING_SALON
    assert "Crash: 701 crashed on start" in moved["msg"]


async def test_lines_logged_while_working_for_a_salon_carry_its_salon_id(json_log: Captured, node: TestNode) -> None:
    await connect(node, 606, "79001230606")
    # The activation goes out through the outbox and httpx (to the dev YClients double).
    await eventually(lambda: _integration_status(node, 606, "active"))
    node.core.ban("79001230606", 3600)
    with trio.fail_after(5):
        await node.services.registry.wait_state(606, "failed")

    records = json_log.records()
    http = [r for r in records if r["logger"] == "httpx" and "partner/callback" in r["msg"]]
    assert http, "no httpx line for the activation call"
    assert all(r.get("salon_id") == 606 for r in http), http
    about_salon = [r for r in records if r["logger"].startswith(("actor_admin.actors", "actor_admin.whatsapp"))]
    assert about_salon and all(r.get("salon_id") == 606 for r in about_salon), about_salon
    [banned] = [r for r in about_salon if r["msg"] == "session connected -> failed"]
    assert banned["level"] == "error" and banned["reason"] == "temporarily_banned"


async def _integration_status(node: TestNode, salon_id: int, status: str) -> bool:
    company = await node.services.store.companies.get(salon_id)
    return company is not None and company.integration_status == status


def test_text_written_to_stderr_warnings_hypercorn_and_uncaught_errors_become_json_lines(
    tmp_path: Path, pg_dsn: str, redis_url: str
) -> None:
    """What no logger call wrote — a print to stderr, a library's warning, hypercorn's own error log,
    the traceback of an uncaught exception — still reaches journald as JSON at its priority."""
    script = (
        "import os, sys, warnings, trio\n"
        "from actor_admin import logs, node\n"
        "from actor_admin.config import load_settings\n"
        "settings = load_settings('serve', os.environ, dotenv=None)\n"
        "logs.configure(settings)\n"
        "print('progress for a person', file=sys.stderr)\n"
        "warnings.warn('a library warns')\n"
        "trio.run(node.hypercorn_config(settings).log.error, 'hypercorn complains')\n"
        "raise RuntimeError('nobody caught this')\n"
    )
    out = tmp_path / "stderr"
    with out.open("wb") as handle:
        env = serve_env(pg_dsn, redis_url, free_port(), tmp_path) | {
            "JOURNAL_STREAM": journal_stream_of(handle.fileno())
        }
        done = subprocess.run([sys.executable, "-c", script], env=env, stderr=handle, timeout=60, check=False)
    assert done.returncode == 1
    lines = journal_lines(out.read_bytes())
    by_msg = {record["msg"]: (priority, record) for priority, record in lines}
    assert by_msg["progress for a person"][0] == 6
    assert by_msg["progress for a person"][1]["logger"] == logs.CONSOLE_LOGGER
    assert [p for p, r in lines if "a library warns" in r["msg"]] == [4]
    assert by_msg["hypercorn complains"][0] == 3
    assert by_msg["hypercorn complains"][1]["logger"] == "hypercorn.error"
    [(priority, uncaught)] = [(p, r) for p, r in lines if "nobody caught this" in r["msg"]]
    assert priority == 2 and "Traceback" in uncaught["exc"]


def test_records_skip_the_caller_thread_and_process_lookups_nobody_writes() -> None:
    """They were a third of a JSON line's CPU, and a thousand salons shown a QR at once log a line each."""
    script = (
        "import logging, sys\n"
        "from actor_admin import logs\n"
        "logs.configure_before_settings('json', None)\n"
        "record = logging.getLogger('x').makeRecord('x', logging.INFO, '', 0, 'm', (), None)\n"
        "logging.getLogger('x').info('m')\n"
        "flags = (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)\n"
        "print(flags, record.thread, record.process, file=sys.__stdout__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "(None, False, False, False) None None"
    assert json.loads(done.stderr.strip().splitlines()[-1])["msg"] == "m"


# -- a real serve process ----------------------------------------------------------------------


async def _salon_with_foreign_credentials(pg_dsn: str) -> None:
    """A salon whose stored credentials were encrypted under another key: serve reconnects it at start,
    and its actor crashes on them (the operator's CREDENTIALS_KEY mistake, a real cause of crashes)."""
    async with open_store(pg_dsn, pool_size=1, credentials_keys=Keyring(b"\x07" * 32)) as store:
        await store.companies.upsert_registration(CRASHING_SALON)
        await store.credentials.save(CRASHING_SALON, b"device keys")


async def _run_serve_through_its_day(env: dict[str, str], stderr: int, cwd: Path) -> None:
    """Start, let a salon's actor crash, refuse a forged webhook, stop — each writes its lines."""
    serve = await start_serve(env, stderr, cwd)
    try:
        async with httpx.AsyncClient(base_url=serve.base_url, timeout=10) as http:
            with trio.fail_after(30):
                await poll_until(lambda: _has_crashed(http, CRASHING_SALON))
            forged = {"salon_id": 702, "application_id": 1, "event": "freeze", "partner_token": "x" + PARTNER_TOKEN}
            assert (await http.post("/webhook/yclients", json=forged)).json() == {"success": False}
    finally:
        assert await stop_serve(serve) == 0


async def _has_crashed(http: httpx.AsyncClient, salon_id: int) -> bool:
    body = (await http.get("/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})).json()
    return any(c["salon_id"] == salon_id and "CredentialsError" in (c["last_error"] or "") for c in body["companies"])


async def test_serve_writes_only_json_lines_with_the_priority_journald_reads(
    aio_loop: object, pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    await _salon_with_foreign_credentials(pg_dsn)
    out = tmp_path / "stderr"
    with out.open("wb") as handle:
        env = serve_env(pg_dsn, redis_url, free_port(), tmp_path) | {
            "JOURNAL_STREAM": journal_stream_of(handle.fileno())
        }
        await _run_serve_through_its_day(env, handle.fileno(), tmp_path)
    lines = journal_lines(out.read_bytes())

    for priority, record in lines:
        assert priority == logs.syslog_priority(logging.getLevelName(record["level"].upper())), record
    console = [r["msg"] for p, r in lines if r["logger"] == logs.CONSOLE_LOGGER and p == 6]
    assert any("is running" in msg for msg in console), console
    assert console[-1] == "stopped"
    crashes = [(p, r) for p, r in lines if r["msg"].startswith("actor crashed")]
    assert crashes and all(p == 3 and r["salon_id"] == CRASHING_SALON for p, r in crashes)
    assert "CredentialsError" in crashes[0][1]["exc"]
    assert any(p == 4 and r["logger"] == "actor_admin.api" and r.get("cause") == "bad_partner_token" for p, r in lines)


async def test_a_refused_start_is_one_json_line_at_priority_err(pg_dsn: str, redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "stderr"
    with out.open("wb") as handle:
        env = serve_env(pg_dsn, redis_url, free_port(), tmp_path, JWT_SECRET="too-short")
        env["JOURNAL_STREAM"] = journal_stream_of(handle.fileno())
        assert await run_refused(env, handle.fileno(), tmp_path) == 1
    [(priority, record)] = journal_lines(out.read_bytes())
    assert priority == 3 and record["level"] == "error"
    assert record["msg"].startswith("actor-admin serve: cannot start")
    assert "JWT_SECRET must be at least 32 bytes" in record["msg"]


async def test_off_the_journal_the_lines_are_plain_json(pg_dsn: str, redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "stderr"
    with out.open("wb") as handle:
        env = serve_env(pg_dsn, redis_url, free_port(), tmp_path, JWT_SECRET="too-short")
        assert await run_refused(env, handle.fileno(), tmp_path) == 1
    [line] = out.read_bytes().splitlines()
    assert json.loads(line)["level"] == "error"


# -- through a real journald ---------------------------------------------------------------------


async def test_journald_files_each_line_at_its_priority_and_jq_reads_every_line(
    journald: Journald, ops_tool: Callable[[str], str], aio_loop: object, pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    jq = ops_tool("jq")
    await _salon_with_foreign_credentials(pg_dsn)
    with journald.connect_as_unit() as stderr:
        env = serve_env(pg_dsn, redis_url, free_port(), tmp_path, JWT_SECRET="too-short")
        env["JOURNAL_STREAM"] = journal_stream_of(stderr.fileno())
        assert await run_refused(env, stderr.fileno(), tmp_path) == 1
    with journald.connect_as_unit() as stderr:
        env = serve_env(pg_dsn, redis_url, free_port(), tmp_path)
        env["JOURNAL_STREAM"] = journal_stream_of(stderr.fileno())
        await _run_serve_through_its_day(env, stderr.fileno(), tmp_path)

    async def stopped() -> bool:  # journald files what it read in its own time
        return any(m["msg"] == "stopped" for m in await journald.messages())

    with trio.fail_after(10):
        await poll_until(stopped)
    errors = await journald.messages("-p", "err")
    assert any(m["msg"].startswith("actor-admin serve: cannot start") for m in errors), errors
    assert any(m["msg"].startswith("actor crashed") and m["salon_id"] == CRASHING_SALON for m in errors), errors
    assert all(m["level"] in ("error", "critical") for m in errors), errors
    assert any("is running" in m["msg"] for m in await journald.messages("-p", "info"))

    # The runbook's filter over `journalctl -o cat`: jq must read every line, none may abort it.
    cat = await journald.journalctl_output("-u", "actor-admin", "-o", "cat")
    with trio.fail_after(30):
        one_salon = await trio.run_process(
            [jq, "-c", f"select(.salon_id == {CRASHING_SALON})"], stdin=cat, capture_stdout=True, check=False
        )
    assert one_salon.returncode == 0
    assert b"actor crashed" in one_salon.stdout
