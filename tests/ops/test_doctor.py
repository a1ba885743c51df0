"""``actor-admin doctor`` run as the operator runs it (a subprocess), against real broken setups and a
healthy node. Each ✗ path breaks one thing for real: a database that does not exist, Redis on a
closed port, an unmigrated database, a short secret."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from actor_admin.store import Claim, Member
from tests._pg import _admin as admin_sql
from tests._pg import dsn_for_database
from tests.api._marketplace_helpers import served_app
from tests.api.conftest import TestNode, free_port, node_settings
from tests.api.test_webhook import connect

from ._serve import serve_settings as serve_env


async def doctor(
    env: dict[str, str], cwd: Path, url: str | None = None, *, wrap: list[str] | None = None
) -> tuple[int, dict[str, str]]:
    """Run the command (inside ``wrap`` if given); return its exit status and each check's line by name
    (``"✓ …"`` / ``"✗ …"``, with the lines that follow it)."""
    args = [*(wrap or []), sys.executable, "-m", "actor_admin", "doctor"] + (["--url", url] if url else [])
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
        "inbound",
        "activations",
        "nodes",
        "versions",
        "node-id",
        "clock",
        "owners",
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


# -- each check's ✗ path, broken for real ---------------------------------------------------------


async def test_a_call_waiting_in_the_outbox_too_long_fails_outbox(
    pg_admin_dsn: str, pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str
) -> None:
    await trio.to_thread.run_sync(
        admin_sql,
        pg_dsn,
        "INSERT INTO outbox (kind, salon_id, payload, created_at) "
        "VALUES ('activation', 952, '{}', now() - interval '20 minutes')",
    )
    code, checks = await doctor(serve_env(pg_dsn, redis_url, closed_http_url, tmp_path), tmp_path)
    assert code == 1
    assert checks["outbox"].startswith("✗ outbox       1 pending, oldest 1")
    assert "not being delivered" in checks["outbox"] and "YCLIENTS_PARTNER_TOKEN" in checks["outbox"]


async def test_an_inbound_message_not_announced_for_long_fails_inbound(
    store: Any, pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str
) -> None:
    node = Member("node-doctor", "inc", "1.0")
    await store.companies.upsert_registration(954)
    await store.companies.upsert_registration(955)
    await store.ownership.join(node)
    await store.ownership.claim(node, [Claim(954)])
    rows = [
        (954, "late", "20 minutes"), (954, "fresh", "0 minutes"), (954, "past-retention", "91 days"),
        (955, "nobody-owns-it", "20 minutes"),
    ]
    for salon_id, wa_id, age in rows:
        await trio.to_thread.run_sync(
            admin_sql,
            pg_dsn,
            "INSERT INTO messages (salon_id, direction, wa_id, peer, text, status, at) VALUES "
            f"({salon_id}, 'in', '{wa_id}', '79001112233', 'hi', 'received', now() - interval '{age}')",
        )
    code, checks = await doctor(serve_env(pg_dsn, redis_url, closed_http_url, tmp_path), tmp_path)
    assert code == 1
    assert checks["inbound"].startswith("✗ inbound      1 inbound message(s) not on the inbound stream, oldest 20 min")
    assert "once Redis answers" in checks["inbound"] and "actor_admin_inbound_" in checks["inbound"]


async def test_a_salon_left_in_activation_failed_fails_activations(
    store: Any, pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str
) -> None:
    await store.companies.upsert_registration(953)
    await store.companies.set_integration_status(953, "activation_failed")
    code, checks = await doctor(serve_env(pg_dsn, redis_url, closed_http_url, tmp_path), tmp_path)
    assert code == 1
    assert checks["activations"].startswith("✗") and "953" in checks["activations"]
    assert "admin /admin/companies/SALON_ID/activate -X POST" in checks["activations"]


async def test_a_salon_stuck_in_failed_fails_actors_with_its_reason(
    node: TestNode, pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    await connect(node, 954, "79001230954")
    node.core.ban("79001230954", 3600)
    with trio.fail_after(5):
        await node.services.registry.wait_state(954, "failed")
    code, checks = await doctor(serve_env(pg_dsn, redis_url, node.base_url, tmp_path), tmp_path, node.base_url)
    assert code == 1
    assert checks["actors"].startswith("✗ actors       1 of 1 stuck")
    assert "954: failed (temporarily_banned)" in checks["actors"]


async def test_the_websocket_check_opens_the_socket_from_the_origins_that_matter(
    node: TestNode, pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    """A node whose ALLOWED_ORIGINS forgot its own PUBLIC_URL refuses the connect page (403): doctor
    must see it, so it sends the Origin a browser sends."""

    def without_public_url(port: int) -> Any:
        return node_settings(port, ALLOWED_ORIGINS="https://yclients.com,https://*.yclients.com")

    async with served_app(node, without_public_url) as (url, _):
        code, checks = await doctor(serve_env(pg_dsn, redis_url, url, tmp_path), tmp_path, url)
    assert code == 1
    assert checks["websocket"].startswith("✗")
    assert f"refused the origin {url} (HTTP 403)" in checks["websocket"]
    assert "ALLOWED_ORIGINS" in checks["websocket"]
    assert "https://yclients.com: accepted" in checks["websocket"]


async def test_in_serve_without_data_dir_the_disk_check_does_not_guess(
    pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str
) -> None:
    env = serve_env(pg_dsn, redis_url, closed_http_url, tmp_path)
    del env["DATA_DIR"]
    code, checks = await doctor(env, tmp_path)
    assert code == 1
    assert checks["disk"].startswith("✗ disk         DATA_DIR is not set")
    assert "/etc/actor-admin/env" in checks["disk"]


async def test_a_nearly_full_filesystem_where_the_node_writes_fails_disk(
    pg_dsn: str, redis_url: str, tmp_path: Path, closed_http_url: str
) -> None:
    """DATA_DIR on a 4 MiB tmpfs (mounted in a mount namespace of doctor's own, so nothing is left)."""
    data_dir = tmp_path / "run"
    data_dir.mkdir()
    mount = f"mount -t tmpfs -o size=4m tmpfs {data_dir}"
    probe = await trio.run_process(["unshare", "-m", "sh", "-c", mount], capture_stderr=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"needs a mount namespace and tmpfs (root with CAP_SYS_ADMIN): {probe.stderr.decode().strip()}")
    env = serve_env(pg_dsn, redis_url, closed_http_url, data_dir)
    code, checks = await doctor(env, tmp_path, wrap=["unshare", "-m", "sh", "-c", mount + ' && exec "$@"', "sh"])
    assert code == 1
    assert checks["disk"].startswith("✗ disk         0.0 GiB free of 0.0 GiB at " + str(data_dir))
    assert "too little" in checks["disk"]
