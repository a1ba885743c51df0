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
