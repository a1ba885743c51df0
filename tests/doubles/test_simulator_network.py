"""The networked simulator over real loopback sockets: control API, link protocol, network failures."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import attrs
import httpx
import pytest
import trio
from quart_trio import QuartTrio
from trio_websocket import ConnectionClosed, open_websocket_url

from actor_admin.doubles.whatsapp import SimulatorCore, serve_simulator, simulator_blueprint
from actor_admin.session import (
    LOGGED_OUT,
    NETWORK_ERROR,
    RESTART_REQUIRED,
    Connected,
    CredsUpdated,
    Disconnected,
    KeepaliveRestored,
    KeepaliveTimeout,
    MessageReceived,
    PairingCodeIssued,
    QrIssued,
    TransportEvent,
)
from actor_admin.whatsapp import Link, LinkSpec, NetworkSimulatorTransport, TransportError, link_url

PHONE = "79001234567"
PEER = "79007654321"
SALON = 7
WAIT_S = 5.0  # a bound on real waits; every step here takes milliseconds on loopback


class Recorder:
    """A ``deliver`` callback whose events can be awaited."""

    def __init__(self) -> None:
        self.events: list[TransportEvent] = []
        self._changed = trio.Event()

    def __call__(self, event: TransportEvent) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()

    async def next_of(self, kind: type, *, after: int = 0) -> TransportEvent:
        with trio.fail_after(WAIT_S):
            while True:
                found = [e for e in self.events[after:] if isinstance(e, kind)]
                if found:
                    return found[0]
                await self._changed.wait()


@attrs.frozen
class Simulator:
    core: SimulatorCore
    base_url: str
    http: httpx.AsyncClient
    nursery: trio.Nursery

    def transport(self, **options: float) -> NetworkSimulatorTransport:
        return NetworkSimulatorTransport(self.base_url, **options)

    async def open(self, credentials: bytes | None = None, **options: float) -> tuple[Link, Recorder]:
        recorder = Recorder()
        link = await self.transport(**options).open(
            self.nursery, LinkSpec(salon_id=SALON, credentials=credentials, deliver=recorder)
        )
        return link, recorder

    async def connected(self) -> tuple[Link, Recorder]:
        """Pair over the control API, reconnect with the new credentials, return the live link."""
        _, pairing = await self.open()
        qr = await pairing.next_of(QrIssued)
        answer = await self.http.post("/scan", json={"qr": qr.code, "phone": PHONE})  # type: ignore[union-attr]
        assert answer.status_code == 200
        creds = await pairing.next_of(CredsUpdated)
        link, recorder = await self.open(creds.credentials)  # type: ignore[union-attr]
        await recorder.next_of(Connected)
        return link, recorder


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    core = SimulatorCore()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_simulator, "127.0.0.1", 0, core)
        async with httpx.AsyncClient(base_url=binds[0]) as http:
            yield Simulator(core, binds[0], http, nursery)
        nursery.cancel_scope.cancel()


def test_link_url_is_derived_from_the_base_url() -> None:
    assert link_url("http://127.0.0.1:9000") == "ws://127.0.0.1:9000/link"
    assert link_url("https://h.example/_dev/whatsapp/") == "wss://h.example/_dev/whatsapp/link"
    with pytest.raises(ValueError):
        link_url("127.0.0.1:9000")


async def test_scan_over_http_then_reconnect_connects_the_networked_link(simulator: Simulator) -> None:
    _, pairing = await simulator.open()
    qr = await pairing.next_of(QrIssued)
    assert (qr.seq, qr.ttl_s) == (1, 60)  # type: ignore[union-attr]
    answer = await simulator.http.post("/scan", json={"qr": qr.code, "phone": PHONE})  # type: ignore[union-attr]
    assert answer.status_code == 200
    assert (await pairing.next_of(Disconnected)).reason == RESTART_REQUIRED  # type: ignore[union-attr]
    creds = await pairing.next_of(CredsUpdated)
    _, recorder = await simulator.open(creds.credentials)  # type: ignore[union-attr]
    connected = await recorder.next_of(Connected)
    assert connected.jid == answer.json()["jid"]  # type: ignore[union-attr]
    assert connected.jid.startswith(f"{PHONE}:")  # type: ignore[union-attr]
    stats = (await simulator.http.get("/stats")).json()
    assert (stats["live_sessions"], stats["linked_devices"]) == (1, 1)


async def test_messages_both_ways_over_the_network(simulator: Simulator) -> None:
    link, recorder = await simulator.connected()
    answer = await simulator.http.post(f"/phones/{PHONE}/messages", json={"from": PEER, "text": "hi", "id": "M1"})
    assert answer.json() == {"id": "M1"}
    message = await recorder.next_of(MessageReceived)
    assert (message.wa_id, message.peer, message.text) == ("M1", PEER, "hi")  # type: ignore[union-attr]
    wa_id = await link.send_message(PEER, "hello back")
    log = (await simulator.http.get(f"/phones/{PHONE}/messages")).json()["messages"]
    assert [(m["id"], m["to"], m["text"]) for m in log] == [(wa_id, PEER, "hello back")]


async def test_an_inbound_message_is_acknowledged_only_once_received_says_it_is_stored(simulator: Simulator) -> None:
    """A link that ends before its owner stored a message (a node killed or fenced) leaves it to the
    next connection; once ``received`` is called, no connection gets it again."""
    _, pairing = await simulator.open()
    qr = await pairing.next_of(QrIssued)
    await simulator.http.post("/scan", json={"qr": qr.code, "phone": PHONE})  # type: ignore[union-attr]
    credentials = (await pairing.next_of(CredsUpdated)).credentials  # type: ignore[union-attr]

    async def connect() -> tuple[Link, Recorder]:
        link, recorder = await simulator.open(credentials)
        await recorder.next_of(Connected)
        return link, recorder

    first, recorder = await connect()
    await simulator.http.post(f"/phones/{PHONE}/messages", json={"from": PEER, "text": "hi", "id": "M1"})
    assert (await recorder.next_of(MessageReceived)).wa_id == "M1"  # type: ignore[union-attr]
    await first.aclose()  # never stored

    second, recorder = await connect()
    assert (await recorder.next_of(MessageReceived)).wa_id == "M1"  # type: ignore[union-attr]
    await second.received("M1")
    seen = len(recorder.events)
    await simulator.http.post(f"/phones/{PHONE}/messages", json={"from": PEER, "text": "next", "id": "M2"})
    assert (await recorder.next_of(MessageReceived, after=seen)).wa_id == "M2"  # type: ignore[union-attr]
    await second.aclose()

    _, recorder = await connect()
    assert (await recorder.next_of(MessageReceived)).wa_id == "M2"  # not stored: again; M1 was, so never again
    assert [e.wa_id for e in recorder.events if isinstance(e, MessageReceived)] == ["M2"]


async def test_pairing_code_over_the_network(simulator: Simulator) -> None:
    link, recorder = await simulator.open()
    await link.request_pairing_code(PHONE)
    issued = await recorder.next_of(PairingCodeIssued)
    answer = await simulator.http.post("/pair", json={"code": issued.code})  # type: ignore[union-attr]
    assert answer.status_code == 200
    assert (await recorder.next_of(Disconnected)).reason == RESTART_REQUIRED  # type: ignore[union-attr]


async def test_server_logout_over_the_network_unlinks(simulator: Simulator) -> None:
    link, _ = await simulator.connected()
    await link.logout()
    assert simulator.core.stats()["linked_devices"] == 0


async def test_phone_logout_over_http_reaches_the_link_as_401(simulator: Simulator) -> None:
    _, recorder = await simulator.connected()
    answer = await simulator.http.post(f"/phones/{PHONE}/logout")
    assert answer.json() == {"unlinked": 1}
    assert (await recorder.next_of(Disconnected)).reason == LOGGED_OUT  # type: ignore[union-attr]


async def test_drop_over_http_is_a_network_error(simulator: Simulator) -> None:
    _, recorder = await simulator.connected()
    assert (await simulator.http.post("/drop", json={"phone": PHONE})).status_code == 200
    assert (await recorder.next_of(Disconnected)).reason == NETWORK_ERROR  # type: ignore[union-attr]


async def test_outage_over_http_cuts_links_and_refuses_new_ones_until_ended(simulator: Simulator) -> None:
    _, recorder = await simulator.connected()
    answer = await simulator.http.post("/outage", json={"seconds": 600})
    assert answer.status_code == 200
    assert answer.json()["dropped"] == 1 and 599 < answer.json()["outage_ends_in"] <= 600
    assert (await recorder.next_of(Disconnected)).reason == NETWORK_ERROR  # type: ignore[union-attr]
    assert (await simulator.http.get("/outage")).json()["unreachable"] is True
    _, refused = await simulator.open()
    assert (await refused.next_of(Disconnected)).reason == NETWORK_ERROR  # type: ignore[union-attr]
    assert (await simulator.http.post("/outage", json={"seconds": 0})).json() == {"dropped": 0, "outage_ends_in": 0.0}
    assert (await simulator.http.get("/outage")).json() == {"unreachable": False, "outage_ends_in": 0.0}
    _, pairing = await simulator.open()
    await pairing.next_of(QrIssued)


async def test_a_stalled_connection_misses_keepalives_then_recovers(simulator: Simulator) -> None:
    _, pairing = await simulator.open()
    qr = await pairing.next_of(QrIssued)
    await simulator.http.post("/scan", json={"qr": qr.code, "phone": PHONE})  # type: ignore[union-attr]
    creds = await pairing.next_of(CredsUpdated)
    _, recorder = await simulator.open(
        creds.credentials,  # type: ignore[union-attr]
        keepalive_interval_s=0.05,
        keepalive_timeout_s=0.05,
    )
    await recorder.next_of(Connected)
    await simulator.http.post("/stall", json={"phone": PHONE})
    await recorder.next_of(KeepaliveTimeout)
    await simulator.http.post("/stall", json={"phone": PHONE, "stalled": False})
    await recorder.next_of(KeepaliveRestored)


async def test_server_going_away_is_a_network_error() -> None:
    recorder = Recorder()
    async with trio.open_nursery() as outer:
        server = trio.CancelScope()

        async def run_server(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
            with server:
                await serve_simulator("127.0.0.1", 0, task_status=task_status)

        binds = await outer.start(run_server)
        await NetworkSimulatorTransport(binds[0]).open(outer, LinkSpec(salon_id=SALON, deliver=recorder))
        await recorder.next_of(QrIssued)
        server.cancel()
        assert (await recorder.next_of(Disconnected)).reason == NETWORK_ERROR  # type: ignore[union-attr]
        outer.cancel_scope.cancel()


async def test_refused_connection_is_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again at once: nothing listens there
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        link = await NetworkSimulatorTransport(f"http://127.0.0.1:{port}").open(
            nursery, LinkSpec(salon_id=SALON, credentials=None, deliver=recorder)
        )
        assert [type(e) for e in recorder.events] == [Disconnected]
        assert recorder.events[0].reason == NETWORK_ERROR  # type: ignore[union-attr]
        with pytest.raises(TransportError):
            await link.send_message(PEER, "hi")


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/scan", b"{not json", 400, "malformed_json"),
        ("/scan", b"[1, 2]", 422, "invalid_body"),
        ("/scan", b'{"qr": 5, "phone": "79001234567"}', 422, "invalid_qr"),
        ("/scan", b'{"qr": "x"}', 422, "missing_phone"),
        ("/scan", b'{"qr": "2@x,a,b,c", "phone": "79001234567"}', 404, "unknown_qr"),
        ("/scan", b'{"qr": "2@x,a,b,c", "phone": "12"}', 422, "invalid_phone"),
        ("/pair", b'{"code": "ABCD-EFGH"}', 404, "unknown_code"),
        ("/drop", b'{"phone": "79001234567"}', 404, "no_live_session"),
        ("/phones/79001234567/logout", b"", 404, "unknown_phone"),
        ("/phones/79001234567/messages", b'{"from": "79007654321", "text": 3}', 422, "invalid_text"),
        ("/ban", b'{"phone": "79001234567", "seconds": -1}', 422, "invalid_seconds"),
        ("/outage", b"{not json", 400, "malformed_json"),
        ("/outage", b"[600]", 422, "invalid_body"),
        ("/outage", b"{}", 422, "missing_seconds"),
        ("/outage", b'{"seconds": "600"}', 422, "invalid_seconds"),
        ("/outage", b'{"seconds": true}', 422, "invalid_seconds"),
        ("/outage", b'{"seconds": -5}', 422, "invalid_seconds"),
        ("/outage", b'{"seconds": NaN}', 400, "malformed_json"),  # not JSON (docs/http-api.md#conventions)
        ("/outage", b'{"seconds": 1e400}', 400, "number_out_of_range"),
        ("/outage", b'{"seconds": 100000000000000000000000000000}', 422, "invalid_seconds"),
        ("/nowhere", b"{}", 404, "not_found"),
    ],
)
async def test_bad_control_input_answers_a_json_error(
    simulator: Simulator, path: str, body: bytes, status: int, code: str
) -> None:
    answer = await simulator.http.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["message"]


async def test_an_oversized_control_body_is_413(simulator: Simulator) -> None:
    answer = await simulator.http.post("/scan", content=b" " * (65 * 1024))
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"


async def test_a_first_frame_that_is_not_hello_is_refused(simulator: Simulator) -> None:
    async with open_websocket_url(link_url(simulator.base_url)) as ws:
        await ws.send_message('{"type": "ping"}')
        assert json.loads(await ws.get_message())["code"] == "bad_hello"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1008
    assert simulator.core.stats()["live_sessions"] == 0


async def test_an_unknown_frame_gets_an_error_and_the_link_stays_open(simulator: Simulator) -> None:
    async with open_websocket_url(link_url(simulator.base_url)) as ws:
        await ws.send_message(json.dumps({"type": "hello", "salon_id": SALON, "credentials": None}))
        assert json.loads(await ws.get_message())["type"] == "qr"
        await ws.send_message("{nonsense")
        assert json.loads(await ws.get_message())["code"] == "bad_frame"
        await ws.send_message(json.dumps({"type": "ping", "ref": 1}))
        assert json.loads(await ws.get_message()) == {"type": "pong", "ref": 1}


async def test_closing_a_network_link_ends_the_session_and_keeps_the_device(simulator: Simulator) -> None:
    link, recorder = await simulator.connected()
    await link.aclose()
    with trio.fail_after(WAIT_S):
        await simulator.core.wait_for(lambda: simulator.core.stats()["live_sessions"] == 0)
    assert simulator.core.stats()["linked_devices"] == 1
    assert recorder.events[-1] == Connected(recorder.events[-1].jid)  # type: ignore[union-attr]


async def test_the_blueprint_mounts_under_a_prefix() -> None:
    core = SimulatorCore()
    app = QuartTrio(__name__)
    app.register_blueprint(simulator_blueprint(core), url_prefix="/_dev/whatsapp")
    async with app.test_app():
        client = app.test_client()
        answer = await client.get("/_dev/whatsapp/stats")
        assert answer.status_code == 200
        assert await answer.get_json() == core.stats()
        refused = await client.post("/_dev/whatsapp/scan", json={"qr": "2@x", "phone": PHONE})
        assert refused.status_code == 404
