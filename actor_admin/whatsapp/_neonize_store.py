"""A company's whatsmeow device store, as the opaque credentials blob our store encrypts.

whatsmeow keeps a device's keys (identity, signal sessions, pre-keys, app-state keys) in its own
SQL store, unencrypted. We give every link a private SQLite file that lives only while the link
does: :func:`restore_store` writes it from the credentials bytes at ``open()``, and
:func:`snapshot_store` turns it back into bytes (a consistent copy taken with SQLite's online
backup, so whatsmeow may keep writing meanwhile) for ``CredsUpdated``. At rest the keys exist only
inside our encrypted ``whatsapp_credentials`` row. See docs/neonize-transport.md for the trade-offs.

Those files live in a :class:`WorkingDir`: a directory of this process's own, on a RAM-backed
file system (:func:`ram_store_root`), which a node that starts removes for every owner that is gone
(a crash leaves no plaintext keys behind for longer than the next start).

Blob format: ``MAGIC`` followed by the zlib-compressed SQLite database image.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import sqlite3
import stat
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Final, final

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


# ---- where the working copies live ------------------------------------------------------------

STORE_GLOB: Final = "salon-*.db*"  # a link's store file and SQLite's side files
_SWEEP_LOCK: Final = ".sweep.lock"
_LOCK_SUFFIX: Final = ".lock"


def ram_store_root(runtime_dir: Path | None) -> Path:
    """The RAM-backed directory that holds every working store of this node.

    ``runtime_dir`` is the node's runtime directory (``Settings.runtime_dir``: systemd's
    ``$RUNTIME_DIRECTORY`` or the user's ``$XDG_RUNTIME_DIR``, both tmpfs); without one, Linux's
    shared-memory tmpfs ``/dev/shm``, in a directory of the user's own. Never ``DATA_DIR``, which
    may be a disk.
    """
    if runtime_dir is not None:
        return runtime_dir / "neonize-work"
    return Path("/dev/shm") / f"actor-admin-{os.getuid()}" / "neonize-work"


def _private_dir(path: Path) -> None:
    """Create ``path`` (and parents) owner-only; refuse one that someone else owns or can enter."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a directory of this user's own")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)


def _remove(path: Path) -> int:
    """Delete a file or a directory tree; how many files went (what is already gone is fine)."""
    try:
        if path.is_dir() and not path.is_symlink():
            count = sum(1 for p in path.rglob("*") if not p.is_dir())
            shutil.rmtree(path, ignore_errors=True)
            return count
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0


def _owner_is_gone(lock_path: Path) -> bool:
    """True when nobody holds ``lock_path``'s lock any more (its process ended, however it ended)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    finally:
        os.close(fd)  # closing also releases a lock we took
    return True


def remove_leftovers(directories: Iterable[Path]) -> list[Path]:
    """Delete working stores that an older release left directly in ``directories``.

    Earlier releases kept them as ``<dir>/salon-*.db``; a crash left them there. Returns what was
    removed; an emptied directory goes too.
    """
    removed: list[Path] = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob(STORE_GLOB)):
            if _remove(path):
                removed.append(path)
        try:
            directory.rmdir()
        except OSError:
            pass  # not empty: something else lives there
    return removed


@final
class WorkingDir:
    """This process's own directory under a RAM store root, and what the start removed.

    ``root/<tag>/`` holds the stores; ``root/<tag>.lock`` is locked (``flock``) while the owner
    lives. Opening one removes every other ``<tag>`` whose lock nobody holds: its process is gone
    and its files are leftovers. A short lock on ``root/.sweep.lock`` keeps one process's removal
    from meeting another's directory before that one is locked.
    """

    def __init__(self, root: Path) -> None:
        _private_dir(root)
        self.root = root
        self.removed: list[Path] = []
        sweep = os.open(root / _SWEEP_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(sweep, fcntl.LOCK_EX)
            self.removed = self._sweep()
            tag = f"{os.getpid()}-{secrets.token_hex(4)}"
            self._lock_path = root / f"{tag}{_LOCK_SUFFIX}"
            self._lock = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.path = root / tag
            self.path.mkdir(mode=0o700)
        finally:
            os.close(sweep)

    def _sweep(self) -> list[Path]:
        removed: list[Path] = []
        owners = {p.name[: -len(_LOCK_SUFFIX)] for p in self.root.glob(f"*{_LOCK_SUFFIX}") if p.name != _SWEEP_LOCK}
        dirs = {p.name for p in self.root.iterdir() if p.is_dir()}
        for tag in sorted(owners | dirs):
            lock_path = self.root / f"{tag}{_LOCK_SUFFIX}"
            if not _owner_is_gone(lock_path):
                continue
            directory = self.root / tag
            removed += sorted(p for p in directory.rglob("*") if not p.is_dir()) if directory.is_dir() else []
            _remove(directory)
            _remove(lock_path)
        return removed

    def close(self) -> None:
        """Delete this process's directory (whatever links left in it) and give up the lock."""
        if self._lock < 0:
            return
        _remove(self.path)
        _remove(self._lock_path)
        os.close(self._lock)
        self._lock = -1
