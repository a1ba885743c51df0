"""A TCP proxy in front of PostgreSQL that a test can black-hole: while it does, every byte is held (not
forwarded, not refused) and every socket stays open — a primary that vanished without a FIN or RST, as
after a network partition or a dead VM. It also lets a test pick a port before anything listens on it.

Runs in the test's trio loop; the upstream is the test server, over TCP or its unix socket.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

import attrs
import trio


def _upstream(dsn: str) -> tuple[str, int, str | None]:
    """``(host, port, unix socket path or None)`` of a DSN, as asyncpg reads it."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    port = int(query.get("port", [str(parts.port or 5432)])[0])
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    if host.startswith("/"):
        return host, port, f"{host}/.s.PGSQL.{port}"
    return host, port, None


@attrs.define
class PgProxy:
    upstream_dsn: str
    port: int
    forwarding: bool = True
    connections: int = 0
    _resumed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def dsn(self) -> str:
        """The upstream DSN with its server replaced by this proxy (TCP on 127.0.0.1:port)."""
        parts = urlsplit(self.upstream_dsn)
        user = parts.username or "postgres"
        auth = user if parts.password is None else f"{user}:{parts.password}"
        return urlunsplit(("postgresql", f"{auth}@127.0.0.1:{self.port}", parts.path, "", ""))

    def black_hole(self) -> None:
        """Stop forwarding from now on; sockets stay open and bytes are held."""
        if self.forwarding:
            self.forwarding = False
            self._resumed = trio.Event()

    def resume(self) -> None:
        self.forwarding = True
        self._resumed.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _connect(self) -> trio.SocketStream:
        host, port, unix = _upstream(self.upstream_dsn)
        if unix is not None:
            return await trio.open_unix_socket(unix)
        return await trio.open_tcp_stream(host, port)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        try:
            upstream = await self._connect()
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
            nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope) -> None:
        try:
            while data := await source.receive_some(65536):
                while not self.forwarding:
                    await self._resumed.wait()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()  # one side is gone: close both, as a real server would
