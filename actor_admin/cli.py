"""The ``actor-admin`` command line: parses the arguments and calls the sub-command in
:mod:`actor_admin.commands` (or :mod:`actor_admin.doctor`).

Each sub-command builds :class:`~actor_admin.config.Settings` once from the environment and
passes it down. Errors an operator can fix (:class:`~actor_admin.console.CommandError`) are printed
as one clear message with what to do, never as a traceback.

Each ``_cmd_*`` imports its command module when it runs, not at start: those load the whole server
(Quart, hypercorn, asyncpg, trio-asyncio), and ``--help`` or a usage error should answer at once
(about 0.1 s instead of 0.9 s).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from actor_admin import __version__, logs
from actor_admin.config import Mode, Settings, SettingsError, load_settings, read_dotenv
from actor_admin.console import CommandError

EXAMPLES = """\
examples:
  actor-admin dev                      everything in one process: embedded PostgreSQL and Redis,
                                       WhatsApp simulator, fake YClients; open the printed URL
  actor-admin dev --nodes 3            a three-node cluster on one machine (ports 8000-8002, simulator
                                       on 8003, fake YClients on 8004); kill a node, watch /status
  actor-admin serve                    production (needs DATABASE_URL, REDIS_URL, secrets; see README)
  actor-admin migrate --dry-run        list migrations that would be applied
  actor-admin doctor --url http://127.0.0.1:8000
                                       check settings, databases, the running server
  actor-admin backup /var/backups/actor-admin.dump
                                       dump PostgreSQL (restore it with `actor-admin restore PATH`)
"""


def _settings(mode: Mode, *, generated: dict[str, str] | None = None) -> Settings:
    try:
        return load_settings(mode, os.environ, generated=generated)
    except SettingsError as exc:
        lines = [f"actor-admin {mode}: cannot start, the settings need attention:"]
        lines += [f"  ✗ {p}" for p in exc.problems]
        lines.append("Set them in the environment or in a .env file in the working directory.")
        raise CommandError("\n".join(lines)) from None


def _cmd_dev(args: argparse.Namespace) -> int:
    from actor_admin import commands

    return commands.run_dev(os.environ, host=args.host, port=args.port, nodes=args.nodes)


def _node_count(raw: str) -> int:
    try:
        count = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {raw!r}") from None
    if not 1 <= count <= 20:  # _devcluster.MAX_NODES (not imported here: it loads the whole server)
        raise argparse.ArgumentTypeError(f"must be between 1 and 20, got {count}")
    return count


def _cmd_serve(args: argparse.Namespace) -> int:
    from actor_admin import commands

    # Every line serve writes is a JSON log line from the first on, a refused start included: it is
    # logged at error, so `journalctl -u actor-admin -p err` shows why the node did not start.
    logs.configure_before_settings(os.environ.get("LOG_FORMAT"), os.environ.get("JOURNAL_STREAM"))
    try:
        settings = _settings("serve")
        return commands.run_serve(settings, migrate=not args.no_migrate)
    except CommandError as exc:
        logging.getLogger("actor_admin.cli").error("%s", exc)
        return exc.code


def _cmd_migrate(args: argparse.Namespace) -> int:
    from actor_admin import commands

    # Migrating needs only the database, not the rest of serve's settings.
    database_url = os.environ.get("DATABASE_URL") or read_dotenv(Path(".env")).get("DATABASE_URL")
    if not database_url:
        raise CommandError(
            "actor-admin migrate: DATABASE_URL is not set (e.g. postgresql://user:password@host:5432/db).\n"
            "`actor-admin dev` migrates its embedded database by itself."
        )
    return commands.run_migrate(database_url, dry_run=args.dry_run)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from actor_admin import doctor

    return doctor.run(os.environ, url=args.url)


def _cmd_backup(args: argparse.Namespace) -> int:
    from actor_admin import commands

    return commands.run_backup(os.environ, args.path)


def _cmd_restore(args: argparse.Namespace) -> int:
    from actor_admin import commands

    return commands.run_restore(os.environ, args.path)


def _cmd_simulator(args: argparse.Namespace) -> int:
    from actor_admin import commands

    return commands.run_simulator(args.host, args.port, data_dir=args.data_dir)


def _cmd_fake_yclients(args: argparse.Namespace) -> int:
    from actor_admin import commands

    return commands.run_fake_yclients(os.environ, args.host, args.port)


def _cmd_rotate_key(args: argparse.Namespace) -> int:
    from actor_admin import commands

    # OLD_CREDENTIALS_KEY (comma-separated) keeps old keys off the command line (ops/RUNBOOK.md §13).
    old_keys = args.old_key + [k.strip() for k in os.environ.get("OLD_CREDENTIALS_KEY", "").split(",") if k.strip()]
    return commands.run_rotate_key(os.environ, old_keys=old_keys)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actor-admin",
        description="Keeps exactly one healthy WhatsApp connection per YClients salon.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"actor-admin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=fn)
        return p

    dev = add("dev", _cmd_dev, "run everything locally: embedded databases, WhatsApp simulator, fake YClients")
    dev.add_argument("--host", help="listen address (default HOST or 127.0.0.1)")
    dev.add_argument("--port", type=int, help="listen port (default PORT or 8000); with --nodes, the first node's")
    dev.add_argument(
        "--nodes",
        type=_node_count,
        default=1,
        metavar="N",
        help="run N node processes as one cluster (NODE_ID dev-1..N on PORT, PORT+1, …), sharing the embedded "
        "databases, a WhatsApp simulator on PORT+N and a fake YClients on PORT+N+1; kill one to watch its "
        "salons move (default 1: everything in one process)",
    )

    serve = add("serve", _cmd_serve, "run in production against external PostgreSQL and Redis")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")

    migrate = add("migrate", _cmd_migrate, "apply pending sql/NNN_*.sql migrations")
    migrate.add_argument("--dry-run", action="store_true", help="only list what would be applied")

    doctor = add("doctor", _cmd_doctor, "check settings, PostgreSQL, Redis and a running server; exit 1 on a failure")
    doctor.add_argument("--url", help="base URL of a running server to check (default PUBLIC_URL)")

    backup = add("backup", _cmd_backup, "dump the database (pg_dump -Fc) to PATH; Redis needs no backup")
    backup.add_argument("path", metavar="PATH", help="the dump file to write (e.g. actor-admin-$(date +%%F).dump)")

    restore = add("restore", _cmd_restore, "replace the database's contents with a dump made by `backup`")
    restore.add_argument("path", metavar="PATH", help="a dump file written by `actor-admin backup`")

    sim = add("simulator", _cmd_simulator, "run a standalone WhatsApp simulator (for multi-node setups and tests)")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9000)
    sim.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep linked devices in DIR/simulator/devices.json across restarts (default: in memory only)",
    )

    fake = add("fake-yclients", _cmd_fake_yclients, "run a standalone fake YClients marketplace API")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=9100)

    rotate = add("rotate-key", _cmd_rotate_key, "re-encrypt stored WhatsApp credentials with CREDENTIALS_KEY")
    rotate.add_argument(
        "--old-key",
        action="append",
        default=[],
        metavar="BASE64",
        help="a previous CREDENTIALS_KEY still needed to decrypt (repeatable; better: OLD_CREDENTIALS_KEY in the "
        "environment, which keeps it off the command line)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
