"""Settings: one typed object built once at start-up and passed down.

No other module reads ``os.environ``: the CLI calls :func:`load_settings` with the
environment (and an optional ``.env`` file) and hands the result to whatever it starts.
"""

from __future__ import annotations

import base64
import binascii
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import attrs

from actor_admin.cluster import OwnershipTimings
from actor_admin.runtime import SupervisorPolicy
from actor_admin.store import DbLimits, RetentionPolicy

Mode = Literal["dev", "serve"]
T = TypeVar("T")

DEFAULT_YCLIENTS_API_URL = "https://api.yclients.com"
DEFAULT_DEV_PUBLIC_URL = "http://127.0.0.1:8000"
YCLIENTS_ORIGINS = ("https://yclients.com", "https://*.yclients.com")

# The hint printed next to each missing or invalid secret: how an operator makes one.
HOW_TO_MAKE = {
    "JWT_SECRET": "openssl rand -base64 32",
    "ADMIN_TOKEN": "openssl rand -hex 32",
    "CREDENTIALS_KEY": "openssl rand -base64 32",
    "YCLIENTS_PARTNER_TOKEN": "copy it from the YClients marketplace partner cabinet",
    "YCLIENTS_APP_ID": "copy the application id from the YClients marketplace partner cabinet",
    "DATABASE_URL": "e.g. postgresql://actor_admin:PASSWORD@127.0.0.1:5432/actor_admin",
    "REDIS_URL": "e.g. redis://127.0.0.1:6379/0",
    "PUBLIC_URL": "the external https:// address salons reach, e.g. https://wa.example.com",
}


class SettingsError(Exception):
    """Raised with every problem found, so an operator fixes them all in one go."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))


_TIMINGS = OwnershipTimings()
_RETENTION = RetentionPolicy()
#: The collector's thresholds (generation 0, 1, 2) a node runs with: far fewer young collections than
#: Python's (700, 10, 10), so the objects of frames in flight are rarely promoted, and the full
#: collections a node's many long-lived viewers make long come rarely (docs/websocket.md#garbage-collection).
DEFAULT_GC_THRESHOLDS = (50_000, 20, 100)
#: A century: anything longer is a typo (0 keeps rows forever).
MAX_RETENTION_DAYS = 36500


@attrs.frozen
class ClusterSettings:
    """The ownership protocol's numbers (docs/cluster.md, docs/commands-and-settings.md).

    Attributes:
        ttl_s: ``CLUSTER_TTL`` — a node silent this long is dead and its salons move.
        heartbeat_interval_s: ``CLUSTER_HEARTBEAT_INTERVAL`` — how often a node renews (≤ TTL·0.9/3).
        clock_margin: the share of the TTL a node gives up early on its own lease.
        forget_after_s: how long a dead node stays listed.
        handovers_per_round: salons handed over per planning round.
        restore_per_second: actors a node starts a second (restores, takeovers, hand-overs).
    """

    ttl_s: float = _TIMINGS.ttl_s
    heartbeat_interval_s: float = _TIMINGS.heartbeat_interval_s
    clock_margin: float = _TIMINGS.clock_margin
    forget_after_s: float = _TIMINGS.forget_after_s
    handovers_per_round: int = _TIMINGS.handovers_per_round
    restore_per_second: float = 20.0

    def timings(self) -> OwnershipTimings:
        """The protocol's :class:`OwnershipTimings` (raises ValueError for an inconsistent set)."""
        return OwnershipTimings(
            ttl_s=self.ttl_s, heartbeat_interval_s=self.heartbeat_interval_s, clock_margin=self.clock_margin,
            forget_after_s=self.forget_after_s, handovers_per_round=self.handovers_per_round,
        )


@attrs.frozen
class Settings:
    mode: Mode
    database_url: str | None
    redis_url: str | None
    jwt_secret: str
    admin_token: str
    credentials_key: bytes
    yclients_partner_token: str
    yclients_app_id: int
    yclients_api_url: str
    public_url: str
    whatsapp_transport: Literal["neonize", "simulator"]
    whatsapp_simulator_url: str | None
    allowed_origins: tuple[str, ...]
    host: str
    port: int
    data_dir: Path
    node_id: str
    log_level: str
    log_format: Literal["json", "console"]
    shutdown_deadline_s: float = 10.0
    trusted_proxies: tuple[str, ...] = ()
    pg_pool_size: int = 10
    #: ``PG_CONNECT_TIMEOUT`` / ``PG_COMMAND_TIMEOUT``: the bounds of every database call (docs/data.md#failover).
    pg_connect_timeout_s: float = 5.0
    pg_command_timeout_s: float = 10.0
    #: ``GC_THRESHOLDS``: the garbage collector's thresholds, set by the node at start-up
    #: (docs/websocket.md#garbage-collection).
    gc_thresholds: tuple[int, int, int] = DEFAULT_GC_THRESHOLDS
    #: When the node collects the garbage it froze with its salons' actors: once the actor runs ended
    #: since its last full collection reach this share of the actors running (not an environment
    #: setting; docs/capacity.md#garbage-collection). A quarter, as Python's own rule for full collections.
    gc_refreeze_share: float = 0.25
    #: The company actors' supervisor; its defaults are documented on :class:`SupervisorPolicy`.
    supervision: SupervisorPolicy = attrs.field(factory=SupervisorPolicy)
    #: The ownership protocol's numbers, shared by every node of a cluster.
    cluster: ClusterSettings = attrs.field(factory=ClusterSettings)
    #: How long messages, events and finished outbox rows are kept (docs/data.md#retention).
    retention: RetentionPolicy = attrs.field(factory=RetentionPolicy)
    #: systemd's ``$JOURNAL_STREAM`` (not a setting to make: it says whether stderr is the journal).
    journal_stream: str | None = None
    #: A RAM-backed directory for what must never reach a disk (the WhatsApp client's working
    #: stores): systemd's ``$RUNTIME_DIRECTORY``, else ``$XDG_RUNTIME_DIR/actor-admin``; None: neither.
    runtime_dir: Path | None = None

    def pg_limits(self) -> DbLimits:
        return DbLimits(connect_timeout_s=self.pg_connect_timeout_s, command_timeout_s=self.pg_command_timeout_s)

    def redacted(self) -> dict[str, object]:
        """A view safe for logs and /status: secrets replaced by a marker."""
        secret = {"jwt_secret", "admin_token", "credentials_key", "yclients_partner_token"}
        out: dict[str, object] = {}
        for field in attrs.fields(Settings):
            value = getattr(self, field.name)
            if field.name in secret:
                out[field.name] = "***" if value else ""
            elif field.name in {"database_url", "redis_url"} and value:
                out[field.name] = redact_url(value)
            elif isinstance(value, Path):
                out[field.name] = str(value)
            else:
                out[field.name] = value
        return out


def _runtime_dir(environ: Mapping[str, str]) -> Path | None:
    """systemd's ``$RUNTIME_DIRECTORY`` (its first entry), else ``$XDG_RUNTIME_DIR/actor-admin``."""
    runtime = (environ.get("RUNTIME_DIRECTORY") or "").split(":")[0]
    if runtime:
        return Path(runtime)
    xdg = environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "actor-admin" if xdg else None


def redact_url(url: str) -> str:
    """Hide the password of a DSN: ``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a simple ``KEY=value`` file (comments, blank lines, optional quotes, ``export``)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _gc_thresholds(text: str) -> tuple[int, int, int]:
    """``"50000,20,100"`` → (50000, 20, 100); ValueError unless three whole numbers ≥ 1."""
    parts = [int(part) for part in text.split(",")]
    if len(parts) != 3 or min(parts) < 1:
        raise ValueError(text)
    return parts[0], parts[1], parts[2]


def load_settings(
    mode: Mode,
    environ: Mapping[str, str],
    *,
    dotenv: Path | None = Path(".env"),
    generated: Mapping[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` for ``mode``.

    Precedence, highest first: ``environ``, the ``.env`` file, ``generated`` (dev secrets kept in
    ``DATA_DIR/dev.env``), built-in defaults. Raises :class:`SettingsError` listing every problem.
    """
    env: dict[str, str] = {}
    env.update(generated or {})
    if dotenv is not None:
        env.update(read_dotenv(dotenv))
    env.update({k: v for k, v in environ.items() if v != ""})
    problems: list[str] = []

    def required(name: str) -> str:
        value = env.get(name, "")
        if not value:
            problems.append(f"{name} is missing — {HOW_TO_MAKE.get(name, 'set it')}")
        return value

    def parsed(name: str, default: T, convert: Callable[[str], T], what: str) -> T:
        raw = env.get(name)
        if raw is None:
            return default
        try:
            return convert(raw)
        except ValueError:
            problems.append(f"{name} must be {what}, got {raw!r}")
            return default

    def integer(name: str, default: int) -> int:
        return parsed(name, default, int, "a whole number")

    def number(name: str, default: float) -> float:
        return parsed(name, default, float, "a number")

    def positive(name: str, default: float) -> float:
        value = number(name, default)
        if not 0 < value < float("inf"):
            problems.append(f"{name} must be a number of seconds above 0, got {env.get(name)!r}")
            return default
        return value

    serve = mode == "serve"
    database_url = required("DATABASE_URL") if serve else env.get("DATABASE_URL")
    redis_url = required("REDIS_URL") if serve else env.get("REDIS_URL")
    jwt_secret = required("JWT_SECRET")
    if jwt_secret and len(jwt_secret.encode()) < 32:
        problems.append(f"JWT_SECRET must be at least 32 bytes — {HOW_TO_MAKE['JWT_SECRET']}")
    admin_token = required("ADMIN_TOKEN")
    if admin_token and len(admin_token) < 16:
        problems.append(f"ADMIN_TOKEN must be at least 16 characters — {HOW_TO_MAKE['ADMIN_TOKEN']}")
    credentials_key = b""
    raw_key = required("CREDENTIALS_KEY")
    if raw_key:
        try:
            credentials_key = base64.b64decode(raw_key, validate=True)
        except (binascii.Error, ValueError):
            credentials_key = b""
        if len(credentials_key) != 32:
            problems.append(f"CREDENTIALS_KEY must be base64 of exactly 32 bytes — {HOW_TO_MAKE['CREDENTIALS_KEY']}")
    partner_token = required("YCLIENTS_PARTNER_TOKEN")
    if serve:
        required("YCLIENTS_APP_ID")
    app_id = integer("YCLIENTS_APP_ID", 1)

    host = env.get("HOST", "127.0.0.1")
    port = integer("PORT", 8000)
    if not 0 <= port <= 65535:
        problems.append(f"PORT must be between 0 and 65535, got {port}")
    if serve:
        public_url = required("PUBLIC_URL").rstrip("/")
    else:
        public_url = env.get("PUBLIC_URL", f"http://{host}:{port}").rstrip("/")
    if public_url and urlsplit(public_url).scheme not in {"http", "https"}:
        problems.append(f"PUBLIC_URL must start with http:// or https://, got {public_url!r}")

    default_api = DEFAULT_YCLIENTS_API_URL if serve else public_url + "/_dev/yclients/api"
    transport = env.get("WHATSAPP_TRANSPORT", "neonize" if serve else "simulator")
    if transport not in {"neonize", "simulator"}:
        problems.append(f"WHATSAPP_TRANSPORT must be 'neonize' or 'simulator', got {transport!r}")
        transport = "simulator"
    simulator_url = env.get("WHATSAPP_SIMULATOR_URL") or None
    if serve and transport == "simulator" and simulator_url is None:
        # An in-process simulator in serve has no control API (nothing could link), and it answers
        # 401 to every stored real credential: only an explicit standalone simulator is a choice.
        problems.append(
            "WHATSAPP_TRANSPORT=simulator needs WHATSAPP_SIMULATOR_URL in serve (the address of a standalone "
            "`actor-admin simulator`, for test clusters); for real WhatsApp unset WHATSAPP_TRANSPORT or set it "
            "to neonize"
        )
    log_format = env.get("LOG_FORMAT", "json" if serve else "console")
    if log_format not in {"json", "console"}:
        problems.append(f"LOG_FORMAT must be 'json' or 'console', got {log_format!r}")
        log_format = "console"
    log_level = env.get("LOG_LEVEL", "info").lower()
    if log_level not in {"debug", "info", "warning", "error", "critical"}:
        problems.append(f"LOG_LEVEL must be one of debug, info, warning, error, critical; got {log_level!r}")
        log_level = "info"
    origins_raw = env.get("ALLOWED_ORIGINS")
    if origins_raw:
        origins = tuple(o.strip().rstrip("/") for o in origins_raw.split(",") if o.strip())
    else:
        origins = (public_url, *YCLIENTS_ORIGINS)
    proxies = tuple(p.strip() for p in env.get("TRUSTED_PROXIES", "").split(",") if p.strip())

    ttl = number("CLUSTER_TTL", _TIMINGS.ttl_s)
    cluster = ClusterSettings(
        ttl_s=ttl,
        heartbeat_interval_s=number("CLUSTER_HEARTBEAT_INTERVAL", ttl / 10),
        forget_after_s=max(_TIMINGS.forget_after_s, ttl),
    )
    try:
        cluster.timings()
    except ValueError as exc:
        problems.append(f"CLUSTER_TTL / CLUSTER_HEARTBEAT_INTERVAL: {exc}")
        cluster = ClusterSettings()

    def retention_days(name: str, default: int) -> int:
        days = integer(name, default)
        if not 0 <= days <= MAX_RETENTION_DAYS:
            problems.append(f"{name} must be days from 1 to {MAX_RETENTION_DAYS}, or 0 to keep rows forever")
            return default
        return days

    gc_thresholds = parsed(
        "GC_THRESHOLDS", DEFAULT_GC_THRESHOLDS, _gc_thresholds, "three whole numbers ≥ 1, e.g. 50000,20,100"
    )

    retention = RetentionPolicy(
        messages_days=retention_days("MESSAGES_RETENTION_DAYS", _RETENTION.messages_days),
        events_days=retention_days("EVENTS_RETENTION_DAYS", _RETENTION.events_days),
        outbox_days=retention_days("OUTBOX_RETENTION_DAYS", _RETENTION.outbox_days),
    )

    settings = Settings(
        mode=mode,
        database_url=database_url or None,
        redis_url=redis_url or None,
        jwt_secret=jwt_secret,
        admin_token=admin_token,
        credentials_key=credentials_key,
        yclients_partner_token=partner_token,
        yclients_app_id=app_id,
        yclients_api_url=env.get("YCLIENTS_API_URL", default_api).rstrip("/"),
        public_url=public_url,
        whatsapp_transport=transport,  # type: ignore[arg-type]
        whatsapp_simulator_url=simulator_url,
        allowed_origins=origins,
        host=host,
        port=port,
        data_dir=Path(env.get("DATA_DIR", "./.data")),
        node_id=env.get("NODE_ID") or f"{socket.gethostname()}:{os.getpid()}",
        log_level=log_level,
        log_format=log_format,  # type: ignore[arg-type]
        shutdown_deadline_s=number("SHUTDOWN_DEADLINE", 10.0),
        trusted_proxies=proxies,
        pg_pool_size=integer("PG_POOL_SIZE", 10),
        pg_connect_timeout_s=positive("PG_CONNECT_TIMEOUT", 5.0),
        pg_command_timeout_s=positive("PG_COMMAND_TIMEOUT", 10.0),
        gc_thresholds=gc_thresholds,
        journal_stream=environ.get("JOURNAL_STREAM") or None,
        runtime_dir=_runtime_dir(environ),
        cluster=cluster,
        retention=retention,
    )
    if problems:
        raise SettingsError(problems)
    return settings
