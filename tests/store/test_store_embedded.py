"""The embedded dev server: starts from nothing, restarts on its data, survives a killed starter."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from actor_admin.store import EmbeddedPostgres, EmbeddedServerError

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
    import sys, time
    from pathlib import Path
    from actor_admin.store import EmbeddedPostgres, EmbeddedServerError

    print(EmbeddedPostgres(Path(sys.argv[1]), fast_unsafe=True).start(), flush=True)
    time.sleep(600)  # killed by the test
    """
)


def test_server_of_a_live_starter_is_reused_but_not_stopped_and_is_adopted_once_it_is_killed(
    pg_cluster_dir: Path,
) -> None:
    starter = subprocess.Popen([sys.executable, "-c", _STARTER, str(pg_cluster_dir)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        dsn = starter.stdout.readline().strip()
        _query(dsn, "CREATE TABLE survived (v int)", "INSERT INTO survived VALUES (1)")

        guest = EmbeddedPostgres(pg_cluster_dir)
        assert guest.start() == dsn and not guest.owned
        guest.stop()
        assert guest.is_running()  # not ours to stop while its starter lives
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait()

    heir = EmbeddedPostgres(pg_cluster_dir)
    assert heir.start() == dsn and heir.owned
    assert _query(dsn, "SELECT v FROM survived") == 1
    heir.stop()
    assert not heir.is_running()
