"""PostgreSQL, the system of record: repositories, migrations, credential encryption, embedded server.

asyncpg runs under trio through trio-asyncio; nothing outside this package (and ``cluster/``) crosses
into asyncio. Callers get trio-native ``await``s and the typed errors of :mod:`._errors`.
"""

from ._crypto import Keyring
from ._db import Database
from ._embedded import EMBEDDED_OS_USER, EmbeddedPostgres, postgres_bin_dir
from ._errors import (
    CredentialsError,
    EmbeddedServerError,
    MigrationChecksumMismatch,
    MigrationError,
    SchemaTooNew,
    StoreError,
    StoreUnavailable,
)
from ._migrations import MIGRATION_LOCK_KEY, Migration, load_migrations, migrate, pending, sql_dir
from ._models import (
    ACTIVATION,
    INTEGRATION_STATUSES,
    Company,
    CompanyEvent,
    ConnectionRecord,
    Direction,
    IntegrationStatus,
    MarketplaceUser,
    Message,
    MessageStatus,
    OutboxItem,
    OutboxStats,
)
from ._repos import ACTIVATION_WINDOW_S, Companies, Credentials, Events, Messages, Outbox
from ._store import Store, open_store

__all__ = [
    "ACTIVATION",
    "ACTIVATION_WINDOW_S",
    "EMBEDDED_OS_USER",
    "INTEGRATION_STATUSES",
    "MIGRATION_LOCK_KEY",
    "Companies",
    "Company",
    "CompanyEvent",
    "ConnectionRecord",
    "Credentials",
    "CredentialsError",
    "Database",
    "Direction",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "Events",
    "IntegrationStatus",
    "Keyring",
    "MarketplaceUser",
    "Message",
    "MessageStatus",
    "Messages",
    "Migration",
    "MigrationChecksumMismatch",
    "MigrationError",
    "Outbox",
    "OutboxItem",
    "OutboxStats",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "load_migrations",
    "migrate",
    "open_store",
    "pending",
    "postgres_bin_dir",
    "sql_dir",
]
