"""An embedded PostgreSQL server for ``actor-admin dev`` and the tests.

The binaries come from the ``pgserver`` wheel (``pgserver/pginstall/bin``), but the server is driven
here with ``initdb``/``postgres``/``pg_ctl`` directly rather than through ``pgserver.PostgresServer``:
that class registers ``atexit`` hooks, keeps a process-global registry and a lock file in the user's
runtime directory, polls with one-second sleeps and, under root, widens the permissions of every
ancestor directory. We need less and want it explicit:

* **Running as root** (containers, CI): PostgreSQL refuses to run as root, and a dedicated user could
  not reach binaries or data in a clone other users cannot enter (``mktemp -d`` is 0700). So initdb,
  the server and pg_ctl run in a new *user namespace* in which they are an ordinary user (uid
  :func:`_namespace_id`) mapped to root outside: PostgreSQL's own check passes, while the kernel checks
  file access as root, the owner of the clone and the data. Nothing outside the clone and the data
  directory is touched. Where user namespaces are not allowed (e.g. Docker's default seccomp profile),
  the fallback is the former way, said in one warning line: a system user (:data:`EMBEDDED_OS_USER`,
  created with ``useradd --system`` if missing) owns the data directory, and ancestors of the data
  directory get the ``o+x`` (traverse) bit where it is missing.
* **Unix socket only**: the server listens on no TCP port (``listen_addresses=''``), so two embedded
  servers (two checkouts, parallel test runs) never fight over a port. The socket lives in the data
  directory when the path is short enough, else in a per-data-dir folder under the temp directory.
* **Dies with its starter**: the server is this process's child, started with the parent-death signal
  SIGINT (PostgreSQL's fast shutdown), so a ``kill -9`` of ``dev`` stops it within about a second
  instead of leaving it running. A server whose starter died anyway (still shutting down, or started
  by an older version) is stopped and a new one started; a stale ``postmaster.pid`` (server gone, pid
  maybe reused) is removed before starting. A server started by another *live* process is reused but
  left to its starter.
* **Its own session**: the server is started in a new session, so a Ctrl-C in the terminal reaches only
  our process, which then shuts its pool down before :meth:`EmbeddedPostgres.stop` stops the server.

Everything here blocks (it waits for an OS process with the wall clock, not trio's); call it from trio
through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.util
import logging
import os
import pwd
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, final

import attrs

from actor_admin._children import die_with_parent, on_lasting_thread

from ._errors import EmbeddedServerError

_log = logging.getLogger(__name__)

EMBEDDED_OS_USER = "actor-admin-pg"
"""The system user the embedded server runs as under root when user namespaces are not allowed."""

_OWNER_FILE = "actor-admin.owner"
_SOCKET_PORT = 5432
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; leave room for the ".lock" twin
_CLONE_NEWUSER = 0x10000000
_STOP_TIMEOUT_S = 30


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
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:1]
    except OSError:
        return _pid_alive(pid) and not Path("/proc").is_dir()  # no procfs: trust the pid
    return comm in {"postgres", "postmaster"} and state != ["Z"]  # an unreaped child of ours is gone


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


@attrs.frozen
class _RunAs:
    """How PostgreSQL's processes run: as this process's user, as root seen as ``inner_id`` inside a
    user namespace, or (fallback) as :data:`EMBEDDED_OS_USER`."""

    how: Literal["self", "namespace", "os_user"]
    inner_id: int = 0

    @property
    def os_user(self) -> str | None:
        return EMBEDDED_OS_USER if self.how == "os_user" else None

    def preexec(self) -> Callable[[], None] | None:
        return _user_namespace(self.inner_id) if self.how == "namespace" else None


@functools.cache
def _run_as(bin_dir: Path) -> _RunAs:
    """Decided once per process: only root needs more than running the binaries as they are."""
    if not _is_root():
        return _RunAs("self")
    inner = _namespace_id()
    if inner is not None and _namespace_works(bin_dir, inner):
        return _RunAs("namespace", inner)
    _log.warning(
        "embedded postgres: running as root without user namespaces, so the server runs as system user %s "
        "(created if missing) and ancestors of its data directory get o+x where missing (see README)",
        EMBEDDED_OS_USER,
    )
    return _RunAs("os_user")


def _namespace_id() -> int | None:
    """The uid root is seen as inside the namespace: one that exists in the passwd database (initdb looks
    its name up), other than root and the overflow uid that stands for unmapped owners."""
    try:
        overflow = int(Path("/proc/sys/kernel/overflowuid").read_text())
    except (OSError, ValueError):
        overflow = 65534
    uids = sorted({entry.pw_uid for entry in pwd.getpwall()} - {0, overflow})
    return uids[0] if uids else None


def _namespace_works(bin_dir: Path, inner_id: int) -> bool:
    try:
        done = subprocess.run(
            [str(bin_dir / "postgres"), "--version"], stdin=subprocess.DEVNULL, capture_output=True,
            preexec_fn=_user_namespace(inner_id), timeout=30, check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        _log.debug("embedded postgres: no user namespace here: %s", exc)
        return False
    return done.returncode == 0


def _user_namespace(inner_id: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child enters a new user namespace in which this process's uid and gid are
    seen as ``inner_id``. Files keep being accessed as the real user; the child has no capabilities."""
    unshare = ctypes.CDLL(None, use_errno=True).unshare
    writes = (
        ("/proc/self/setgroups", b"deny"),  # required before an unprivileged gid_map
        ("/proc/self/uid_map", f"{inner_id} {os.geteuid()} 1".encode()),
        ("/proc/self/gid_map", f"{inner_id} {os.getegid()} 1".encode()),
    )

    def enter() -> None:
        if unshare(_CLONE_NEWUSER) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
        for path, data in writes:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    return enter


@final
class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir`` (``DATA_DIR/pg`` in ``dev``).

    ``start()`` initialises the directory if it is empty, starts the server (or reuses one another live
    process started there) and returns the DSN. ``stop()`` stops the server if this object started it;
    a server another live process started is left alone. Both are idempotent. The server dies with the
    process that started it.

    Args:
        data_dir: the cluster directory; created if missing.
        fast_unsafe: turn off fsync (tests only: a crash may corrupt the cluster).
        start_timeout_s: how long the server may take to accept connections.
    """

    def __init__(self, data_dir: Path, *, fast_unsafe: bool = False, start_timeout_s: int = 60) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._fast_unsafe = fast_unsafe
        self._start_timeout_s = start_timeout_s
        self._bin = postgres_bin_dir()
        self._owned = False
        self._dsn: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

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
        """Whether ``stop()`` will stop the server (this process started it)."""
        return self._owned

    def start(self) -> str:
        """Start the server (or reuse one a live process started) and return its DSN. Blocking."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        info = self._running()
        if info is not None:
            owner = self._read_owner()
            if owner == os.getpid() or (owner is not None and _pid_alive(owner)):
                self._owned = owner == os.getpid()
                _log.info("embedded postgres: reusing server pid %s on %s", info.pid, self.data_dir)
            else:
                # Its starter died: the server is shutting down on the parent-death signal, or an older
                # version started it without one. Stop it and start our own, tied to this process.
                _log.info("embedded postgres: stopping server pid %s left by a dead starter", info.pid)
                self._stop_server(info)
                info = None
        if info is None:
            self._prepare_dir()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._remove_stale_locks()
            self._write_owner()  # before the server exists: nobody may take it for a dead starter's
            info = self._start_server()
            self._owned = True
        self._dsn = _dsn(info.socket_dir, info.port, "postgres")
        return self._dsn

    def stop(self) -> None:
        """Stop the server if we own it (fast shutdown: open sessions are disconnected). Blocking."""
        if not self._owned:
            return
        info = self._running()
        if info is not None:
            self._stop_server(info)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(_STOP_TIMEOUT_S)  # reap our child
            self._process = None
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
    @property
    def _as(self) -> _RunAs:
        return _run_as(self._bin)

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
        self._own(path)
        return path

    def _prepare_dir(self) -> None:
        self._own(self.data_dir)
        if self._as.os_user is not None:
            _ensure_os_user(self._as.os_user)
            _ensure_traversable(self.data_dir.parent)
        # PostgreSQL refuses a data directory readable by others.
        self.data_dir.chmod(0o700)

    def _own(self, path: Path) -> None:
        """Give ``path`` (recursively) to the server's user when another owns it: a data directory made
        under the fallback system user is taken back once user namespaces work, and the reverse."""
        user = self._as.os_user
        uid = pwd.getpwnam(user).pw_uid if user is not None else os.geteuid()
        if not _is_root() or path.stat().st_uid == uid:
            return
        _log.info("embedded postgres: giving %s to %s", path, user or "this process's user")
        gid = pwd.getpwuid(uid).pw_gid if user is not None else os.getegid()
        for directory, _dirs, files in os.walk(path):
            os.chown(directory, uid, gid)
            for name in files:
                os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)

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

    def _start_server(self) -> _Postmaster:
        """Run ``postgres`` as our child (so the parent-death signal can stop it) and wait until it is
        ready, as ``pg_ctl start -w`` would."""
        args = [str(self._bin / "postgres"), "-D", str(self.data_dir), "-c", "listen_addresses=",
                "-k", str(self._socket_dir()), "-p", str(_SOCKET_PORT)]
        if self._fast_unsafe:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        enter = self._as.preexec()
        tie = die_with_parent(signal.SIGINT)

        def preexec() -> None:
            if enter is not None:
                enter()
            tie()  # after entering: the signal must be armed in the credentials the server keeps

        log_path = self.data_dir / "log"
        with log_path.open("ab") as log:
            log_start = log.tell()
            user = self._as.os_user
            process = on_lasting_thread(lambda: subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir,
                user=user, group=user, extra_groups=[] if user else None, start_new_session=True,
                preexec_fn=preexec,
            ))
        self._process = process
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            if process.poll() is not None:
                raise EmbeddedServerError(
                    f"PostgreSQL exited with status {process.returncode}: {_tail(log_path, log_start)}"
                )
            info = _read_postmaster(self.data_dir)
            if info is not None and info.pid == process.pid and info.status == "ready":
                return info
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise EmbeddedServerError(
                    f"PostgreSQL was not ready within {self._start_timeout_s} s: {_tail(log_path, log_start)}"
                )
            time.sleep(0.02)

    def _stop_server(self, info: _Postmaster) -> None:
        try:
            self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(_STOP_TIMEOUT_S), "stop"])
        except EmbeddedServerError:
            # pg_ctl failed (timed out, not allowed to signal a server another user runs, or the server
            # was already going): make sure nothing is left behind.
            if self._running() is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(info.pid, signal.SIGQUIT)
                deadline = time.monotonic() + _STOP_TIMEOUT_S
                while self._running() is not None and time.monotonic() < deadline:
                    time.sleep(0.02)

    def _run(self, args: list[str]) -> None:
        exe = str(self._bin / args[0])
        user = self._as.os_user
        # Output goes to a file, not a pipe: a server started by the command would inherit a pipe and keep
        # it open (and block a reader) as long as it runs.
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(
                    [exe, *args[1:]], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    check=True, cwd=self.data_dir, user=user, group=user,
                    extra_groups=[] if user else None, start_new_session=True,
                    preexec_fn=self._as.preexec(), timeout=self._start_timeout_s + 30,
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


def _tail(path: Path, start: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace").strip()[-2000:] or "(no output)"
    except OSError:
        return "(no log)"


def _ensure_os_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        _log.warning("embedded postgres: creating system user %s (useradd --system)", name)
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
