"""A private journald for the tests: systemd-journald started in a namespace of its own (its sockets in
``/run/systemd/journal.NAMESPACE``, its files apart from any system journal), read with ``journalctl
--namespace``. Processes are connected to it as systemd connects a unit (``_unit.py``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from ._unit import connect


@attrs.define
class Journald:
    namespace: str
    journalctl: str

    def stdout_socket(self) -> Path:
        return Path(f"/run/systemd/journal.{self.namespace}/stdout")

    def connect_as_unit(self, unit: str = "actor-admin.service") -> socket.socket:
        """A stdout/stderr for a process, connected the way systemd connects a unit's."""
        return connect(self.namespace, unit)

    async def journalctl_output(self, *args: str) -> bytes:
        with trio.fail_after(30):
            done = await trio.run_process(
                [self.journalctl, f"--namespace={self.namespace}", "--no-pager", *args], capture_stdout=True
            )
        return bytes(done.stdout)

    async def messages(self, *args: str) -> list[dict[str, Any]]:
        """The JSON objects journald keeps for the unit's lines (their ``MESSAGE`` fields)."""
        entries = (await self.journalctl_output("-o", "json", "-u", "actor-admin", *args)).splitlines()
        return [json.loads(json.loads(entry)["MESSAGE"]) for entry in entries]


@pytest.fixture
def journald(ops_tool: Callable[[str], str]) -> Iterator[Journald]:
    daemon = ops_tool("systemd-journald")
    journalctl = ops_tool("journalctl")
    if os.geteuid() != 0:
        if os.environ.get("REQUIRE_OPS_TOOLS") == "1":
            pytest.fail("REQUIRE_OPS_TOOLS=1 but journald needs root to open its sockets")
        pytest.skip("a private journald needs root")
    namespace = f"actoradmintest{os.getpid()}"
    process = subprocess.Popen([daemon, namespace], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = Journald(namespace, journalctl)
    try:
        deadline = time.monotonic() + 10
        while not started.stdout_socket().exists():  # another process starting: nothing to wait on but its socket
            assert process.poll() is None, "journald exited at start"
            assert time.monotonic() < deadline, "journald did not open its stdout socket within 10 s"
            time.sleep(0.05)
        yield started
    finally:
        process.terminate()
        process.wait(timeout=30)
        machine = Path("/etc/machine-id").read_text().strip()
        for leftover in (
            f"/run/systemd/journal.{namespace}",
            f"/var/log/journal/{machine}.{namespace}",
            f"/run/log/journal/{machine}.{namespace}",
        ):
            shutil.rmtree(leftover, ignore_errors=True)
