"""The viewers of the websocket benchmark, run as their own process by ``bench_ws``.

``python -m tests.bench._ws_clients KIND URL FIRST COUNT COMPANIES`` opens ``COUNT`` websockets to
``URL`` (viewer ``i`` of ``FIRST..FIRST+COUNT-1`` watches company ``i % COMPANIES + 1``; for
``KIND=ours`` with an onboarding token in ``Authorization``, for ``bare`` with ``?salon=``, for
``socketio`` with ``&salon=`` on an Engine.IO v4 websocket URL, speaking just enough of Engine.IO and
Socket.IO: the namespace connect, answering pings, ``42[event, frame]`` messages), waits for each
one's first frame (the snapshot, so its subscription exists), then prints ``ready OK FAILED``. From
then on it records, for every frame carrying ``sent_at``, ``time.time() - sent_at`` (server and
clients share the machine's clock). A line ``stop`` on stdin makes it print the ``(seq, latency
ms)`` pairs as JSON (``{"samples": [...], "closed": n, "bytes_ready": b, "bytes_total": b}``: the
bytes all its viewers received from the TCP sockets — HTTP upgrade, websocket framing, keep-alive
pings included — once ready and in all) and exit.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import trio
import trio_websocket
from trio_websocket import WebSocketConnection

CONNECT_AT_ONCE = 64
CONNECT_TIMEOUT_S = 60.0


class CountingStream(trio.abc.Stream):
    """A TCP stream that adds the bytes it receives to a shared counter."""

    def __init__(self, stream: trio.SocketStream, counter: list[int]) -> None:
        self.stream = stream
        self.socket = stream.socket
        self.counter = counter

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.stream.receive_some(max_bytes)
        self.counter[0] += len(data)
        return bytes(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _open(
    nursery: trio.Nursery, url: str, headers: list[tuple[bytes, bytes]], counter: list[int]
) -> WebSocketConnection:
    """A websocket to ``ws://host:port/path?query`` over a byte-counting stream."""
    rest = url.removeprefix("ws://")
    netloc, _, resource = rest.partition("/")
    host, _, port = netloc.partition(":")
    stream = CountingStream(await trio.open_tcp_stream(host, int(port)), counter)
    return await trio_websocket.wrap_client_stream(
        nursery,
        stream,  # type: ignore[arg-type]  # any trio Stream works
        netloc,
        "/" + resource,
        extra_headers=headers,
        message_queue_size=64,
    )


async def _socketio_handshake(connection: WebSocketConnection) -> None:
    """Engine.IO's open packet, then connect to the main namespace and wait for its ack."""
    opened = await connection.get_message()
    if not str(opened).startswith("0"):
        raise trio_websocket.HandshakeError(f"not an Engine.IO open packet: {opened!r}")
    await connection.send_message("40")
    while not str(await connection.get_message()).startswith("40"):
        pass


def _number(text: str, key: str) -> float | None:
    """The number under ``key`` in a frame, read from its tail without decoding the whole JSON:
    ``seq`` and ``sent_at`` are the last keys of a bench frame."""
    at = text.rfind(f'"{key}":', len(text) - 200)
    if at < 0:
        return None
    start = stop = at + len(key) + 3
    while stop < len(text) and text[stop] not in ",}":
        stop += 1
    return float(text[start:stop])


async def main(kind: str, url: str, first: int, count: int, companies: int) -> None:
    latencies: list[tuple[int, float]] = []
    state = {"ok": 0, "failed": 0, "closed": 0}
    received = [0]
    ready = trio.Event()
    done = 0
    gate = trio.Semaphore(CONNECT_AT_ONCE)
    secret = None
    if kind == "ours":
        from actor_admin.api._tokens import mint_onboarding_token
        from tests.api.conftest import JWT_SECRET

        secret = JWT_SECRET

    async def viewer(index: int) -> None:
        nonlocal done
        salon_id = index % companies + 1
        headers: list[tuple[bytes, bytes]] = []
        target = url
        if secret is not None:
            token = mint_onboarding_token(secret, salon_id, now=time.time())
            headers.append((b"Authorization", f"Bearer {token}".encode()))
        else:
            target = f"{url}{'&' if '?' in url else '?'}salon={salon_id}"
        try:
            async with gate:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    connection = await _open(nursery, target, headers, received)
                    if kind == "socketio":
                        await _socketio_handshake(connection)
                    await connection.get_message()
        except (OSError, trio.TooSlowError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed):
            state["failed"] += 1
            connection = None
        else:
            state["ok"] += 1
        done += 1
        if done == count:
            ready.set()
        if connection is None:
            return
        try:
            while True:
                text = await connection.get_message()
                if text == "2":  # an Engine.IO ping
                    await connection.send_message("3")
                elif isinstance(text, str):
                    sent = _number(text, "sent_at")
                    if sent is not None:
                        latencies.append((int(_number(text, "seq") or 0), time.time() - sent))
        except trio_websocket.ConnectionClosed:
            state["closed"] += 1

    async with trio.open_nursery() as nursery:
        for index in range(first, first + count):
            nursery.start_soon(viewer, index)
        await ready.wait()
        bytes_ready = received[0]
        print(f"ready {state['ok']} {state['failed']}", flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        assert line.strip() in ("stop", "")
        sys.stdout.write(
            json.dumps(
                {
                    "samples": [(seq, x * 1000) for seq, x in latencies],
                    "closed": state["closed"],
                    "bytes_ready": bytes_ready,
                    "bytes_total": received[0],
                }
            )
            + "\n"
        )
        sys.stdout.flush()
        os._exit(0)  # no closing handshakes: the server side is torn down by the bench anyway


if __name__ == "__main__":
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kind, url, first, count, companies = sys.argv[1:6]
    trio.run(main, kind, url, int(first), int(count), int(companies))
