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
from ._ownership import (
    FENCED_SQLSTATE,
    Claim,
    Fenced,
    Heartbeat,
    Member,
    NodeIdOccupied,
    NodeRecord,
    NodeRef,
    NodeSuperseded,
    Owner,
    Ownership,
    OwnershipCause,
    StoredSalon,
    Takeover,
    run_fenced,
)
from ._repos import ACTIVATION_WINDOW_S, Companies, Credentials, Events, Messages, Outbox
from ._store import Store, open_store

__all__ = [
    "ACTIVATION",
    "ACTIVATION_WINDOW_S",
    "EMBEDDED_OS_USER",
    "FENCED_SQLSTATE",
    "INTEGRATION_STATUSES",
    "MIGRATION_LOCK_KEY",
    "Claim",
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
    "Fenced",
    "Heartbeat",
    "IntegrationStatus",
    "Keyring",
    "MarketplaceUser",
    "Member",
    "Message",
    "MessageStatus",
    "Messages",
    "Migration",
    "MigrationChecksumMismatch",
    "MigrationError",
    "NodeIdOccupied",
    "NodeRecord",
    "NodeRef",
    "NodeSuperseded",
    "Outbox",
    "OutboxItem",
    "OutboxStats",
    "Owner",
    "Ownership",
    "OwnershipCause",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredSalon",
    "Takeover",
    "load_migrations",
    "migrate",
    "open_store",
    "pending",
    "postgres_bin_dir",
    "run_fenced",
    "sql_dir",
]
