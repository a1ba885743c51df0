"""A real ``actor-admin dev`` (the command `make run` starts) in a subprocess, for browser tests.

It runs on its own embedded PostgreSQL and Redis in a temporary DATA_DIR — exactly what a newcomer
gets — so the browser sees the product, not a test assembly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory, browser: object) -> Iterator[str]:
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("dev-data")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update({"DATA_DIR": str(data_dir), "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "warning"})
    log = (data_dir / "dev.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "actor_admin", "dev"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("actor-admin dev did not start:\n" + (data_dir / "dev.log").read_text())
        time.sleep(0.2)  # polling a subprocess's readiness: real time is the only clock it shares with us
    try:
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
