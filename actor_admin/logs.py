"""Logging: JSON lines in ``serve``, readable console lines in ``dev`` (see ops/logging.md).

What an operator relies on, and where it comes from:

- **Every line JSON in serve.** The node's records are JSON objects (``ts``, ``level``, ``logger``,
  ``msg``, ``node``, ``salon_id``…). Text that is *written* to stderr rather than logged — the
  start/stop progress lines, a refused start, a library's stray print — is turned into a record of
  logger ``actor_admin.console`` by the stream that replaces ``sys.stderr`` (:class:`StderrRecords`),
  and an uncaught exception becomes one ``critical`` record with its traceback. So
  ``journalctl -o cat | jq`` never meets a line it cannot parse.
- **A priority journald reads.** When stderr is the journal (systemd says so in ``$JOURNAL_STREAM``)
  each line starts with its syslog priority, ``<3>`` for an error: journald stores the line at that
  priority and strips the prefix (``SyslogLevelPrefix=``, on by default), so ``journalctl -p err``
  finds errors. Anywhere else (a terminal, a pipe, a file) the lines are plain JSON.
- **salon_id on every line about a salon**, including lines of libraries (httpx) that know nothing
  of salons: code working for one salon runs inside :func:`about_salon` (or calls :func:`for_salon`
  at the top of a task of its own), and the handler's filter adds that ``salon_id`` to every record
  that does not name one itself.

Secrets never reach a log line because nothing logs the settings object unredacted.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

from actor_admin.config import Settings

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

#: Logger of text written to stderr instead of logged (progress lines, a refused start).
CONSOLE_LOGGER = "actor_admin.console"

#: syslog priorities (RFC 5424) of Python's levels; journald reads them as the ``<N>`` line prefix.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

# The salon the current trio task (or thread) works for. A ContextVar, not a global: each task sees
# its own value, inherited by the tasks and worker threads it starts.
_SALON_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("actor_admin_salon_id", default=None)


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a Python log level (a custom level takes the next standard one up)."""
    for level in sorted(_PRIORITY):
        if levelno <= level:
            return _PRIORITY[level]
    return _PRIORITY[logging.CRITICAL]


@contextmanager
def about_salon(salon_id: int) -> Iterator[None]:
    """Every record logged inside the block (and by tasks it starts) carries this ``salon_id``."""
    token = _SALON_ID.set(salon_id)
    try:
        yield
    finally:
        _SALON_ID.reset(token)


def for_salon(salon_id: int) -> None:
    """Like :func:`about_salon`, for the rest of the current task: call it first thing in a task
    that exists only to work for one salon (its context ends with the task)."""
    _SALON_ID.set(salon_id)


class SalonFilter(logging.Filter):
    """Adds the ``salon_id`` of :func:`about_salon` to records that carry none of their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "salon_id" not in record.__dict__:
            salon_id = _SALON_ID.get()
            if salon_id is not None:
                record.salon_id = salon_id
        return True


def _extras(record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            yield key, value


class JsonFormatter(logging.Formatter):
    """One JSON object per record; with ``journal`` the line starts with its ``<N>`` priority."""

    def __init__(self, node_id: str | None, *, journal: bool = False) -> None:
        super().__init__()
        self.node_id = node_id
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.node_id is not None:
            payload["node"] = self.node_id
        for key, value in _extras(record):
            payload[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        line = json.dumps(payload, ensure_ascii=False)
        return f"<{syslog_priority(record.levelno)}>{line}" if self.journal else line


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record))
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname:<7} {record.name}: "
        line += record.getMessage() + (f"  [{extras}]" if extras else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class StderrRecords(io.TextIOBase):
    """What replaces ``sys.stderr`` under JSON logs: each line written becomes an ``info`` record of
    :data:`CONSOLE_LOGGER` (a ``print`` of a multi-line text is one record).

    The log handler itself writes to the real stderr (:attr:`underlying`). Should logging report a
    failure of its own while a line is being turned into a record, that report goes to the real
    stderr as is, instead of back into logging.
    """

    def __init__(self, underlying: TextIO) -> None:
        super().__init__()
        self.underlying = underlying
        self._logger = logging.getLogger(CONSOLE_LOGGER)
        self._pending = ""
        self._lock = threading.RLock()
        self._inside = threading.local()

    def write(self, text: str) -> int:
        if getattr(self._inside, "active", False):
            return self.underlying.write(text)
        with self._lock:
            self._pending += text
            if not self._pending.endswith("\n"):
                return len(text)
            message, self._pending = self._pending[:-1], ""
        if message.strip():
            self._inside.active = True
            try:
                self._logger.info("%s", message)
            finally:
                self._inside.active = False
        return len(text)

    def flush(self) -> None:
        self.underlying.flush()

    def fileno(self) -> int:
        return self.underlying.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def stderr_is_journal(journal_stream: str | None, stream: TextIO) -> bool:
    """True when ``stream`` is the journal: systemd's ``$JOURNAL_STREAM`` (``device:inode``) names it."""
    if not journal_stream:
        return False
    try:
        device, inode = (int(part) for part in journal_stream.split(":"))
        stat = os.fstat(stream.fileno())
    except (ValueError, OSError, io.UnsupportedOperation):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


def configure(settings: Settings) -> None:
    """Set up logging for ``serve`` or ``dev`` from the settings (the composition root calls it once)."""
    _install(settings.log_format, settings.log_level, settings.node_id, settings.journal_stream)


def configure_before_settings(log_format: str | None, journal_stream: str | None) -> None:
    """Logging for the moments before the settings are known (``serve`` refusing to start): the
    format asked for, JSON unless it is ``console``; :func:`configure` replaces it once they are."""
    _install("console" if log_format == "console" else "json", "info", None, journal_stream)


def _install(log_format: str, level: str, node_id: str | None, journal_stream: str | None) -> None:
    # Always write to the real stderr, also when an earlier call already put StderrRecords in its place.
    stream = sys.stderr.underlying if isinstance(sys.stderr, StderrRecords) else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.addFilter(SalonFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # No line we write names a source line, thread or process: skip looking them up for every record
    # (a JSON line ≈ 45 → 30 µs of CPU; a thousand salons shown a QR at once log a line each,
    # docs/architecture.md#qr-latency).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # hypercorn's and quart's own chatter stays at warning unless asked for.
    for noisy in ("hypercorn.error", "hypercorn.access", "quart.app", "quart.serving", "asyncio", "trio-websocket"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    if log_format != "json":
        handler.setFormatter(ConsoleFormatter())
        sys.stderr = stream
        return
    handler.setFormatter(JsonFormatter(node_id, journal=stderr_is_journal(journal_stream, stream)))
    sys.stderr = StderrRecords(stream)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("actor_admin").critical("uncaught %s: %s", kind.__name__, error, exc_info=(kind, error, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)
