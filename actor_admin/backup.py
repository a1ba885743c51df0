"""``actor-admin backup PATH`` / ``actor-admin restore PATH``: the database, with ``pg_dump -Fc`` and
``pg_restore --clean --if-exists``.

PostgreSQL is the only state worth keeping (docs/data.md): companies, encrypted WhatsApp credentials, the
event log, the outbox and messages. Redis holds only what may be lost or rebuilt (leases, rate-limit
counters, pub/sub, the inbound stream — whose entries are also in ``messages``), so it has no backup.
The credentials stay encrypted in the dump: a restore is useful only together with the same
``CREDENTIALS_KEY`` (keep the key apart from the dumps, e.g. in the secrets store).

The binaries are taken from ``PATH`` or from the ``pgserver`` wheel, whichever is the oldest one not
older than the server (``pg_dump`` refuses a newer server; an unnecessarily new one writes an archive
an older ``pg_restore`` cannot read). The DSN may be TCP (``postgresql://u:p@host/db``) or a unix
socket (``postgresql://u@/db?host=/dir``, as the embedded dev server uses); it is handed to libpq as
is, and a password is passed through ``PGPASSWORD`` rather than on the command line.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from actor_admin.store import EmbeddedPostgres, postgres_bin_dir


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why and what to do."""


@attrs.frozen
class Tools:
    pg_dump: Path
    pg_restore: Path
    major: int


def server_major(dsn: str) -> int:
    """The server's major version (``server_version_num // 10000``)."""
    import asyncpg

    async def ask() -> int:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return int(await conn.fetchval("SHOW server_version_num")) // 10000
        finally:
            await conn.close()

    try:
        return asyncio.run(ask())
    except Exception as exc:
        raise BackupError(f"cannot reach PostgreSQL: {type(exc).__name__}: {exc}") from None


def _candidates() -> list[Path]:
    dirs: list[Path] = []
    found = shutil.which("pg_dump")
    if found:
        dirs.append(Path(found).resolve().parent)
    try:
        dirs.append(postgres_bin_dir())
    except Exception:
        pass
    return [d for d in dict.fromkeys(dirs) if (d / "pg_dump").exists() and (d / "pg_restore").exists()]


def _major_of(pg_dump: Path) -> int | None:
    try:
        out = subprocess.run([str(pg_dump), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


def find_tools(server: int) -> Tools:
    """The oldest ``pg_dump``/``pg_restore`` pair whose major version is at least ``server``'s."""
    usable: list[Tools] = []
    seen: list[str] = []
    for directory in _candidates():
        major = _major_of(directory / "pg_dump")
        seen.append(f"{directory} ({major})")
        if major is not None and major >= server:
            usable.append(Tools(directory / "pg_dump", directory / "pg_restore", major))
    if not usable:
        raise BackupError(
            f"no pg_dump/pg_restore of version {server} or newer found (looked at: {', '.join(seen) or 'none'}); "
            f"install the PostgreSQL {server} client tools, e.g. apt install postgresql-client-{server}"
        )
    return min(usable, key=lambda t: t.major)


def libpq_target(dsn: str) -> tuple[str, dict[str, str]]:
    """The DSN for libpq's ``--dbname`` without its password, and the environment carrying it."""
    parts = urlsplit(dsn)
    env: dict[str, str] = {}
    netloc = parts.netloc
    if parts.password is not None:
        env["PGPASSWORD"] = parts.password
        netloc = netloc.replace(f":{parts.password}@", "@", 1)
    query = parse_qsl(parts.query, keep_blank_values=True)
    # asyncpg-only options that libpq would reject.
    query = [(k, v) for k, v in query if k not in {"server_settings"}]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="/"))), env


def _run(args: list[str], env: Mapping[str, str]) -> None:
    try:
        done = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackupError(f"could not run {args[0]}: {exc}") from None
    if done.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def backup(dsn: str, path: Path) -> Path:
    """Write a custom-format dump of the database to ``path`` (atomically: a temp file, then rename)."""
    tools = find_tools(server_major(dsn))
    target, env = libpq_target(dsn)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    # Owners and grants belong to the old server's roles; the restore recreates the objects under
    # whoever runs it.
    _run(
        [
            str(tools.pg_dump),
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            f"--file={partial}",
            f"--dbname={target}",
        ],
        env,
    )
    os.chmod(partial, 0o600)  # the dump holds salon data (credentials stay encrypted, but still)
    partial.replace(path)
    return path


def restore(dsn: str, path: Path) -> None:
    """Replace the database's objects with the dump's, in one transaction (all or nothing)."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path} does not exist")
    tools = find_tools(server_major(dsn))
    target, env = libpq_target(dsn)
    _run(
        [
            str(tools.pg_restore),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={target}",
            str(path),
        ],
        env,
    )


# -- where the database is ---------------------------------------------------------------------


def database_url(environ: Mapping[str, str]) -> str:
    """``DATABASE_URL``, or in a ``dev`` setup the embedded server's DSN while it runs."""
    url = environ.get("DATABASE_URL")
    if url:
        return url
    data_dir = Path(environ.get("DATA_DIR") or "./.data")
    try:
        return EmbeddedPostgres(data_dir / "pg").dsn_for("postgres")
    except Exception:
        raise BackupError(
            f"DATABASE_URL is not set and the embedded PostgreSQL of {data_dir} is not running "
            "(start `actor-admin dev`, or set DATABASE_URL)"
        ) from None
