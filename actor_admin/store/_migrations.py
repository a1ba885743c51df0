"""Schema migrations: ``sql/NNN_name.sql`` applied in order, each in its own transaction.

Every applied file is recorded in ``schema_migrations`` with the SHA-256 of its text. Before anything
is applied the whole history is checked: an applied file whose text changed
(:class:`MigrationChecksumMismatch`) or an applied version this code has no file for
(:class:`SchemaTooNew`, i.e. a newer release migrated the database) stops the run with nothing done.
A session-level advisory lock serialises runners, so several nodes starting at once apply each file
exactly once: the later ones wait, then find nothing pending.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path

import asyncpg
import attrs
import trio_asyncio

from .. import _resources
from ._db import Conn, connect_aio, is_unavailable, unavailable
from ._errors import MigrationChecksumMismatch, MigrationError, SchemaTooNew, StoreError

# pg_advisory_lock key shared by every actor-admin migration runner ("aamigr" as an integer).
MIGRATION_LOCK_KEY = 0x6161_6D69_6772

_FILE_RE = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@attrs.frozen
class Migration:
    """One migration file: ``name`` is the file name without ``.sql`` (``001_initial``)."""

    version: int
    name: str
    checksum: str
    sql: str = attrs.field(repr=False)


def sql_dir() -> Path:
    """Where the migration files are: ``sql/`` of the checkout, or ``<prefix>/share/actor-admin/sql``
    of an installed wheel (pyproject's ``data-files``; the search is :mod:`actor_admin._resources`)."""
    try:
        return _resources.sql_dir()
    except FileNotFoundError as exc:
        raise MigrationError(str(exc)) from exc


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read and order the migration files of ``directory`` (default :func:`sql_dir`)."""
    directory = sql_dir() if directory is None else directory
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_lowercase_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        # Line endings normalised so a checkout with CRLF conversion does not look tampered with.
        text = path.read_bytes().replace(b"\r\n", b"\n")
        migrations[version] = Migration(
            version=version,
            name=path.stem,
            checksum=hashlib.sha256(text).hexdigest(),
            sql=text.decode("utf-8"),
        )
    return [migrations[v] for v in sorted(migrations)]


async def _applied(conn: Conn) -> dict[int, tuple[str, str]]:
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    return {r["version"]: (r["name"], r["checksum"]) for r in rows}


def _plan(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> list[Migration]:
    known = {m.version: m for m in migrations}
    unknown = [name for version, (name, _) in applied.items() if version not in known]
    if unknown:
        raise SchemaTooNew(
            f"the database has migrations this release does not know: {', '.join(unknown)} — it was "
            "migrated by a newer actor-admin; run that release (or a newer one) instead"
        )
    for version, (name, checksum) in applied.items():
        if known[version].checksum != checksum:
            raise MigrationChecksumMismatch(
                f"migration {name} was changed after it was applied (checksum {checksum[:12]}… in the "
                f"database, {known[version].checksum[:12]}… on disk); restore the original file and put "
                "the change in a new migration"
            )
    return [m for m in migrations if m.version not in applied]


async def _guarded(work: Awaitable[list[str]]) -> list[str]:
    try:
        return await work
    except StoreError:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(exc) from exc
        raise


async def _migrate_aio(
    dsn: str, dry_run: bool, progress: Callable[[str], None] | None, migrations: list[Migration]
) -> list[str]:
    conn = await connect_aio(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            todo = _plan(migrations, await _applied(conn))
            if dry_run:
                return [m.name for m in todo]
            await conn.execute(_CREATE_TABLE)
            for migration in todo:
                if progress is not None:
                    progress(migration.name)
                try:
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                            migration.version, migration.name, migration.checksum,
                        )
                except asyncpg.PostgresError as exc:
                    if is_unavailable(exc):
                        raise unavailable(exc) from exc
                    raise MigrationError(f"migration {migration.name} failed and was rolled back: {exc}") from exc
            return [m.name for m in todo]
        finally:
            # A dead connection has already dropped its session lock.
            if not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()


async def _pending_aio(dsn: str, migrations: list[Migration]) -> list[str]:
    conn = await connect_aio(dsn)
    try:
        return [m.name for m in _plan(migrations, await _applied(conn))]
    finally:
        await conn.close()


async def migrate(
    dsn: str,
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    directory: Path | None = None,
) -> list[str]:
    """Apply the pending migrations; returns their names in order (with ``dry_run``, would-be names).

    ``progress(name)`` is called just before each file is applied.

    Raises:
        SchemaTooNew, MigrationChecksumMismatch: the history disagrees with the files; nothing applied.
        MigrationError: bad file names; or a file's SQL failed (that file rolled back, earlier ones kept).
        StoreUnavailable: PostgreSQL cannot be reached.
    """
    migrations = load_migrations(directory)
    names: list[str] = await trio_asyncio.aio_as_trio(_guarded)(_migrate_aio(dsn, dry_run, progress, migrations))
    return names


async def pending(dsn: str, *, directory: Path | None = None) -> list[str]:
    """Names of the migrations not yet applied; raises like :func:`migrate` if the history disagrees."""
    migrations = load_migrations(directory)
    names: list[str] = await trio_asyncio.aio_as_trio(_guarded)(_pending_aio(dsn, migrations))
    return names


def migrate_aio(
    dsn: str, *, dry_run: bool = False, progress: Callable[[str], None] | None = None,
    directory: Path | None = None,
) -> Coroutine[object, object, list[str]]:
    """The asyncio form of :func:`migrate` (a coroutine), for tooling that runs without trio."""
    return _guarded(_migrate_aio(dsn, dry_run, progress, load_migrations(directory)))
