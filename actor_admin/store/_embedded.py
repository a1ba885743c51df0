"""An embedded PostgreSQL server for ``actor-admin dev`` and the tests.

The binaries come from the ``pgserver`` wheel (``pgserver/pginstall/bin``), but the server is driven
here with ``initdb``/``pg_ctl`` directly rather than through ``pgserver.PostgresServer``: that class
registers ``atexit`` hooks, keeps a process-global registry and a lock file in the user's runtime
directory, polls with one-second sleeps and, under root, widens the permissions of every ancestor
directory. We need less and want it explicit:

* **Running as root** (containers, CI): PostgreSQL refuses to run as root, so initdb and the server run
  as a dedicated system user (:data:`EMBEDDED_OS_USER`, created with ``useradd --system`` on first use)
  that owns the data directory. Ancestors of the data directory get only the ``o+x`` (traverse) bit,
  and only where it is missing.
* **Unix socket only**: the server listens on no TCP port (``listen_addresses=''``), so two embedded
  servers (two checkouts, parallel test runs) never fight over a port. The socket lives in the data
  directory when the path is short enough, else in a per-data-dir folder under the temp directory.
* **Reuse after a crash**: a server still running on the data directory (its starter was killed) is
  adopted; a stale ``postmaster.pid`` (server gone, pid maybe reused) is removed before starting.
* **Its own session**: the server is started in a new session, so a Ctrl-C in the terminal reaches only
  our process, which then shuts its pool down before :meth:`EmbeddedPostgres.stop` stops the server.

Everything here blocks; call it from trio through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import final

import attrs

from ._errors import EmbeddedServerError

_log = logging.getLogger(__name__)

EMBEDDED_OS_USER = "actor-admin-pg"
"""The system user the embedded server runs as when this process is root."""

_OWNER_FILE = "actor-admin.owner"
_SOCKET_PORT = 5432
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; leave room for the ".lock" twin


def postgres_bin_dir() -> Path:
    """The ``bin`` directory of the PostgreSQL build shipped in the ``pgserver`` wheel."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the pgserver package is not installed (pip install pgserver)")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise EmbeddedServerError(f"pgserver is installed but has no PostgreSQL binaries in {bin_dir}")
    return bin_dir


@attrs.frozen
class _Postmaster:
    """What ``postmaster.pid`` says about a server."""

    pid: int
    socket_dir: str
    port: int
    status: str


def _read_postmaster(data_dir: Path) -> _Postmaster | None:
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    try:
        return _Postmaster(
            pid=int(lines[0]),
            port=int(lines[3]) if len(lines) > 3 and lines[3].strip() else _SOCKET_PORT,
            socket_dir=lines[4].strip() if len(lines) > 4 else "",
            status=lines[7].strip() if len(lines) > 7 else "",
        )
    except (ValueError, IndexError):
        return None  # half-written by a server that died while starting: treat as stale


def _is_postgres(pid: int) -> bool:
    """Whether ``pid`` is a live PostgreSQL server process (not just any process that reused the pid)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return _pid_alive(pid) and not Path("/proc").is_dir()  # no procfs: trust the pid
    return comm in {"postgres", "postmaster"}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@final
class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir`` (``DATA_DIR/pg`` in ``dev``).

    ``start()`` initialises the directory if it is empty, starts the server or adopts one already
    running there, and returns the DSN. ``stop()`` stops the server if this object started or adopted
    it; a server another live process started is left alone. Both are idempotent.

    Args:
        data_dir: the cluster directory; created if missing.
        fast_unsafe: turn off fsync (tests only: a crash may corrupt the cluster).
        start_timeout_s: how long ``pg_ctl`` may wait for the server to accept connections.
    """

    def __init__(self, data_dir: Path, *, fast_unsafe: bool = False, start_timeout_s: int = 60) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._fast_unsafe = fast_unsafe
        self._start_timeout_s = start_timeout_s
        self._bin = postgres_bin_dir()
        self._os_user = EMBEDDED_OS_USER if _is_root() else None
        self._owned = False
        self._dsn: str | None = None

    # ----------------------------------------------------------------------------------------- public
    @property
    def dsn(self) -> str:
        """The DSN of the running server (``start()`` first)."""
        if self._dsn is None:
            raise EmbeddedServerError("the embedded PostgreSQL server is not started")
        return self._dsn

    def dsn_for(self, database: str) -> str:
        """The DSN of another database on the same server."""
        info = self._running()
        if info is None:
            raise EmbeddedServerError("the embedded PostgreSQL server is not running")
        return _dsn(info.socket_dir, info.port, database)

    @property
    def owned(self) -> bool:
        """Whether ``stop()`` will stop the server (we started it, or adopted it from a dead process)."""
        return self._owned

    def start(self) -> str:
        """Start (or adopt) the server and return its DSN. Blocking."""
        self._prepare_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        info = self._running()
        if info is not None:
            owner = self._read_owner()
            self._owned = owner is None or owner == os.getpid() or not _pid_alive(owner)
            if self._owned:
                self._write_owner()
            _log.info("embedded postgres: reusing server pid %s on %s", info.pid, self.data_dir)
        else:
            self._remove_stale_locks()
            self._pg_ctl_start()
            info = self._running()
            if info is None:
                raise EmbeddedServerError(f"PostgreSQL did not start; see {self.data_dir / 'log'}")
            self._owned = True
            self._write_owner()
        self._dsn = _dsn(info.socket_dir, info.port, "postgres")
        return self._dsn

    def stop(self) -> None:
        """Stop the server if we own it (fast shutdown: open sessions are disconnected). Blocking."""
        if not self._owned:
            return
        info = self._running()
        if info is not None:
            try:
                self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"])
            except EmbeddedServerError:
                # pg_ctl failed (e.g. timed out): make sure nothing is left behind.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(info.pid, signal.SIGQUIT)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / _OWNER_FILE).unlink()
        self._owned = False
        self._dsn = None

    def is_running(self) -> bool:
        """Whether a server is running on this data directory right now."""
        return self._running() is not None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------- private
    def _running(self) -> _Postmaster | None:
        info = _read_postmaster(self.data_dir)
        if info is None or not _is_postgres(info.pid):
            return None
        return info

    def _socket_dir(self) -> Path:
        if len(str(self.data_dir / f".s.PGSQL.{_SOCKET_PORT}.lock")) <= _MAX_SOCKET_PATH:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"actor-admin-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        self._chown(path)
        return path

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._os_user is not None:
            _ensure_os_user(self._os_user)
            self._chown(self.data_dir)
            _ensure_traversable(self.data_dir.parent)
        # PostgreSQL refuses a data directory readable by others.
        self.data_dir.chmod(0o700)

    def _chown(self, path: Path) -> None:
        if self._os_user is not None:
            shutil.chown(path, user=self._os_user, group=self._os_user)

    def _initdb(self) -> None:
        if any(self.data_dir.iterdir()):
            raise EmbeddedServerError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster (no PG_VERSION); "
                "move its contents away or point DATA_DIR elsewhere"
            )
        args = ["initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                "--locale=C"]
        if self._fast_unsafe:
            args.append("--no-sync")
        self._run(args)

    def _remove_stale_locks(self) -> None:
        # The server is not running, so any postmaster.pid is stale. PostgreSQL would usually cope, but
        # not when the recorded pid now belongs to another live process (common in containers).
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()
        with contextlib.suppress(FileNotFoundError):
            (self._socket_dir() / f".s.PGSQL.{_SOCKET_PORT}.lock").unlink()

    def _pg_ctl_start(self) -> None:
        options = [f"-c listen_addresses='' -k {self._socket_dir()} -p {_SOCKET_PORT}"]
        if self._fast_unsafe:
            options.append("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run([
            "pg_ctl", "-D", str(self.data_dir), "-w", "-t", str(self._start_timeout_s),
            "-l", str(self.data_dir / "log"), "-o", " ".join(options), "start",
        ])

    def _run(self, args: list[str]) -> None:
        exe = str(self._bin / args[0])
        # Output goes to a file, not a pipe: the server inherits pg_ctl's stdout, so a pipe would stay
        # open (and block a reader) as long as the server runs.
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(
                    [exe, *args[1:]], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    check=True, cwd=self.data_dir, user=self._os_user, group=self._os_user,
                    extra_groups=[] if self._os_user else None, start_new_session=True,
                    timeout=self._start_timeout_s + 30,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                out.seek(0)
                raise EmbeddedServerError(f"{args[0]} failed: {out.read().strip()[-2000:]}") from exc

    def _read_owner(self) -> int | None:
        try:
            return int((self.data_dir / _OWNER_FILE).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _write_owner(self) -> None:
        (self.data_dir / _OWNER_FILE).write_text(f"{os.getpid()}\n")


def _dsn(socket_dir: str, port: int, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={socket_dir}&port={port}"


def _ensure_os_user(name: str) -> None:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        try:
            subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 name],
                check=True, capture_output=True, text=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise EmbeddedServerError(
                f"running as root, the embedded PostgreSQL needs a system user {name!r} and useradd failed "
                f"({exc}); create it yourself or run as a non-root user"
            ) from exc


def _ensure_traversable(path: Path) -> None:
    """Give ``o+x`` to ancestors that lack it, so the server's user can reach its data directory."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            _log.warning("embedded postgres: adding o+x to %s so its server user can reach the data", directory)
            directory.chmod(mode | stat.S_IXOTH)
