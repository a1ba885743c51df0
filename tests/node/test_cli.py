"""The command line as an operator meets it: help, clear refusals, migrate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actor_admin.store import load_migrations
from tests._pg import drop_database, make_database

CLI = [sys.executable, "-m", "actor_admin"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    base.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=base, cwd=cwd, timeout=60)


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("dev", "serve", "migrate", "doctor", "simulator", "fake-yclients", "rotate-key"):
        assert command in result.stdout


def test_serve_without_settings_refuses_with_one_message_naming_each_setting(tmp_path: Path) -> None:
    result = run("serve", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "ADMIN_TOKEN", "CREDENTIALS_KEY", "PUBLIC_URL"):
        assert name in result.stderr
    assert "openssl rand -base64 32" in result.stderr


def test_migrate_dry_run_lists_then_migrate_applies_then_nothing_is_pending(pg_admin_dsn: str, tmp_path: Path) -> None:
    dsn = make_database(pg_admin_dsn)
    try:
        env = {"DATABASE_URL": dsn}
        dry = run("migrate", "--dry-run", env=env, cwd=tmp_path)
        assert dry.returncode == 0, dry.stderr
        names = [m.name for m in load_migrations()]
        assert f"would apply {len(names)} migration(s)" in dry.stderr and ", ".join(names) in dry.stderr
        applied = run("migrate", env=env, cwd=tmp_path)
        assert applied.returncode == 0, applied.stderr
        assert f"applied {len(names)} migration(s)" in applied.stderr
        again = run("migrate", "--dry-run", env=env, cwd=tmp_path)
        assert "would apply 0 migration(s) (schema up to date)" in again.stderr
    finally:
        drop_database(pg_admin_dsn, dsn)


@pytest.mark.parametrize("command", ["dev", "serve", "migrate", "doctor", "simulator", "fake-yclients"])
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0 and "usage: actor-admin" in result.stdout


@pytest.mark.parametrize("raw", ["0", "21", "three"])
def test_dev_refuses_a_node_count_outside_one_to_twenty(raw: str, capsys: pytest.CaptureFixture[str]) -> None:
    from actor_admin.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["dev", "--nodes", raw])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --nodes" in err and "usage: actor-admin dev" in err
    assert build_parser().parse_args(["dev", "--nodes", "20"]).nodes == 20


def test_dev_cluster_puts_nodes_then_the_doubles_on_consecutive_ports_with_shared_urls(tmp_path: Path) -> None:
    from actor_admin._devcluster import node_environment, plan_cluster
    from actor_admin._devenv import ensure_dev_secrets
    from actor_admin.config import load_settings

    env = {"PORT": "8100", "DATA_DIR": str(tmp_path), "NODE_ID": "mine", "CLUSTER_TTL": "6"}
    settings = load_settings("dev", env, dotenv=None, generated=ensure_dev_secrets(tmp_path))
    cluster = plan_cluster(settings, 3)
    assert [(n.node_id, n.url) for n in cluster.nodes] == [
        ("dev-1", "http://127.0.0.1:8100"),
        ("dev-2", "http://127.0.0.1:8101"),
        ("dev-3", "http://127.0.0.1:8102"),
    ]
    assert (cluster.simulator_url, cluster.fake_yclients_url) == ("http://127.0.0.1:8103", "http://127.0.0.1:8104")
    child = node_environment(
        env, settings, cluster, cluster.nodes[1], database_url="postgresql://db", redis_url="redis://r"
    )
    assert child["NODE_ID"] == "dev-2" and child["PORT"] == "8101"
    assert child["WHATSAPP_SIMULATOR_URL"] == "http://127.0.0.1:8103"
    assert child["YCLIENTS_API_URL"] == "http://127.0.0.1:8104"
    assert (child["DATABASE_URL"], child["REDIS_URL"]) == ("postgresql://db", "redis://r")
    assert child["CLUSTER_TTL"] == "6"  # the caller's settings reach every node
    # the node's own settings load from it, with the same dev secrets
    node = load_settings("dev", child, dotenv=None, generated=ensure_dev_secrets(tmp_path))
    assert (node.node_id, node.port, node.whatsapp_simulator_url) == ("dev-2", 8101, "http://127.0.0.1:8103")
    assert node.admin_token == settings.admin_token and node.credentials_key == settings.credentials_key


def test_dev_cluster_refuses_port_zero_and_ports_past_65535(tmp_path: Path) -> None:
    from actor_admin._devcluster import plan_cluster
    from actor_admin._devenv import ensure_dev_secrets
    from actor_admin.config import load_settings
    from actor_admin.console import CommandError

    secrets = ensure_dev_secrets(tmp_path)
    for port, needle in [("0", "give a PORT"), ("65533", "do not fit")]:
        settings = load_settings("dev", {"PORT": port}, dotenv=None, generated=secrets)
        with pytest.raises(CommandError, match=needle):
            plan_cluster(settings, 2)
