"""``WS /marketplace/ws`` (docs/websocket.md) with real websocket clients against a real node."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from trio_websocket import ConnectionRejected
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request, TextMessage

from actor_admin.api import _ws
from actor_admin.api._ws import client_ip, origin_allowed

from ._marketplace_helpers import (
    bad_tokens,
    close_code,
    frame_of,
    qr_shown,
    receive,
    viewer,
)
from .conftest import TestNode

ALLOWED = ("http://127.0.0.1:8000", "https://yclients.com", "https://*.yclients.com")


# -- authentication ------------------------------------------------------------------------------------


async def test_a_token_in_the_first_frame_opens_the_salons_view(node: TestNode) -> None:
    await node.register(701)

    async with viewer(node.ws_url, node.token(701)) as ws:
        assert await receive(ws) == {"type": "state", "state": "idle"}


@pytest.mark.parametrize("source", ["authorization", "x-auth-token", "query"])
async def test_a_token_from_the_handshake_needs_no_auth_frame(node: TestNode, source: str) -> None:
    await node.register(702)
    token = node.token(702)
    extra = {"Authorization": f"Bearer {token}"} if source == "authorization" else {}
    if source == "x-auth-token":
        extra = {"x-auth-token": token}

    async with viewer(node.ws_url, extra=extra, query=f"?token={token}" if source == "query" else "") as ws:
        assert (await receive(ws))["type"] == "state"


@pytest.mark.parametrize("kind", ["tampered", "expired", "alg_none", "wrong_audience", "wrong_secret", "garbage"])
async def test_a_bad_token_gets_unauthorized_and_close_4401(node: TestNode, kind: str) -> None:
    token = bad_tokens(703, node.token(703))[kind]

    async with viewer(node.ws_url, token) as ws:
        code, frames = await close_code(ws)

    assert code == 4401
    assert frames == [{"type": "error", "code": "unauthorized", "message": frames[0]["message"]}]
    assert not node.services.router.running(703) and not node.services.router.running(704)


@pytest.mark.parametrize(
    ("present", "good_later"),
    [
        ({"Authorization": "Bearer not-a-jwt"}, "query"),
        ({"Authorization": "Bearer not-a-jwt"}, "x-auth-token"),
        ({"x-auth-token": "not-a-jwt"}, "query"),
    ],
)
async def test_the_first_present_source_decides_even_when_a_later_one_is_good(
    node: TestNode, present: dict[str, str], good_later: str
) -> None:
    token = node.token(705)
    extra = dict(present)
    if good_later == "x-auth-token":
        extra["x-auth-token"] = token
    query = f"?token={token}" if good_later == "query" else ""

    async with viewer(node.ws_url, extra=extra, query=query) as ws:
        code, _ = await close_code(ws)

    assert code == 4401


async def test_a_good_header_wins_over_a_bad_query_token(node: TestNode) -> None:
    async with viewer(node.ws_url, extra={"x-auth-token": node.token(706)}, query="?token=bad") as ws:
        assert (await receive(ws))["type"] == "state"


async def test_a_first_frame_that_is_not_auth_is_unauthorized(node: TestNode) -> None:
    async with viewer(node.ws_url) as ws:
        await ws.send_message('{"type": "request_qr"}')
        code, frames = await close_code(ws)

    assert code == 4401 and frames[0]["code"] == "unauthorized"


async def test_no_auth_frame_in_time_is_unauthorized(node: TestNode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ws, "AUTH_TIMEOUT_S", 0.2)

    async with viewer(node.ws_url) as ws:
        code, frames = await close_code(ws)

    assert code == 4401 and frames[0]["code"] == "unauthorized"


async def test_re_auth_with_a_bad_token_closes_and_with_another_salon_is_refused(node: TestNode) -> None:
    async with viewer(node.ws_url, node.token(707)) as ws:
        await frame_of(ws, "state")
        await ws.send_message(json.dumps({"type": "auth", "token": node.token(708)}))
        assert (await frame_of(ws, "error"))["code"] == "wrong_salon"
        await ws.send_message(json.dumps({"type": "auth", "token": "bad"}))
        code, _ = await close_code(ws)

    assert code == 4401


# -- Origin and rate limit -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://yclients.com", True),
        ("https://n123.yclients.com", True),
        ("https://a.b.yclients.com", True),
        ("HTTPS://N1.YCLIENTS.COM", True),
        ("http://n1.yclients.com", False),
        ("https://yclients.com.evil.example", False),
        ("https://evilyclients.com", False),
        ("https://.yclients.com", False),
        ("https://x.yclients.com:8443", False),
        ("https://user@x.yclients.com", False),
        ("null", False),
        ("http://127.0.0.1:8000", True),
        ("http://127.0.0.1:8001", False),
    ],
)
def test_origin_rules(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin, ALLOWED) is allowed


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    trusted = _ws._networks(["10.0.0.0/8"])

    assert client_ip("203.0.113.9", "198.51.100.1", trusted) == "203.0.113.9"
    assert client_ip("10.0.0.2", "198.51.100.1", trusted) == "198.51.100.1"
    assert client_ip("10.0.0.2", "1.1.1.1, 198.51.100.1, 10.0.0.3", trusted) == "198.51.100.1"
    assert client_ip("10.0.0.2", "garbage", trusted) == "10.0.0.2"


@pytest.mark.parametrize("origin", [None, "https://n42.yclients.com", "PUBLIC_URL"])
async def test_allowed_or_missing_origins_connect(node: TestNode, origin: str | None) -> None:
    extra = {} if origin is None else {"Origin": node.base_url if origin == "PUBLIC_URL" else origin}

    async with viewer(node.ws_url, node.token(711), extra=extra) as ws:
        assert (await receive(ws))["type"] == "state"


async def test_a_foreign_origin_is_refused_at_the_handshake_with_403(node: TestNode) -> None:
    with pytest.raises(ConnectionRejected) as rejected:
        async with viewer(node.ws_url, extra={"Origin": "https://evil.example"}):
            pass

    assert rejected.value.status_code == 403
    assert node.services.counters.websockets_total == 0


async def test_the_eleventh_connection_in_a_minute_from_one_ip_is_refused_with_429(node: TestNode) -> None:
    for _ in range(10):
        async with viewer(node.ws_url, node.token(712)) as ws:
            await receive(ws)

    with pytest.raises(ConnectionRejected) as rejected:
        async with viewer(node.ws_url, node.token(712)):
            pass

    assert rejected.value.status_code == 429
    assert dict(rejected.value.headers)[b"retry-after"]


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_evade_the_limit(node: TestNode) -> None:
    for n in range(10):
        async with viewer(node.ws_url, extra={"X-Forwarded-For": f"198.51.100.{n}"}) as ws:
            await ws.send_message("{}")

    with pytest.raises(ConnectionRejected) as rejected:
        async with viewer(node.ws_url, extra={"X-Forwarded-For": "198.51.100.99"}):
            pass

    assert rejected.value.status_code == 429


# -- what viewers see ------------------------------------------------------------------------------------


async def test_the_qr_reaches_the_viewer_and_a_scan_makes_it_connected_with_digits_only(node: TestNode) -> None:
    await node.register(721)
    async with viewer(node.ws_url, node.token(721)) as ws:
        await frame_of(ws, "state", state="idle")
        await ws.send_message('{"type": "request_qr"}')
        qr = await frame_of(ws, "qr")
        assert qr["qr"] == node.core.qr_for(721) and qr["expires_in"] > 0 and qr["seq"] >= 1
        assert "svg" not in qr  # the page draws the code from the payload

        node.core.scan(qr["qr"], "+7 900 555-07-21")

        assert await frame_of(ws, "connected") == {"type": "connected", "phone": "79005550721"}


async def test_a_late_joiner_and_a_second_tab_see_the_same_qr_at_once(node: TestNode) -> None:
    await node.register(722)
    async with viewer(node.ws_url, node.token(722)) as first:
        await frame_of(first, "state")
        await first.send_message('{"type": "request_qr"}')
        shown = await frame_of(first, "qr")

        async with viewer(node.ws_url, node.token(722)) as late, viewer(node.ws_url, node.token(722)) as tab:
            late_state, late_qr = await receive(late), await receive(late)
            tab_state, tab_qr = await receive(tab), await receive(tab)

    assert late_state == tab_state == {"type": "state", "state": "qr"}
    assert late_qr["qr"] == tab_qr["qr"] == shown["qr"]
    assert late_qr == tab_qr and late_qr["seq"] == shown["seq"]


async def test_every_viewer_gets_every_update(node: TestNode) -> None:
    await node.register(723)
    async with viewer(node.ws_url, node.token(723)) as a, viewer(node.ws_url, node.token(723)) as b:
        await frame_of(a, "state")
        await frame_of(b, "state")
        await a.send_message('{"type": "request_qr"}')
        qr = await frame_of(a, "qr")
        assert (await frame_of(b, "qr"))["qr"] == qr["qr"]
        node.core.scan(qr["qr"], "79005550723")
        assert await frame_of(a, "connected") == await frame_of(b, "connected")


async def test_a_pairing_code_over_the_websocket_links_the_phone(node: TestNode) -> None:
    await node.register(724)
    async with viewer(node.ws_url, node.token(724)) as ws:
        await frame_of(ws, "state")
        await ws.send_message('{"type": "request_pairing_code", "phone": "8 900 555-07-24"}')
        code = await frame_of(ws, "pairing_code")
        assert code["expires_in"] > 0

        node.core.pair(code["code"])

        assert (await frame_of(ws, "connected"))["phone"] == "79005550724"


async def test_a_bad_phone_gets_an_invalid_phone_error_frame(node: TestNode) -> None:
    async with viewer(node.ws_url, node.token(725)) as ws:
        await frame_of(ws, "state")
        await ws.send_message('{"type": "request_pairing_code", "phone": "12"}')
        assert (await frame_of(ws, "error"))["code"] == "invalid_phone"


async def test_rest_and_the_websocket_refuse_a_bad_phone_in_the_same_words(node: TestNode) -> None:
    rest = await node.http.post("/marketplace/api/pairing-code", headers=node.bearer(728), json={"phone": "12"})
    async with viewer(node.ws_url, node.token(728)) as ws:
        await frame_of(ws, "state")
        await ws.send_message('{"type": "request_pairing_code", "phone": "12"}')
        frame = await frame_of(ws, "error")

    error = rest.json()["error"]
    assert (rest.status_code, error["code"]) == (422, "invalid_phone")
    assert (frame["code"], frame["message"]) == (error["code"], error["message"])


async def test_a_refused_command_comes_back_as_an_error_frame_with_its_code(node: TestNode) -> None:
    await node.register(726)
    node.core.scan(await qr_shown(node, 726), "79005550726")
    await node.services.registry.wait_state(726, "connected")

    async with viewer(node.ws_url, node.token(726)) as ws:
        await frame_of(ws, "state", state="connected")
        await ws.send_message('{"type": "request_pairing_code", "phone": "79005550726"}')
        assert (await frame_of(ws, "error"))["code"] == "already_linked"


async def test_an_uninstalled_salon_is_shown_as_such_and_no_session_starts(node: TestNode) -> None:
    await node.register(727)
    await node.services.store.companies.mark_uninstalled(727)

    async with viewer(node.ws_url, node.token(727)) as ws:
        assert await receive(ws) == {"type": "state", "state": "uninstalled"}
        assert (await receive(ws))["code"] == "uninstalled"
        await ws.send_message('{"type": "request_qr"}')
        assert (await frame_of(ws, "error"))["code"] == "uninstalled"

    assert not node.services.router.running(727)


# -- frames the client sends -------------------------------------------------------------------------------


async def test_ping_gets_pong(node: TestNode) -> None:
    async with viewer(node.ws_url, node.token(731)) as ws:
        await frame_of(ws, "state")
        await ws.send_message('{"type": "ping"}')
        assert await receive(ws) == {"type": "pong"}


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        ("not json", "malformed_frame"),
        ("[1, 2]", "malformed_frame"),
        ('{"no_type": 1}', "malformed_frame"),
        ('{"type": 5}', "malformed_frame"),
        ('{"type": "request_pairing_code", "phone": 7}', "malformed_frame"),
        ('{"type": "dance"}', "unknown_type"),
        (b"\x00\x01binary", "malformed_frame"),
    ],
)
async def test_a_malformed_or_unknown_frame_gets_an_error_and_the_connection_stays_open(
    node: TestNode, sent: str | bytes, code: str
) -> None:
    async with viewer(node.ws_url, node.token(732)) as ws:
        await frame_of(ws, "state")
        await ws.send_message(sent)
        assert (await receive(ws))["code"] == code
        await ws.send_message('{"type": "ping"}')
        assert await receive(ws) == {"type": "pong"}


@pytest.mark.parametrize(
    "sent",
    [
        '{"type": "ping", "x": ' + "[" * 4000 + "]" * 4000 + "}",
        "[" * 33 + "]" * 33,
        '{"type": "ping", "n": 1e400}',
        '{"type": "ping", "n": ' + "9" * 5000 + "}",
        '{"type": "ping", "n": NaN}',
        '{"type": "ping", "n": -Infinity}',
        '{"type": "\\ud800"}',
        '{"type": "request_pairing_code", "phone": "7900\\udfff1234567"}',
        '{"type": "ping", "type": "request_qr"}',
        "\ufeff" + '{"type": "ping"}',
    ],
    ids=["deep", "too_deep", "inf", "huge_int", "nan", "infinity", "lone_surrogate", "surrogate_field",
         "duplicate_key", "bom"],
)
async def test_a_pathological_frame_gets_malformed_frame_and_the_connection_stays_open(
    node: TestNode, sent: str
) -> None:
    # Valid in shape, pathological in content (docs/websocket.md#error-codes): never a crash, never a
    # duplicate "type" silently winning (that one would ask for a QR).
    async with viewer(node.ws_url, node.token(735)) as ws:
        await frame_of(ws, "state")
        await ws.send_message(sent)
        assert (await receive(ws))["code"] == "malformed_frame"
        await ws.send_message('{"type": "ping"}')
        assert await receive(ws) == {"type": "pong"}


async def test_a_frame_over_16_kib_closes_with_1009(node: TestNode) -> None:
    async with viewer(node.ws_url, node.token(733)) as ws:
        await frame_of(ws, "state")
        await ws.send_message(json.dumps({"type": "ping", "pad": "x" * 16 * 1024}))
        code, _ = await close_code(ws)

    assert code == 1009


async def test_a_flood_of_bad_frames_closes_with_1008(node: TestNode) -> None:
    async with viewer(node.ws_url, node.token(734)) as ws:
        await frame_of(ws, "state")
        for _ in range(_ws.MAX_BAD_FRAMES + 1):
            await ws.send_message("nonsense")
        code, frames = await close_code(ws)

    assert code == 1008
    assert len(frames) == _ws.MAX_BAD_FRAMES


async def test_a_flood_of_good_frames_closes_with_1008(node: TestNode) -> None:
    async with viewer(node.ws_url, node.token(735)) as ws:
        await frame_of(ws, "state")
        for _ in range(_ws.FLOOD_FRAMES + 1):
            await ws.send_message('{"type": "ping"}')
        code, frames = await close_code(ws)

    assert code == 1008
    assert frames == [{"type": "pong"}] * _ws.FLOOD_FRAMES


# -- resources ----------------------------------------------------------------------------------------------


async def test_a_slow_viewer_does_not_stall_another_viewer(node: TestNode) -> None:
    """The slow tab stops reading; the other keeps up with a stream of 20 MB while the slow one
    is cut off (dropped by the bus) instead of holding anybody back."""
    bus = node.services.bus
    big = "x" * 64 * 1024
    batch, count = 16, 320
    async with (
        viewer(node.ws_url, node.token(741), message_queue_size=1) as slow,
        viewer(node.ws_url, node.token(741)) as fast,
    ):
        await frame_of(slow, "state")
        await frame_of(fast, "state")
        seen: list[int] = []
        with trio.fail_after(20):
            for start in range(0, count, batch):
                for n in range(start, start + batch):
                    await bus.publish(741, {"type": "test", "n": n, "pad": big})
                seen += [(await frame_of(fast, "test"))["n"] for _ in range(batch)]

    assert seen == list(range(count))
    assert bus.statistics().subscribers_dropped_total == 1


@asynccontextmanager
async def silent_viewer(node: TestNode, salon_id: int) -> AsyncIterator[trio.SocketStream]:
    """A raw websocket client with a tiny receive buffer that reads the handshake and the salon's
    state frame, then never reads again: a tab frozen in the background, a phone gone dark."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", node.settings.port))
    stream = trio.SocketStream(sock)
    client = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(client.send(Request(host=f"127.0.0.1:{node.settings.port}", target=_ws.WS_PATH)))
    state_seen = False
    with trio.fail_after(5):
        while not state_seen:
            client.receive_data(await stream.receive_some(65536))
            for event in client.events():
                if isinstance(event, AcceptConnection):
                    auth = json.dumps({"type": "auth", "token": node.token(salon_id)})
                    await stream.send_all(client.send(Message(data=auth)))
                elif isinstance(event, TextMessage):
                    state_seen = json.loads(event.data)["type"] == "state"
    async with stream:
        yield stream


async def test_a_viewer_that_never_reads_is_cut_off_while_the_others_get_every_frame(
    node: TestNode, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the kernel's buffers toward a viewer that stopped reading are full, the write under
    hypercorn does not end by itself; the node must still let that viewer go within about
    SEND_TIMEOUT_S (docs/websocket.md#limits), and not hold up the salon's other viewers."""
    monkeypatch.setattr(_ws, "SEND_TIMEOUT_S", 0.5)
    monkeypatch.setattr(_ws, "CLOSE_TIMEOUT_S", 0.5)
    bus, counters = node.services.bus, node.services.counters
    big = "x" * 64 * 1024
    sent: list[int] = []
    seen: list[int] = []
    async with viewer(node.ws_url, node.token(744)) as fast, silent_viewer(node, 744) as silent:
        await frame_of(fast, "state")
        assert counters.websockets_open == 2
        # Enough frames to fill the node's send buffer (up to tcp_wmem's 4 MiB) many times over,
        # paced by the reading viewer: a real socket's real time, bounded.
        with trio.fail_after(15):
            for n in range(1000):
                await bus.publish(744, {"type": "test", "n": n, "pad": big})
                sent.append(n)
                seen.append((await frame_of(fast, "test"))["n"])
                if counters.websockets_open == 1 and bus.statistics().subscribers == 1:
                    break
        assert counters.websockets_open == 1  # the silent viewer's handler ended: task, subscription, counter
        assert bus.statistics().subscribers == 1
        # The node let go of the socket too: what it had queued drains, then the connection ends.
        with trio.fail_after(10):
            while await silent.receive_some(1 << 20):
                pass
        await bus.publish(744, {"type": "test", "n": len(sent), "pad": ""})
        sent.append(len(sent))
        seen.append((await frame_of(fast, "test"))["n"])

    assert seen == sent
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_viewer_that_fell_behind_but_reads_again_gets_1013_after_the_frames_it_was_sent(
    node: TestNode,
) -> None:
    """Cut off by the bus while its socket was full, a viewer that reads again in time gets the
    close frame 1013, not an aborted connection (docs/websocket.md#limits)."""
    bus = node.services.bus
    big = "x" * 64 * 1024
    async with viewer(node.ws_url, node.token(745), message_queue_size=1) as lagging:
        await frame_of(lagging, "state")
        with trio.fail_after(10):
            n = 0
            while not bus.statistics().subscribers_dropped_total:
                await bus.publish(745, {"type": "test", "n": n, "pad": big})
                n += 1
                await trio.lowlevel.checkpoint()  # let the forwarder write until the socket is full
        code, frames = await close_code(lagging, within=10)

    assert code == 1013
    assert [frame["n"] for frame in frames] == list(range(len(frames)))


async def test_closing_the_page_releases_the_subscription_and_the_counter_and_leaves_the_session(
    node: TestNode,
) -> None:
    await node.register(742)
    async with viewer(node.ws_url, node.token(742)) as ws:
        await frame_of(ws, "state")
        await ws.send_message('{"type": "request_qr"}')
        await frame_of(ws, "qr")
        assert node.services.counters.websockets_open == 1
        assert node.services.bus.statistics().subscribers == 1

    with trio.fail_after(5):
        # Nothing signals the end of a cancelled handler's cleanup; poll the two figures briefly.
        while node.services.counters.websockets_open or node.services.bus.statistics().subscribers:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert node.services.counters.websockets_total == 1
    assert node.services.registry.get(742).state == "qr"  # type: ignore[union-attr]


async def test_shutdown_closes_viewers_with_going_away_and_refuses_new_ones(node: TestNode) -> None:
    async with viewer(node.ws_url, node.token(743)) as ws:
        await frame_of(ws, "state")
        node.services.shutting_down.set()
        code, _ = await close_code(ws)

    assert code == 1001
    with pytest.raises(ConnectionRejected) as rejected:
        async with viewer(node.ws_url, node.token(743)):
            pass
    assert rejected.value.status_code == 503


async def test_the_wait_from_request_qr_to_the_qr_is_measured(node: TestNode) -> None:
    await node.register(744)
    await qr_shown(node, 744)

    metrics = (await node.http.get("/metrics")).text

    assert "actor_admin_qr_latency_seconds_count 1.0" in metrics


def test_a_frame_is_encoded_once_for_every_viewer_that_sends_it() -> None:
    from actor_admin.api._ws import FrameEncoder

    encoder = FrameEncoder()
    frame = {"type": "qr", "qr": "2@abc", "seq": 1, "text": "Здравствуйте"}
    first = encoder.encode(frame)
    assert encoder.encode(frame) is first  # the same object: reused, not re-encoded
    assert json.loads(first) == frame and "Здравствуйте" in first
    other = {"type": "qr", "qr": "2@abc", "seq": 2}
    assert json.loads(encoder.encode(other)) == other


def test_a_frame_is_encoded_once_even_when_two_salons_fan_outs_interleave() -> None:
    from actor_admin.api._ws import FrameEncoder

    encoder = FrameEncoder()
    frames = [{"type": "qr", "qr": f"2@{salon}", "seq": 1} for salon in range(3)]
    texts = [encoder.encode(frame) for frame in frames]
    for _ in range(3):  # their viewers' forwarders take turns
        assert [encoder.encode(frame) for frame in frames] == texts
        assert all(encoder.encode(frame) is text for frame, text in zip(frames, texts, strict=True))


async def test_an_open_connection_ends_when_its_token_expires(node: TestNode) -> None:
    import time

    await node.register(799)
    token = node.token(799, now=time.time() - 3600 + 1.5)  # valid for another 1.5 s
    async with viewer(node.ws_url, token) as ws:
        assert (await receive(ws))["type"] == "state"
        code, frames = await close_code(ws, within=10)
    assert code == 4401
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "token_expired"


async def test_a_published_frame_is_encoded_once_for_all_of_a_salons_viewers(
    node: TestNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[object] = []
    real_dumps = json.dumps

    def counting_dumps(obj: object, *args: object, **kwargs: object) -> str:
        if isinstance(obj, dict) and obj.get("seq") == 4242:
            encoded.append(obj)
        return real_dumps(obj, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_ws.json, "dumps", counting_dumps)
    await node.register(790)
    async with viewer(node.ws_url, node.token(790)) as first, viewer(node.ws_url, node.token(790)) as second:
        await frame_of(first, "state")
        await frame_of(second, "state")
        frame = {"type": "qr", "qr": "2@x", "expires_in": 20, "seq": 4242}
        await node.services.bus.publish(790, frame)
        assert (await frame_of(first, "qr"))["seq"] == 4242
        assert (await frame_of(second, "qr"))["seq"] == 4242
    assert len(encoded) == 1
