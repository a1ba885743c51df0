"""The embedded dev server: starts from nothing, restarts on its data, dies with its starter, and starts
from a directory no one else may enter (as root too) without changing anything outside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import asyncpg
import pytest

from actor_admin.store import EmbeddedPostgres, EmbeddedServerError, _embedded, postgres_bin_dir

REPO = Path(__file__).resolve().parents[2]


def _query(dsn: str, *statements: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            result: object = None
            for statement in statements:
                result = await conn.fetchval(statement)
            return result
        finally:
            await conn.close()

    return asyncio.run(run())


def test_starts_on_an_empty_directory_and_stops(empty_pg_dir: Path) -> None:
    server = EmbeddedPostgres(empty_pg_dir, fast_unsafe=True)
    dsn = server.start()
    assert (empty_pg_dir / "PG_VERSION").exists()
    assert _query(dsn, "SELECT 40 + 2") == 42
    server.stop()
    assert not server.is_running()


def test_restart_on_the_same_directory_keeps_the_data(pg_cluster_dir: Path) -> None:
    with EmbeddedPostgres(pg_cluster_dir, fast_unsafe=True) as first:
        _query(first.dsn, "CREATE TABLE kept (v int)", "INSERT INTO kept VALUES (7)")
    with EmbeddedPostgres(pg_cluster_dir, fast_unsafe=True) as second:
        assert _query(second.dsn, "SELECT v FROM kept") == 7


def test_stale_postmaster_pid_naming_a_live_process_does_not_block_start(pg_cluster_dir: Path) -> None:
    with EmbeddedPostgres(pg_cluster_dir, fast_unsafe=True):
        pass
    # The container case: the pid of a crashed server now belongs to some other live process.
    (pg_cluster_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{pg_cluster_dir}\n0\n5432\n\n\n\nready\n")
    with EmbeddedPostgres(pg_cluster_dir, fast_unsafe=True) as server:
        assert _query(server.dsn, "SELECT 1") == 1


def test_non_empty_directory_without_a_cluster_is_refused(empty_pg_dir: Path) -> None:
    empty_pg_dir.mkdir()
    (empty_pg_dir / "something.txt").write_text("not a database")
    with pytest.raises(EmbeddedServerError, match="PG_VERSION"):
        EmbeddedPostgres(empty_pg_dir).start()


_STARTER = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from actor_admin.store import EmbeddedPostgres

    server = EmbeddedPostgres(Path(sys.argv[1]), fast_unsafe=True)
    starting = threading.Thread(target=server.start)  # as dev does, through a short-lived worker thread
    starting.start()
    starting.join()
    print(server.dsn, flush=True)
    time.sleep(600)  # killed by the test
    """
)


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def _gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def test_server_of_a_live_starter_is_reused_but_not_stopped_and_dies_with_its_starter(
    pg_cluster_dir: Path,
) -> None:
    starter = subprocess.Popen([sys.executable, "-c", _STARTER, str(pg_cluster_dir)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        dsn = starter.stdout.readline().strip()
        _query(dsn, "CREATE TABLE survived (v int)", "INSERT INTO survived VALUES (1)")
        postmaster = _postmaster_pid(pg_cluster_dir)

        guest = EmbeddedPostgres(pg_cluster_dir)
        assert guest.start() == dsn and not guest.owned
        guest.stop()
        assert guest.is_running()  # not ours to stop while its starter lives
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait()
    # The parent-death signal asks for a fast shutdown: no server is left running without its starter.
    assert _gone_within(postmaster, 15.0), "the postmaster outlived its starter's kill -9"

    heir = EmbeddedPostgres(pg_cluster_dir)
    assert heir.start() == dsn and heir.owned
    assert _query(dsn, "SELECT v FROM survived") == 1
    heir.stop()
    assert not heir.is_running()


_OLD_STARTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from actor_admin.store import EmbeddedPostgres, _embedded

    _embedded.die_with_parent = lambda signum: (lambda: None)  # as versions before the signal started it
    print(EmbeddedPostgres(Path(sys.argv[1]), fast_unsafe=True).start(), flush=True)
    time.sleep(600)
    """
)


def test_a_server_left_running_by_a_dead_starter_is_replaced_by_one_tied_to_us(pg_cluster_dir: Path) -> None:
    starter = subprocess.Popen([sys.executable, "-c", _OLD_STARTER, str(pg_cluster_dir)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        dsn = starter.stdout.readline().strip()
        orphan = _postmaster_pid(pg_cluster_dir)
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait()
    assert not _gone_within(orphan, 0.5)  # untied, it outlived its starter

    heir = EmbeddedPostgres(pg_cluster_dir)
    assert heir.start() == dsn and heir.owned
    assert _gone_within(orphan, 1.0) and _postmaster_pid(pg_cluster_dir) != orphan
    assert _query(dsn, "SELECT 1") == 1
    heir.stop()


# Starts the embedded server with the binaries of a pgserver copied into the 0700 directory argv[1]
# (first on sys.path), its data in that directory too, then stops it.
_PRIVATE_CLONE = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import asyncpg
    from actor_admin.store import EmbeddedPostgres, postgres_bin_dir

    root = Path(sys.argv[1])
    assert postgres_bin_dir().is_relative_to(root), postgres_bin_dir()
    with EmbeddedPostgres(root / "clone" / ".data" / "pg", fast_unsafe=True) as server:
        async def ask() -> int:
            conn = await asyncpg.connect(server.dsn)
            try:
                return int(await conn.fetchval("SELECT 40 + 2"))
            finally:
                await conn.close()
        print(asyncio.run(ask()), flush=True)
    """
)


def _outside_state(root: Path) -> dict[str, object]:
    """What a start must not change outside its directory: the users and groups, and the modes and
    owners of the directory and its ancestors."""
    state: dict[str, object] = {f: Path(f).read_text() for f in ("/etc/passwd", "/etc/group")}
    for directory in (root, *root.parents):
        info = directory.stat()
        state[str(directory)] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return state


def test_starts_from_a_directory_no_one_else_may_enter_and_changes_nothing_outside_it() -> None:
    """A clone in ``mktemp -d`` (0700), binaries and data inside it: as root too, the server starts without
    a system user and without widening any directory's mode."""
    root = Path(tempfile.mkdtemp(prefix="aa-private-clone-"))
    try:
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        package = Path(postgres_bin_dir()).parents[1]  # site-packages/pgserver
        for name in (package.name, f"{package.name}.libs"):
            if (package.parent / name).exists():
                shutil.copytree(package.parent / name, root / "site-packages" / name, symlinks=True)
        before = _outside_state(root)
        env = {**os.environ, "PYTHONPATH": str(root / "site-packages")}
        done = subprocess.run([sys.executable, "-c", _PRIVATE_CLONE, str(root)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == "42", done.stderr[-3000:]
        assert _outside_state(root) == before
    finally:
        _stop_leftover_in(root / "clone" / ".data" / "pg")
        shutil.rmtree(root, ignore_errors=True)


def _stop_leftover_in(data_dir: Path) -> None:
    if (data_dir / "postmaster.pid").exists():
        with contextlib.suppress(OSError, ValueError):
            os.kill(_postmaster_pid(data_dir), signal.SIGQUIT)


def test_root_without_user_namespaces_falls_back_to_the_system_user_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_embedded, "_is_root", lambda: True)
    monkeypatch.setattr(_embedded, "_namespace_works", lambda bin_dir, inner_id: False)
    _embedded._run_as.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=_embedded.__name__):
            run_as = _embedded._run_as(postgres_bin_dir())
    finally:
        _embedded._run_as.cache_clear()
    assert run_as.os_user == _embedded.EMBEDDED_OS_USER and run_as.preexec() is None
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert _embedded.EMBEDDED_OS_USER in line and "o+x" in line


def test_inside_the_namespace_root_is_a_named_user_neither_root_nor_the_overflow_uid() -> None:
    inner = _embedded._namespace_id()
    assert inner is not None and inner not in {0, 65534}
    pwd.getpwuid(inner)  # initdb looks its name up
