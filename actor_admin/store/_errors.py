"""The store's typed errors: callers above ``store/`` catch these, never an asyncpg exception."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by ``actor_admin.store``."""


class StoreUnavailable(StoreError):
    """PostgreSQL cannot be reached right now (down, restarting, connection lost mid-query).

    Transient by nature: the pool reconnects by itself once the server is back, so the caller may retry
    later. A write that fails this way may or may not have been committed.
    """


class CredentialsError(StoreError):
    """A stored credentials blob cannot be decrypted: tampered, bound to another salon, or encrypted
    under a key this process does not hold. Never answered with garbage instead."""


class MigrationError(StoreError):
    """The database schema and the migration files disagree; nothing was applied."""


class MigrationChecksumMismatch(MigrationError):
    """An already applied migration file was changed afterwards."""


class SchemaTooNew(MigrationError):
    """The database has migrations this code does not know: it was migrated by a newer release."""


class EmbeddedServerError(StoreError):
    """The embedded PostgreSQL server could not be prepared, started or stopped."""
