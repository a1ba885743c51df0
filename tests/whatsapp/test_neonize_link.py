"""The threading bridge of the neonize transport, with a fake client calling back from foreign threads.

The fake stands where neonize's client stands: ``run()`` blocks in the link's worker thread until
``stop()``, and the test fires callbacks from other threads (``trio.to_thread``), as Go does. These
tests use the real clock: they wait for threads, never sleep.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from actor_admin.session import (
    CONNECTION_LOST,
    CONNECTION_REPLACED,
    LOGGED_OUT,
    NETWORK_ERROR,
    Connected,
    CredsUpdated,
    Disconnected,
    MessageReceived,
    PairingCodeIssued,
    PairSuccess,
    QrIssued,
    TransportEvent,
)
from actor_admin.whatsapp._neonize import ClientHandlers, ClientSpec, NeonizeLink, NeonizeTransport
from actor_admin.whatsapp._neonize_store import restore_store, snapshot_store
from actor_admin.whatsapp._transport import LinkSpec, TransportError

ev = pytest.importorskip("neonize.events", reason="neonize (the optional 'whatsapp' extra) is not installed")
pb = pytest.importorskip("neonize.proto.Neonize_pb2")
e2e = pytest.importorskip("neonize.proto.waE2E.WAWebProtobufsE2E_pb2")

OWN_JID = "79001234567:7@s.whatsapp.net"
WAIT_S = 10.0  # generous bound on thread hand-offs; a passing test takes milliseconds


class FakeClient:
    """Records calls in the shared ``log`` (with the delivered events) so tests see the order."""

    def __init__(self, spec: ClientSpec, log: list[object], *, run_error: Exception | None = None) -> None:
        self.spec = spec
        self.log = log
        self.run_error = run_error
        self.handlers: ClientHandlers | None = None
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.store_seen_at_start: list[str] = []

    def run(self, handlers: ClientHandlers) -> None:
        self.handlers = handlers
        # whatsmeow opens (or creates) its store before connecting.
        db = sqlite3.connect(self.spec.db_path)
        db.execute("CREATE TABLE IF NOT EXISTS device (jid TEXT)")
        db.commit()
        self.store_seen_at_start = [row[0] for row in db.execute("SELECT jid FROM device")]
        db.close()
        self.started.set()
        if self.run_error is not None:
            raise self.run_error
        self.stopped.wait()

    def stop(self) -> None:
        self.log.append("stop")
        self.stopped.set()

    def own_jid(self) -> str:
        return OWN_JID

    def pair_phone(self, phone: str) -> str:
        self.log.append(("pair_phone", phone))
        return "abcd-efgh"

    def send_text(self, to: str, text: str) -> str:
        if to == "70000000000":
            raise RuntimeError("server returned error 463")
        self.log.append(("send", to, text))
        return "3EB0FFFF"

    def phone_for_lid(self, lid: str) -> str | None:
        self.log.append(("phone_for_lid", lid))
        return {"1234567890123@lid": "79005556677"}.get(lid)

    def logout(self) -> None:
        self.log.append("logout")

    def write_device(self, jid: str) -> None:
        db = sqlite3.connect(self.spec.db_path)
        db.execute("INSERT INTO device VALUES (?)", (jid,))
        db.commit()
        db.close()


@attrs.define
class Harness:
    transport: NeonizeTransport
    nursery: trio.Nursery
    log: list[object]
    clients: list[FakeClient]
    run_error: Exception | None = None

    @property
    def delivered(self) -> list[TransportEvent]:
        return [item for item in self.log if not isinstance(item, (str, tuple))]  # type: ignore[misc]

    async def open(self, credentials: bytes | None = None) -> tuple[NeonizeLink, FakeClient]:
        link = await self.transport.open(
            self.nursery, LinkSpec(salon_id=42, credentials=credentials, deliver=self.deliver)
        )
        client = self.clients[-1]
        await trio.to_thread.run_sync(client.started.wait, WAIT_S)
        return link, client

    changed: trio.Event = attrs.field(factory=trio.Event)

    def deliver(self, event: TransportEvent) -> None:
        self.log.append(event)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[list[TransportEvent]], bool]) -> None:
        with trio.fail_after(WAIT_S):
            while not predicate(self.delivered):
                await self.changed.wait()


async def fire(fn: Callable[..., None], *args: object) -> None:
    """Call a client callback from a thread that is not trio's, as neonize does."""
    await trio.to_thread.run_sync(fn, *args)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    log: list[object] = []
    clients: list[FakeClient] = []
    holder: dict[str, Harness] = {}

    def factory(spec: ClientSpec) -> FakeClient:
        client = FakeClient(spec, log, run_error=holder["h"].run_error)
        clients.append(client)
        return client

    async with trio.open_nursery() as nursery:
        transport = NeonizeTransport(tmp_path / "stores", snapshot_interval_s=3600, client_factory=factory)
        holder["h"] = Harness(transport, nursery, log, clients)
        yield holder["h"]
        nursery.cancel_scope.cancel()


def message(text: str, msg_id: str) -> object:
    source = pb.MessageSource(Chat=pb.JID(User="79001112233", Server="s.whatsapp.net"))
    return ev.MessageEv(Info=pb.MessageInfo(ID=msg_id, MessageSource=source), Message=e2e.Message(conversation=text))


async def test_callbacks_from_foreign_threads_reach_deliver_in_order(harness: Harness) -> None:
    link, _client = await harness.open()
    for code in ("2@one", "2@two", "2@three"):
        await fire(link.on_qr, code)
    await fire(link.on_event, message("first", "A"))
    await fire(link.on_event, message("second", "B"))
    assert harness.delivered == [
        QrIssued("2@one", 60.0, 1),
        QrIssued("2@two", 20.0, 2),
        QrIssued("2@three", 20.0, 3),
        MessageReceived("A", "79001112233", "first", harness.delivered[3].at),  # type: ignore[union-attr]
        MessageReceived("B", "79001112233", "second", harness.delivered[4].at),  # type: ignore[union-attr]
    ]


def lid_message(text: str, msg_id: str, lid: str) -> object:
    source = pb.MessageSource(Chat=pb.JID(User=lid, Server="lid"), Sender=pb.JID(User=lid, Server="lid", Device=2))
    return ev.MessageEv(Info=pb.MessageInfo(ID=msg_id, MessageSource=source), Message=e2e.Message(conversation=text))


async def test_a_message_known_only_by_lid_is_resolved_through_the_clients_lid_map_or_kept(
    harness: Harness,
) -> None:
    link, _client = await harness.open()
    await fire(link.on_event, lid_message("known", "A", "1234567890123"))
    await fire(link.on_event, lid_message("unknown", "B", "9999999999999"))
    await fire(link.on_event, message("by phone", "C"))
    received = [e for e in harness.delivered if isinstance(e, MessageReceived)]
    assert [(m.wa_id, m.peer, m.peer_lid) for m in received] == [
        ("A", "79005556677", "1234567890123@lid"),
        ("B", "", "9999999999999@lid"),
        ("C", "79001112233", None),
    ]
    lookups = [item for item in harness.log if isinstance(item, tuple) and item[0] == "phone_for_lid"]
    assert lookups == [("phone_for_lid", "1234567890123@lid"), ("phone_for_lid", "9999999999999@lid")]


async def test_a_connection_ending_event_is_reported_once_after_the_client_is_stopped(harness: Harness) -> None:
    link, _client = await harness.open()
    await fire(link.on_event, ev.StreamReplacedEv())
    await fire(link.on_event, ev.DisconnectedEv(status=True))
    await harness.wait_for(lambda d: any(isinstance(e, Disconnected) for e in d))
    ends = [e for e in harness.delivered if isinstance(e, Disconnected)]
    assert [e.reason for e in ends] == [CONNECTION_REPLACED]
    assert harness.log.index("stop") < harness.log.index(ends[0])


async def test_the_runner_ending_after_a_reported_end_adds_nothing(tmp_path: Path) -> None:
    log: list[object] = []
    transport = NeonizeTransport(tmp_path, client_factory=lambda spec: FakeClient(spec, log))
    async with trio.open_nursery() as nursery:  # exits once the link's tasks are all done
        link = await transport.open(nursery, LinkSpec(salon_id=7, credentials=None, deliver=log.append))
        await fire(link.on_event, ev.DisconnectedEv(status=True))
    # The stop let run() return; the runner's own end-of-connection report must be swallowed.
    assert [e for e in log if isinstance(e, Disconnected)] == [Disconnected(NETWORK_ERROR, "connection lost")]


async def test_nothing_is_delivered_after_aclose(harness: Harness) -> None:
    link, client = await harness.open()
    await link.aclose()
    assert client.stopped.is_set()
    await fire(link.on_qr, "2@late")
    await fire(link.on_event, ev.DisconnectedEv(status=True))
    await fire(link.on_login_status, "timeout")
    assert harness.delivered == []


async def test_aclose_deletes_the_working_copy_of_the_store(harness: Harness) -> None:
    link, client = await harness.open()
    assert client.spec.db_path.exists()
    await link.aclose()
    assert not client.spec.db_path.exists()


async def test_a_client_that_cannot_start_is_one_network_error(harness: Harness) -> None:
    harness.run_error = RuntimeError("failed to dial whatsapp web websocket")
    await harness.open()
    await harness.wait_for(lambda d: len(d) == 1)
    assert harness.delivered == [Disconnected(NETWORK_ERROR, "failed to dial whatsapp web websocket")]


async def test_the_qr_batch_running_out_is_reported_as_408(harness: Harness) -> None:
    link, client = await harness.open()
    await fire(link.on_qr, "2@one")
    await fire(link.on_login_status, "timeout")
    assert harness.delivered[-1] == Disconnected(CONNECTION_LOST, "qr batch ended")
    assert client.stopped.is_set()


async def test_pairing_then_connect_persists_credentials_before_announcing(harness: Harness) -> None:
    link, client = await harness.open()
    await fire(link.on_qr, "2@one")
    await fire(client.write_device, OWN_JID)
    device = pb.JID(User="79001234567", Device=7, Server="s.whatsapp.net")
    await fire(link.on_event, ev.PairStatusEv(ID=device, Status=pb.PairStatus.SUCCESS))
    await fire(link.on_event, ev.ConnectedEv(status=True))
    kinds = [type(e) for e in harness.delivered]
    assert kinds == [QrIssued, PairSuccess, CredsUpdated, Connected]
    assert harness.delivered[-1] == Connected(OWN_JID)


async def test_credentials_from_a_connection_restore_the_same_store(harness: Harness, tmp_path: Path) -> None:
    link, client = await harness.open()
    await fire(client.write_device, OWN_JID)
    await fire(link.on_event, ev.ConnectedEv(status=True))
    creds = next(e for e in harness.delivered if isinstance(e, CredsUpdated)).credentials
    await link.aclose()
    _, second = await harness.open(creds)
    assert (second.spec.new_device, second.store_seen_at_start) == (False, [OWN_JID])


async def test_a_connection_losing_its_network_persists_its_last_store_first(harness: Harness) -> None:
    link, client = await harness.open()
    await fire(link.on_event, ev.ConnectedEv(status=True))
    await fire(client.write_device, OWN_JID)  # e.g. a new signal session since the last snapshot
    await fire(link.on_event, ev.DisconnectedEv(status=True))
    last_creds = [e for e in harness.delivered if isinstance(e, CredsUpdated)][-1]
    assert harness.delivered[-1] == Disconnected(NETWORK_ERROR, "connection lost")
    scratch = client.spec.db_path.with_name("scratch.db")
    restore_store(last_creds.credentials, scratch)
    assert [r[0] for r in sqlite3.connect(scratch).execute("SELECT jid FROM device")] == [OWN_JID]


async def test_a_logged_out_device_is_not_snapshotted(harness: Harness) -> None:
    link, client = await harness.open()
    await fire(link.on_event, ev.ConnectedEv(status=True))
    await fire(client.write_device, OWN_JID)
    await fire(link.on_event, ev.LoggedOutEv(OnConnect=False))
    assert [type(e) for e in harness.delivered] == [CredsUpdated, Connected, Disconnected]
    assert harness.delivered[-1].reason == LOGGED_OUT  # type: ignore[union-attr]


async def test_unusable_credentials_end_the_link_as_logged_out(harness: Harness) -> None:
    link = await harness.transport.open(
        harness.nursery, LinkSpec(salon_id=42, credentials=b'{"device": "simulator"}', deliver=harness.deliver)
    )
    await harness.wait_for(lambda d: len(d) == 1)
    assert harness.delivered[0].reason == LOGGED_OUT  # type: ignore[union-attr]
    assert harness.clients == []
    with pytest.raises(TransportError):
        await link.send_message("79001112233", "hi")


async def test_a_pairing_code_waits_for_the_pairing_session_and_is_formatted(harness: Harness) -> None:
    link, _client = await harness.open()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.request_pairing_code, "79001234567")
        await trio.testing.wait_all_tasks_blocked()
        assert ("pair_phone", "79001234567") not in harness.log  # no QR session yet
        await fire(link.on_qr, "2@one")
    issued = harness.delivered[-1]
    assert isinstance(issued, PairingCodeIssued) and issued.code == "ABCD-EFGH"
    assert 0 < issued.ttl_s <= 160.0


async def test_send_message_returns_whatsapps_message_id(harness: Harness) -> None:
    link, _client = await harness.open()
    assert await link.send_message("79001112233", "Вы записаны на 15:00") == "3EB0FFFF"
    assert ("send", "79001112233", "Вы записаны на 15:00") in harness.log


async def test_a_refused_send_is_a_transport_error(harness: Harness) -> None:
    link, _client = await harness.open()
    with pytest.raises(TransportError, match="463"):
        await link.send_message("70000000000", "hi")


async def test_send_rejects_what_is_not_a_phone_number(harness: Harness) -> None:
    link, _client = await harness.open()
    with pytest.raises(TransportError):
        await link.send_message("+7 900 111-22-33", "hi")


async def test_logout_unlinks_then_stops_and_reports_nothing(harness: Harness) -> None:
    link, _client = await harness.open()
    await link.logout()
    assert harness.log.index("logout") < harness.log.index("stop")
    await fire(link.on_event, ev.LoggedOutEv(OnConnect=False))
    assert harness.delivered == []


async def test_cancelling_the_links_nursery_stops_the_client(tmp_path: Path) -> None:
    log: list[object] = []
    clients: list[FakeClient] = []

    def factory(spec: ClientSpec) -> FakeClient:
        clients.append(FakeClient(spec, log))
        return clients[-1]

    transport = NeonizeTransport(tmp_path, client_factory=factory)
    async with trio.open_nursery() as nursery:
        await transport.open(nursery, LinkSpec(salon_id=7, credentials=None, deliver=log.append))
        await trio.to_thread.run_sync(clients[0].started.wait, WAIT_S)
        nursery.cancel_scope.cancel()
    # An actor that dies must not leave a live connection behind to fight its successor (440).
    assert clients[0].stopped.is_set()


async def test_each_link_gets_its_own_session_name_and_store(harness: Harness) -> None:
    _, a = await harness.open()
    _, b = await harness.open()
    assert a.spec.session_name != b.spec.session_name
    assert a.spec.db_path != b.spec.db_path


async def test_a_changed_store_is_persisted_periodically_while_connected(tmp_path: Path) -> None:
    log: list[object] = []
    clients: list[FakeClient] = []
    creds_seen = trio.Event()

    def deliver(event: TransportEvent) -> None:
        log.append(event)
        if isinstance(event, CredsUpdated) and sum(isinstance(e, CredsUpdated) for e in log) == 2:
            creds_seen.set()

    def factory(spec: ClientSpec) -> FakeClient:
        clients.append(FakeClient(spec, log))
        return clients[-1]

    transport = NeonizeTransport(tmp_path, snapshot_interval_s=0.01, client_factory=factory)
    async with trio.open_nursery() as nursery:
        link = await transport.open(nursery, LinkSpec(salon_id=7, credentials=None, deliver=deliver))
        await trio.to_thread.run_sync(clients[0].started.wait, WAIT_S)
        await fire(link.on_event, ev.ConnectedEv(status=True))
        await fire(clients[0].write_device, OWN_JID)
        with trio.fail_after(WAIT_S):
            await creds_seen.wait()
        await link.aclose()
    snapshots = [e.credentials for e in log if isinstance(e, CredsUpdated)]
    assert len(snapshots) == 2 and snapshots[0] != snapshots[1]


def test_a_callback_after_the_trio_run_ended_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log: list[object] = []
    links: list[NeonizeLink] = []

    async def main() -> None:
        transport = NeonizeTransport(tmp_path, client_factory=lambda spec: FakeClient(spec, log))
        async with trio.open_nursery() as nursery:
            links.append(await transport.open(nursery, LinkSpec(salon_id=7, credentials=None, deliver=log.append)))
            nursery.cancel_scope.cancel()

    trio.run(main)
    # What a Go thread does when its event arrives after the actor's trio run is gone.
    links[0]._to_trio(links[0]._accept, Disconnected(NETWORK_ERROR))
    assert [e for e in log if isinstance(e, Disconnected)] == []
    assert caplog.records == []  # swallowed as RunFinishedError, not caught as a failure


def test_the_store_survives_a_snapshot_and_restore(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE whatsmeow_device (jid TEXT, identity BLOB)")
    conn.execute("INSERT INTO whatsmeow_device VALUES (?, ?)", (OWN_JID, b"\x00key"))
    conn.commit()
    conn.close()
    restore_store(snapshot_store(db), tmp_path / "b.db")
    rows = sqlite3.connect(tmp_path / "b.db").execute("SELECT jid, identity FROM whatsmeow_device").fetchall()
    assert rows == [(OWN_JID, b"\x00key")]
