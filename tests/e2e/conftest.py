"""A real ``actor-admin dev`` (the command `make run` starts) in a subprocess, for browser tests.

It runs on its own embedded PostgreSQL and Redis in a temporary DATA_DIR — exactly what a newcomer
gets — so the browser sees the product, not a test assembly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServer:
    """One ``actor-admin dev`` on a fixed port and DATA_DIR, which a test may stop and start again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            {"DATA_DIR": str(self.data_dir), "PORT": str(self.port), "HOST": "127.0.0.1", "LOG_LEVEL": "warning"}
        )
        with (self.data_dir / "dev.log").open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "actor_admin", "dev"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:  # /healthz answers before PostgreSQL
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail("actor-admin dev did not start:\n" + (self.data_dir / "dev.log").read_text())
            time.sleep(0.2)  # polling a subprocess's readiness: real time is the only clock it shares with us

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def setting(self, name: str) -> str:
        """A generated secret of this dev instance (``DATA_DIR/dev.env``), e.g. ``ADMIN_TOKEN``."""
        for line in (self.data_dir / "dev.env").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == name:
                return value.strip().strip("'\"")
        raise KeyError(name)


@pytest.fixture(scope="module")
def dev(browser: object) -> Iterator[DevServer]:
    # Not pytest's tmp_path: its root is mode 0700 — and set back to 0700 by any other pytest run of this
    # user starting meanwhile — while the embedded PostgreSQL runs as another user and must reach its data.
    data_dir = Path(tempfile.mkdtemp(prefix="aa-e2e-dev-"))
    data_dir.chmod(0o755)
    server = DevServer(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def dev_server(dev: DevServer) -> str:
    return dev.base


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def phone_page(browser: Any) -> Iterator[Any]:
    """A page on a 375×812 phone screen, touch and all."""
    context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    try:
        yield context.new_page()
    finally:
        context.close()
