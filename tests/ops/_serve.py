"""``actor-admin serve`` as the operator runs it: a real process with production settings against the
test PostgreSQL and Redis (WhatsApp is the in-process simulator, YClients a closed port), its stderr
going wherever the test points it — a file, or a journald stream socket as systemd would connect it."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import httpx
import trio

from tests.api.conftest import ADMIN_TOKEN, JWT_SECRET, PARTNER_TOKEN, free_port

START_TIMEOUT_S = 60.0
#: A line as journald reads it from a unit's stderr: ``<priority>`` then the message (here: JSON).
JOURNAL_LINE = re.compile(rb"<([0-7])>(.*)")


def serve_settings(database_url: str, redis_url: str, public_url: str, data_dir: Path) -> dict[str, str]:
    """A complete, valid set of ``serve`` settings (the in-process test node's secrets)."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": JWT_SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "CREDENTIALS_KEY": base64.b64encode(bytes(range(32))).decode(),
        "YCLIENTS_PARTNER_TOKEN": PARTNER_TOKEN,
        "YCLIENTS_APP_ID": "1",
        "PUBLIC_URL": public_url,
        "DATA_DIR": str(data_dir),
    }


def serve_env(database_url: str, redis_url: str, port: int, data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a ``serve`` process on ``port``: its settings, WhatsApp simulated, YClients a
    closed port."""
    process = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"), "PYTHONUNBUFFERED": "1"}
    node = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "YCLIENTS_API_URL": f"http://127.0.0.1:{free_port()}",
        # serve takes the simulator only from a standalone one; none runs there: WhatsApp unreachable.
        "WHATSAPP_TRANSPORT": "simulator",
        "WHATSAPP_SIMULATOR_URL": f"http://127.0.0.1:{free_port()}",
    }
    return process | serve_settings(database_url, redis_url, f"http://127.0.0.1:{port}", data_dir) | node | overrides


@attrs.define
class Serve:
    process: trio.Process
    base_url: str


async def start_serve(env: Mapping[str, str], stderr: BinaryIO | int, cwd: Path) -> Serve:
    """Start the node and wait until ``/readyz`` answers 200."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "actor_admin", "serve"],
        env=dict(env),
        cwd=cwd,
        stdout=stderr,
        stderr=stderr,
    )
    serve = Serve(process, env["PUBLIC_URL"])
    try:
        with trio.fail_after(START_TIMEOUT_S):
            await wait_http(serve.base_url + "/readyz")
    except BaseException:
        process.kill()
        raise
    return serve


async def stop_serve(serve: Serve) -> int:
    serve.process.send_signal(signal.SIGTERM)
    with trio.fail_after(30):
        return await serve.process.wait()


async def run_refused(env: Mapping[str, str], stderr: BinaryIO | int, cwd: Path) -> int:
    """Run ``serve`` with settings it must refuse; its exit status."""
    with trio.fail_after(30):
        done = await trio.run_process(
            [sys.executable, "-m", "actor_admin", "serve"],
            env=dict(env),
            cwd=cwd,
            stdout=stderr,
            stderr=stderr,
            check=False,
        )
    return done.returncode


async def wait_http(url: str) -> None:
    """Poll ``url`` until it answers 200: the process is outside trio's reach, so this one place polls
    (bounded by the caller's ``fail_after``)."""
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(0.05)


async def poll_until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``check()`` is true (bounded by the caller's ``fail_after``): for what another process
    reports, where there is no event to wait on."""
    while not await check():  # noqa: ASYNC110 - another process's state: no trio event exists for it
        await trio.sleep(0.05)


def journal_lines(raw: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Each line as journald takes it: its priority and the JSON object after the prefix.

    Fails on any line that lacks the prefix or is not one JSON object (what `jq` would abort on)."""
    records = []
    for line in raw.splitlines():
        match = JOURNAL_LINE.fullmatch(line)
        assert match is not None, f"no <priority> prefix: {line!r}"
        record = json.loads(match.group(2))
        assert isinstance(record, dict), line
        records.append((int(match.group(1)), record))
    return records
