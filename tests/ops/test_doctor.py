"""``actor-admin doctor`` run as the operator runs it (a subprocess), against real broken setups and a
healthy node. Each ✗ path breaks one thing for real: a database that does not exist, Redis on a
closed port, an unmigrated database, a short secret."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from tests._pg import dsn_for_database
from tests.api.conftest import TestNode, free_port

from ._serve import serve_settings as serve_env


async def doctor(env: dict[str, str], cwd: Path, url: str | None = None) -> tuple[int, dict[str, str]]:
    """Run the command; return its exit status and each check's line by name (``"✓ …"`` / ``"✗ …"``)."""
    args = [sys.executable, "-m", "actor_admin", "doctor"] + (["--url", url] if url else [])
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root")}
    with trio.fail_after(30):
        done = await trio.run_process(
            args, env=base | env, cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )
    text = done.stdout.decode()
    print(text, done.stderr.decode())
    checks: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if line[:1] in {"✓", "✗"}:
            name = line.split()[1]
            checks[name] = line
        elif name and line.startswith("  "):
            checks[name] += "\n" + line
    return done.returncode, checks


@pytest.fixture
def closed_http_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_every_check_passes_against_a_healthy_node(
    node: TestNode, pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    code, checks = await doctor(serve_env(pg_dsn, redis_url, node.base_url, tmp_path), tmp_path, node.base_url)
    assert [line for line in checks.values() if line.startswith("✗")] == []
    assert set(checks) == {
        "settings",
        "postgres",
        "schema",
        "outbox",
        "activations",
        "redis",
        "server",
        "websocket",
        "actors",
        "disk",
    }
    assert code == 0


async def test_a_short_jwt_secret_fails_settings_and_names_it(
    pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str
) -> None:
    env = serve_env(pg_dsn, redis_url, closed_http_url, tmp_path) | {"JWT_SECRET": "too-short"}
    code, checks = await doctor(env, tmp_path)
    assert code == 1
    assert checks["settings"].startswith("✗")
    assert "JWT_SECRET must be at least 32 bytes" in checks["settings"]
    assert "openssl rand -base64 32" in checks["settings"]
    assert checks["postgres"].startswith("✓") and checks["redis"].startswith("✓")


async def test_a_database_that_does_not_exist_fails_postgres_with_the_command_to_create_it(
    pg_admin_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str
) -> None:
    missing = dsn_for_database(pg_admin_dsn, "actor_admin_doctor_no_such_db")
    code, checks = await doctor(serve_env(missing, redis_url, closed_http_url, tmp_path), tmp_path)
    assert code == 1
    assert checks["postgres"].startswith("✗")
    assert "does not exist" in checks["postgres"] and "createdb" in checks["postgres"]
    assert checks["schema"].startswith("✗ schema       not checked")


async def test_redis_on_a_closed_port_fails_redis(
    pg_dsn: str, closed_port_url: str, tmp_path: Path, closed_http_url: str
) -> None:
    code, checks = await doctor(serve_env(pg_dsn, closed_port_url, closed_http_url, tmp_path), tmp_path)
    assert code == 1
    assert checks["redis"].startswith("✗")
    assert "redis-cli" in checks["redis"]
    assert checks["postgres"].startswith("✓")


async def test_an_unmigrated_database_fails_schema_and_names_the_pending_migrations(
    pg_empty_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str
) -> None:
    from actor_admin.store import load_migrations

    code, checks = await doctor(serve_env(pg_empty_dsn, redis_url, closed_http_url, tmp_path), tmp_path)
    assert code == 1
    assert checks["schema"].startswith("✗")
    for migration in load_migrations():
        assert migration.name in checks["schema"]
    assert "actor-admin migrate" in checks["schema"]


async def test_a_node_that_is_not_running_fails_server_and_websocket(
    pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str
) -> None:
    code, checks = await doctor(serve_env(pg_dsn, redis_url, closed_http_url, tmp_path), tmp_path, closed_http_url)
    assert code == 1
    assert checks["server"].startswith("✗") and "systemctl status actor-admin" in checks["server"]
    assert checks["websocket"].startswith("✗")
    assert checks["schema"].startswith("✓") and checks["outbox"].startswith("✓")
