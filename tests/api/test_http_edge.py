"""The HTTP edge over a real socket: body limit without hanging keep-alive connections."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import request
from quart_trio import QuartTrio

from actor_admin.api._http import MAX_BODY, BodyLimit


def echo_app() -> QuartTrio:
    app = QuartTrio("edge")

    @app.post("/echo")
    async def echo() -> dict[str, int]:
        return {"length": len(await request.get_data())}

    app.asgi_app = BodyLimit(app.asgi_app)  # type: ignore[method-assign]
    return app


@pytest.fixture
async def port(nursery: trio.Nursery) -> AsyncIterator[int]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds = await nursery.start(serve, echo_app(), config)
    yield int(binds[0].rsplit(":", 1)[1])
    nursery.cancel_scope.cancel()


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(65536)
        assert chunk, "connection closed before a response"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        assert chunk
        rest += chunk
    buffer[:] = rest[length:]
    return status, headers, rest[:length]


def post(body: bytes) -> bytes:
    return (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def test_small_body_reaches_the_app(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buf = bytearray()
    await stream.send_all(post(b"x" * 100))
    status, _, body = await read_response(stream, buf)
    assert status == 200 and json.loads(body) == {"length": 100}


async def test_oversized_body_gets_413_and_the_keep_alive_connection_still_works(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buf = bytearray()
    with trio.fail_after(10):
        await stream.send_all(post(b"x" * (MAX_BODY + 1)))
        status, headers, body = await read_response(stream, buf)
        assert status == 413
        assert json.loads(body)["error"]["code"] == "payload_too_large"
        assert headers.get("connection") != "close"
        # The second request on the same connection must be answered, not hang.
        await stream.send_all(post(b"y" * 10))
        status, _, body = await read_response(stream, buf)
    assert status == 200 and json.loads(body) == {"length": 10}


async def test_body_at_exactly_the_limit_is_accepted(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buf = bytearray()
    await stream.send_all(post(b"z" * MAX_BODY))
    status, _, body = await read_response(stream, buf)
    assert status == 200 and json.loads(body) == {"length": MAX_BODY}


async def test_non_numeric_content_length_is_a_400(port: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buf = bytearray()
    await stream.send_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n")
    with trio.fail_after(10):
        status, _, _ = await read_response(stream, buf)
    assert status == 400
