"""``doctor``'s cluster checks run as the operator runs them, each ✗ against a real broken cluster:
rows written into a real PostgreSQL as dead, skewed or orphaning nodes would leave them, two real
processes sharing a ``NODE_ID``, and a doctor process whose clock is off."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actor_admin.store import Claim, Member
from tests.store._ownership_helpers import add_companies, sql

from ._serve import serve_settings as serve_env
from .test_doctor import closed_http_url, doctor  # noqa: F401  (closed_http_url is a fixture)

pytestmark = pytest.mark.integration


async def _age(pg_dsn: str, node_id: str, seconds: int) -> None:
    await sql(
        pg_dsn, "UPDATE cluster_nodes SET heartbeat_at = now() - make_interval(secs => $2) WHERE node_id = $1",
        node_id, float(seconds),
    )


async def test_a_cluster_of_live_nodes_owning_every_salon_passes(
    store: Any, pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str  # noqa: F811
) -> None:
    a, b = Member("node-a", "ia", "1.0"), Member("node-b", "ib", "1.0")
    await add_companies(pg_dsn, [961, 962])
    await sql(pg_dsn, "INSERT INTO whatsapp_credentials (salon_id, blob, key_id) VALUES (961, '\\x00', 'k')")
    await store.ownership.join(a)
    await store.ownership.join(b)
    assert await store.ownership.claim(a, [Claim(961)])
    _, checks = await doctor(serve_env(pg_dsn, redis_url, closed_http_url, tmp_path), tmp_path)
    for name in ("nodes", "versions", "node-id", "clock", "owners"):
        assert checks[name].startswith("✓"), checks[name]
    assert "2 of 2 node(s)" in checks["nodes"] and "1 salon(s) should run" in checks["owners"]


async def test_a_node_without_a_recent_heartbeat_fails_nodes(
    store: Any, pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str  # noqa: F811
) -> None:
    await store.ownership.join(Member("node-live", "il", "1.0"))
    await store.ownership.join(Member("node-gone", "ig", "1.0"))
    await _age(pg_dsn, "node-gone", 90)
    code, checks = await doctor(serve_env(pg_dsn, redis_url, closed_http_url, tmp_path), tmp_path)
    assert code == 1
    assert checks["nodes"].startswith("✗ nodes") and "node-gone: last heartbeat 9" in checks["nodes"]
    assert "node-live" not in checks["nodes"].split("\n", 1)[1]


async def test_live_nodes_on_two_versions_fail_versions_naming_each(
    store: Any, pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str  # noqa: F811
) -> None:
    await store.ownership.join(Member("node-old", "io", "1.4.0"))
    await store.ownership.join(Member("node-new", "in", "1.5.0"))
    await store.ownership.join(Member("node-dead", "id", "0.9.0"))
    await _age(pg_dsn, "node-dead", 90)  # a dead node's version is not skew
    code, checks = await doctor(serve_env(pg_dsn, redis_url, closed_http_url, tmp_path), tmp_path)
    assert code == 1
    assert checks["versions"].startswith("✗") and "2 versions" in checks["versions"]
    assert "1.4.0: node-old" in checks["versions"] and "1.5.0: node-new" in checks["versions"]
    assert "0.9.0" not in checks["versions"]


async def test_a_salon_that_should_run_without_a_live_owner_fails_owners(
    store: Any, pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str  # noqa: F811
) -> None:
    live, dead = Member("node-live", "il", "1.0"), Member("node-dead", "id", "1.0")
    await add_companies(pg_dsn, [971, 972, 973, 974])
    await sql(pg_dsn, "INSERT INTO whatsapp_credentials (salon_id, blob, key_id) "
                      "SELECT unnest(ARRAY[971, 972, 973, 974]::bigint[]), '\\x00', 'k'")
    await store.ownership.join(live)
    await store.ownership.join(dead)
    assert await store.ownership.claim(dead, [Claim(971)])
    assert await store.ownership.claim(live, [Claim(972)])
    await _age(pg_dsn, "node-dead", 90)
    await sql(pg_dsn, "UPDATE salon_owners SET changed_at = now() - interval '5 minutes'")
    await sql(pg_dsn, "UPDATE companies SET updated_at = now() - interval '5 minutes' WHERE salon_id = 973")
    # 974 was released a moment ago (a handover in progress): not yet an orphan.
    code, checks = await doctor(serve_env(pg_dsn, redis_url, closed_http_url, tmp_path), tmp_path)
    assert code == 1
    line = checks["owners"]
    assert line.startswith("✗") and "2 of 4 salon(s)" in line
    assert "971: owned by silent node-dead" in line and "973: released" in line
    assert "972" not in line and "974" not in line


@pytest.fixture
def twin_processes() -> Iterator[tuple[str, list[int]]]:
    """Two real processes started as `actor-admin serve` with one NODE_ID (killed in teardown)."""
    node_id = "twin-" + secrets.token_hex(4)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", "actor-admin", "serve"],
            env={"NODE_ID": node_id},
        )
        for _ in range(2)
    ]
    try:
        yield node_id, [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


async def test_two_processes_sharing_a_node_id_fail_node_id_naming_both(
    store: Any, pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str,  # noqa: F811
    twin_processes: tuple[str, list[int]],
) -> None:
    node_id, pids = twin_processes
    code, checks = await doctor(serve_env(pg_dsn, redis_url, closed_http_url, tmp_path), tmp_path)
    assert code == 1
    assert checks["node-id"].startswith("✗")
    assert f"NODE_ID={node_id}: processes {pids[0]}, {pids[1]}" in checks["node-id"]


# A doctor process whose wall clock runs two minutes ahead (its `time.time` shifted before it starts).
_SKEWED = (
    "import runpy, sys, time; real = time.time; time.time = lambda: real() + 120.0; "
    "sys.argv = ['actor-admin', *sys.argv[4:]]; runpy.run_module('actor_admin', run_name='__main__')"
)


async def test_a_machine_clock_off_from_postgresql_fails_clock(
    store: Any, pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str  # noqa: F811
) -> None:
    code, checks = await doctor(
        serve_env(pg_dsn, redis_url, closed_http_url, tmp_path), tmp_path, wrap=[sys.executable, "-c", _SKEWED]
    )
    assert code == 1
    assert checks["clock"].startswith("✗") and "ahead of PostgreSQL's" in checks["clock"]
    # About 120 s: the doctor's own round trip to PostgreSQL shifts it by a little under load.
    skew = float(checks["clock"].split("clock is ")[1].split(" s ahead")[0])
    assert 115.0 < skew < 125.0
