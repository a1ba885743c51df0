"""A company's whatsmeow device store, as the opaque credentials blob our store encrypts.

whatsmeow keeps a device's keys (identity, signal sessions, pre-keys, app-state keys) in its own
SQL store, unencrypted. We give every link a private SQLite file that lives only while the link
does: :func:`restore_store` writes it from the credentials bytes at ``open()``, and
:func:`snapshot_store` turns it back into bytes (a consistent copy taken with SQLite's online
backup, so whatsmeow may keep writing meanwhile) for ``CredsUpdated``. At rest the keys exist only
inside our encrypted ``whatsapp_credentials`` row. See docs/neonize-transport.md for the trade-offs.

Blob format: ``MAGIC`` followed by the zlib-compressed SQLite database image.
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from pathlib import Path
from typing import Final

MAGIC: Final = b"AAWM1\n"  # actor-admin whatsmeow store, version 1


class StoreFormatError(ValueError):
    """The credentials bytes are not a store snapshot made by :func:`snapshot_store`."""


def snapshot_store(db_path: Path) -> bytes:
    """A consistent copy of the SQLite store at ``db_path``, packed as credentials bytes."""
    source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)
    memory = sqlite3.connect(":memory:")
    try:
        source.backup(memory)
        image = memory.serialize()
    finally:
        source.close()
        memory.close()
    return MAGIC + zlib.compress(image, 6)


def restore_store(credentials: bytes, db_path: Path) -> None:
    """Write the store packed in ``credentials`` to ``db_path`` (owner-only permissions).

    Raises:
        StoreFormatError: ``credentials`` were not made by :func:`snapshot_store`.
    """
    if not credentials.startswith(MAGIC):
        raise StoreFormatError("credentials are not a neonize device store snapshot")
    try:
        image = zlib.decompress(credentials[len(MAGIC) :])
    except zlib.error as exc:
        raise StoreFormatError(f"credentials are corrupt: {exc}") from exc
    if not image.startswith(b"SQLite format 3\x00"):
        raise StoreFormatError("credentials do not hold an SQLite database")
    fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(image)


def remove_store(db_path: Path) -> None:
    """Delete the store file and SQLite's side files; whatever is already gone is fine."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        try:
            os.unlink(f"{db_path}{suffix}")
        except FileNotFoundError:
            pass
