"""The bodies of the ``actor-admin`` sub-commands: each builds what it needs, runs it under
``trio.run`` and returns the exit status.

:mod:`actor_admin.cli` parses the arguments and calls these; :mod:`actor_admin.node` wires a node and
knows nothing of commands. ``doctor``'s checks are a module of their own (:mod:`actor_admin.doctor`),
as are ``backup``'s and ``restore``'s (:mod:`actor_admin.backup`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import trio
import trio_asyncio

from actor_admin import backup, node
from actor_admin._devcluster import run_cluster
from actor_admin._devenv import ensure_dev_secrets
from actor_admin.config import Settings, SettingsError, load_settings
from actor_admin.console import CommandError, say, wait_for_signal
from actor_admin.doubles.whatsapp import DevicesFileError, SimulatorCore, serve_simulator, simulator_devices_file
from actor_admin.doubles.yclients import serve_fake_yclients
from actor_admin.store import Keyring, MigrationError, Store, StoreError
from actor_admin.store import migrate as run_migrations
from actor_admin.whatsapp import NeonizeMissing, require_neonize


def _run(main: Callable[[], Awaitable[int]]) -> int:
    try:
        return int(trio.run(main))
    except KeyboardInterrupt:
        return 0


def run_dev(
    environ: Mapping[str, str], *, host: str | None = None, port: int | None = None, nodes: int = 1
) -> int:
    """``actor-admin dev``: one node with everything embedded, or ``nodes`` > 1 node processes
    sharing embedded databases and doubles (:mod:`actor_admin._devcluster`)."""
    env = dict(environ)
    if host:
        env["HOST"] = host
    if port is not None:
        env["PORT"] = str(port)
    data_dir = Path(env.get("DATA_DIR") or "./.data")
    generated = ensure_dev_secrets(data_dir)
    try:
        settings = load_settings("dev", env, generated=generated)
    except SettingsError as exc:
        raise CommandError("actor-admin dev: " + "; ".join(exc.problems)) from None
    say(f"dev secrets: {data_dir / 'dev.env'} (environment variables override them)")
    if nodes > 1:
        return _run(lambda: run_cluster(settings, env, nodes))
    return _run(lambda: node.run_node(settings, migrate=True))


def run_serve(settings: Settings, *, migrate: bool) -> int:
    if settings.whatsapp_transport == "neonize":
        try:
            require_neonize()
        except NeonizeMissing as exc:
            raise CommandError(f"actor-admin serve: {exc}") from None
    return _run(lambda: node.run_node(settings, migrate=migrate))


def run_migrate(database_url: str, *, dry_run: bool) -> int:
    async def main() -> int:
        async with trio_asyncio.open_loop():
            try:
                names = await run_migrations(database_url, dry_run=dry_run, progress=lambda n: say(f"applying {n}"))
            except MigrationError as exc:
                raise CommandError(f"actor-admin migrate: {exc}") from None
            except StoreError as exc:
                raise CommandError(f"actor-admin migrate: cannot reach PostgreSQL: {exc}") from None
        verb = "would apply" if dry_run else "applied"
        say(f"{verb} {len(names)} migration(s)" + (": " + ", ".join(names) if names else " (schema up to date)"))
        return 0

    return int(trio.run(main))


def run_simulator(host: str, port: int, *, data_dir: Path | None = None) -> int:
    """``actor-admin simulator``; with ``data_dir`` its linked devices outlive the process."""
    devices_file = simulator_devices_file(data_dir) if data_dir is not None else None
    try:
        core = SimulatorCore(devices_file=devices_file)
    except DevicesFileError as exc:
        raise CommandError(f"actor-admin simulator: {exc}") from None

    async def main() -> int:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_signal, stop)
            binds = await nursery.start(
                lambda task_status: serve_simulator(
                    host, port, core, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            say(f"WhatsApp simulator listening on {', '.join(map(str, binds))} (control API at /, links at /link)")
            if devices_file is not None:
                say(f"linked devices kept in {devices_file}")
            await stop.wait()
            nursery.cancel_scope.cancel()
        return 0

    return _run(main)


def run_fake_yclients(environ: Mapping[str, str], host: str, port: int) -> int:
    generated = ensure_dev_secrets(Path(environ.get("DATA_DIR") or "./.data"))
    settings = load_settings("dev", environ, generated=generated)

    async def main() -> int:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_signal, stop)
            binds = await nursery.start(
                lambda task_status: serve_fake_yclients(
                    host, port, settings, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            say(f"fake YClients listening on {', '.join(map(str, binds))} (API at /, control at /_fake/)")
            await stop.wait()
            nursery.cancel_scope.cancel()
        return 0

    return _run(main)


def run_rotate_key(environ: Mapping[str, str], *, old_keys: list[str]) -> int:
    settings = load_settings("serve" if environ.get("DATABASE_URL") else "dev", environ)
    if settings.database_url is None:
        raise CommandError("actor-admin rotate-key: DATABASE_URL is not set")
    try:
        previous = [base64.b64decode(k, validate=True) for k in old_keys]
    except (binascii.Error, ValueError):
        raise CommandError("actor-admin rotate-key: --old-key must be base64 of 32 bytes") from None
    database_url = settings.database_url

    async def main() -> int:
        async with trio_asyncio.open_loop():
            store = await Store.open(database_url, credentials_keys=Keyring(settings.credentials_key, previous))
            try:
                count = await store.credentials.rotate()
            finally:
                await store.aclose()
        say(f"re-encrypted {count} credential blob(s) with the current CREDENTIALS_KEY")
        return 0

    return int(trio.run(main))


def run_backup(environ: Mapping[str, str], path: str) -> int:
    try:
        written = backup.backup(backup.database_url(environ), Path(path))
    except backup.BackupError as exc:
        raise CommandError(f"actor-admin backup: {exc}") from None
    say(f"wrote {written} ({written.stat().st_size} bytes); restore with: actor-admin restore {written}")
    return 0


def run_restore(environ: Mapping[str, str], path: str) -> int:
    try:
        backup.restore(backup.database_url(environ), Path(path))
    except backup.BackupError as exc:
        raise CommandError(f"actor-admin restore: {exc}") from None
    say(f"restored {path}; start the node (credentials need the same CREDENTIALS_KEY)")
    return 0
