"""The WhatsApp simulator's core: a fake of WhatsApp's servers *and* of the salon owners' phones.

One :class:`SimulatorCore` holds every account (phone), every linked device and every live
connection. Two fronts drive it: the in-process :class:`~._inprocess.SimulatorTransport`
(direct calls, used under ``MockClock``) and the networked websocket endpoint of
:mod:`._server`. A front hands each connection a :class:`ConnectionSink`; the core pushes
the connection's events into it and tells it when the server ends the connection.

Faithful where the session machine's policy depends on it (docs/doubles.md#whatsapp-simulator, docs/whatsapp.md):

* A connection without credentials gets a QR batch: 6 QRs, the first valid 60 s, each later one
  20 s; when the sixth expires the attempt ends with 408 ("QR refs attempts ended").
* A scan (or a typed pairing code) links a new device: ``PairSuccess``, ``CredsUpdated``, then the
  connection ends with 515 "restart required"; the client reconnects with the new credentials.
* A second live connection with the same device credentials kicks the older one with 440.
* The phone unlinking the device ends its connection with 401 and voids the credentials.
* Given a ``devices_file``, linked devices (not connections) outlive the process, as WhatsApp's servers
  remember them (:mod:`._devices_file`).
* An outage (:meth:`SimulatorCore.outage`) makes WhatsApp unreachable for a while: every live
  connection drops with a network error and every new one fails the same way until it ends.

Time is trio's clock only, so every timer here runs instantly under ``MockClock``.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Protocol, TypeVar, final

import attrs
import trio

from actor_admin.session import (
    CLIENT_OUTDATED,
    CONNECTION_LOST,
    CONNECTION_REPLACED,
    LOGGED_OUT,
    NETWORK_ERROR,
    QR_BATCH_SIZE,
    RESTART_REQUIRED,
    TEMPORARILY_BANNED,
    Connected,
    CredsUpdated,
    Disconnected,
    MessageReceived,
    PairingCodeIssued,
    PairSuccess,
    QrIssued,
    TransportEvent,
    normalise_phone,
    qr_ttl_s,
)
from actor_admin.whatsapp import TransportError

from ._devices_file import StoredDevice, load_devices, save_devices

_T = TypeVar("_T")
_K = TypeVar("_K")

PAIRING_CODE_TTL_S: Final = 60.0
#: The longest outage the control API accepts (about 31 years: "until told otherwise").
MAX_OUTAGE_S: Final = 1e9
# whatsmeow encodes pairing codes in this base32 alphabet (no 0, O, I, U: nothing to misread).
PAIRING_CODE_ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
JID_SERVER: Final = "s.whatsapp.net"
CREDENTIALS_VERSION: Final = 1


class SimulatorLookupError(LookupError):
    """A control call named something the simulator does not know (now): QR, code, phone.

    ``code`` is a snake_case name for the control API's JSON error (answered with 404).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SimulatorInputError(ValueError):
    """A control call's argument is malformed (answered with 422 by the control API)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def checked_phone(raw: object, *, field: str = "phone") -> str:
    """``raw`` as the product stores phone numbers (:func:`actor_admin.session.normalise_phone`:
    ``"+7 900 123-45-67"`` → ``"79001234567"``), so a phone typed here matches the one the product
    asks for.

    Raises:
        SimulatorInputError: not a string, or not 10–15 digits once normalised.
    """
    digits = normalise_phone(raw) if isinstance(raw, str) else None
    if digits is None:
        raise SimulatorInputError(f"invalid_{field}", f"{field} must have 10 to 15 digits, got {raw!r}")
    return digits


def new_message_id() -> str:
    """A WhatsApp-Web-looking message id (``3EB0`` + 16 upper-case hex digits)."""
    return "3EB0" + secrets.token_hex(8).upper()


class ConnectionSink(Protocol):
    """Where the core pushes one connection's events; implemented by each front."""

    def event(self, event: TransportEvent) -> None:
        """A non-final event (QR, pairing code, pair success, credentials, connected)."""

    def message(self, tag: int, event: MessageReceived) -> bool:
        """An inbound message; return True if handed over for good, False to wait for ``ack(tag)``."""

    def keepalive(self, ok: bool) -> None:
        """Keep-alive answers stopped (``ok=False``) or resumed (``ok=True``); see ``stall``."""

    def ended(self, event: Disconnected | None) -> None:
        """The server ended the connection with ``event``; None: the client closed it itself."""


@final
@attrs.frozen
class SentMessage:
    """One message a server sent through a linked device (the per-phone outbound log)."""

    wa_id: str
    phone: str
    to: str
    text: str
    at: float
    salon_id: int


@final
@attrs.frozen
class _Inbound:
    wa_id: str
    peer: str
    text: str
    at: float


@final
@attrs.define(eq=False)
class _Device:
    device_id: str  # "79001234567:3" — phone and device number, as in a WhatsApp JID
    phone: str
    secret: str
    linked: bool = True
    # Messages waiting for this device to come online (WhatsApp's offline delivery), oldest first.
    pending: list[_Inbound] = attrs.field(factory=list)

    @property
    def jid(self) -> str:
        return f"{self.device_id}@{JID_SERVER}"


@final
@attrs.frozen
class _Qr:
    raw: str
    seq: int
    expires_at: float


@final
@attrs.frozen
class _PairingCode:
    code: str  # the eight characters without the dash
    phone: str
    expires_at: float


@final
@attrs.define(eq=False)
class ServerConnection:
    """The server's side of one connection; a front keeps it and drives it through the core.

    ``serve()`` sends a new device's first QR, then runs the connection's timers (QR rotation,
    pairing-code expiry) and returns when the connection ends for whatever reason; cancelling it is
    the client vanishing.
    """

    core: SimulatorCore
    connection_id: int
    salon_id: int
    sink: ConnectionSink
    live: bool = True
    device: _Device | None = None  # the linked device this connection is (or just became, on pairing)
    connected: bool = False
    stalled: bool = False
    qr: _Qr | None = None
    pairing_code: _PairingCode | None = None
    deadline: float = float("inf")
    unacked: dict[int, _Inbound] = attrs.field(factory=dict)
    next_tag: int = 1
    #: A new device's first QR is due: the server sends it once the handshake is over, in ``serve()``.
    qr_due: bool = False
    _timer_scope: trio.CancelScope | None = None

    async def serve(self) -> None:
        """Send the first QR if one is due, then run this connection's timers until it ends; if
        cancelled first, the client is gone."""
        # One cancel scope at a time, the timer's: ending the connection cancels it too (``cancel``),
        # and ``live`` tells the two apart. The simulator shares the node's loop in dev and in the
        # benchmarks, where every connection's first step is in the QR's path (docs/architecture.md#qr-latency).
        try:
            if self.qr_due:
                self.core._issue_first_qr(self)
            while self.live:
                with trio.CancelScope(deadline=self.deadline) as timer:
                    self._timer_scope = timer
                    await trio.sleep_forever()
                self._timer_scope = None
                if self.live and trio.current_time() >= self.deadline:
                    self.core._timer_fired(self)
        finally:
            self.core.close(self)

    def set_deadline(self, deadline: float) -> None:
        self.deadline = deadline
        if self._timer_scope is not None:
            self._timer_scope.deadline = deadline

    def cancel(self) -> None:
        """The connection ended (``live`` is already false): ``serve()`` returns at its next step."""
        if self._timer_scope is not None:
            self._timer_scope.cancel()

    def request_pairing_code(self, phone: str) -> PairingCodeIssued:
        """See :meth:`SimulatorCore.request_pairing_code`."""
        return self.core.request_pairing_code(self, phone)

    def send_message(self, to: str, text: str) -> str:
        """See :meth:`SimulatorCore.send_message`."""
        return self.core.send_message(self, to, text)

    def ack(self, tag: int) -> None:
        """The client has the inbound message ``tag``; it will not be redelivered."""
        self.unacked.pop(tag, None)


@final
class SimulatorCore:
    """WhatsApp's servers and the phones, in memory. Control methods stand for what a person does.

    Connections come in through a front (``SimulatorTransport(core)`` for in-process use, or the
    websocket endpoint of the control app); the core knows no front, only the :class:`ConnectionSink`
    each hands to :meth:`accept`. Tests and the dev UI act as the phones with :meth:`scan`,
    :meth:`pair`, :meth:`logout`, :meth:`inbound`, :meth:`drop`, :meth:`stall`, :meth:`ban`,
    :meth:`outdate`, and look with :meth:`stats`, :meth:`qr_for`, :meth:`sent_messages`.
    """

    def __init__(self, *, devices_file: Path | None = None) -> None:
        """``devices_file``: where linked devices are kept across restarts (loaded now, rewritten on
        every link and unlink); None keeps them in memory only.

        Raises:
            DevicesFileError: ``devices_file`` exists but is damaged.
        """
        self._connections: dict[int, ServerConnection] = {}
        # Indexes of the live connections by salon and by device, and of the devices by phone, so
        # that an inbound message or a log-in costs the same with 10,000 salons as with one
        # (the simulator runs on the node's own loop in dev and in the benchmarks).
        self._by_salon: dict[int, dict[int, ServerConnection]] = {}
        self._by_device: dict[str, dict[int, ServerConnection]] = {}
        self._by_phone: dict[str, list[_Device]] = {}
        self._next_connection_id = 1
        self._devices: dict[str, _Device] = {}
        self._device_numbers: dict[str, int] = {}
        self._devices_file = devices_file
        if devices_file is not None:
            stored, self._device_numbers = load_devices(devices_file)
            self._devices = {d.device_id: _Device(d.device_id, d.phone, d.secret) for d in stored}
            for device in self._devices.values():
                self._by_phone.setdefault(device.phone, []).append(device)
        self._qrs: dict[str, ServerConnection] = {}
        self._codes: dict[str, ServerConnection] = {}
        self._bans: dict[str, float] = {}
        self._outdated = False
        #: The end of the current outage (trio clock), or None.
        self._outage_until: float | None = None
        self._connections_total = 0
        self._sent: list[SentMessage] = []
        self._changed: trio.Event | None = None
        self._replaced_total = 0
        self._max_live_per_device = 0
        self._qr_issued_total = 0
        self._messages_in_total = 0
        self._messages_out_total = 0

    # -- fronts -------------------------------------------------------------------------------

    def accept(
        self, salon_id: int, credentials: bytes | None, sink: ConnectionSink, *, qr_at_once: bool = False
    ) -> ServerConnection:
        """A client connects: run the handshake now and return the connection; the front must then
        run ``serve()``.

        The handshake's answer (``Connected``, or an immediate ``Disconnected``) is pushed into
        ``sink`` before this returns. A connection without credentials gets its first QR later,
        from ``serve()``'s first step, as WhatsApp sends QR refs in a message of their own after the
        handshake (docs/doubles.md#whatsapp-simulator): the client's connect does not wait for it.
        ``qr_at_once``: push that QR before returning too, for a caller that never runs ``serve()``
        (linking devices without a page, e.g. a benchmark's set-up).
        """
        connection = ServerConnection(self, self._next_connection_id, salon_id, sink)
        self._next_connection_id += 1
        self._connections_total += 1
        self._connections[connection.connection_id] = connection
        self._by_salon.setdefault(salon_id, {})[connection.connection_id] = connection
        self._notify()
        if self.unreachable:
            self._end(connection, Disconnected(NETWORK_ERROR, "WhatsApp is unreachable (outage)"))
        elif self._outdated:
            self._end(connection, Disconnected(CLIENT_OUTDATED, "client outdated"))
        elif credentials is None:
            connection.qr_due = True
            if qr_at_once:
                self._issue_first_qr(connection)
        else:
            self._log_in(connection, credentials)
        return connection

    def close(self, connection: ServerConnection) -> None:
        """The client closed the connection (or vanished): no logout, the device stays linked."""
        self._end(connection, None)

    def logout_link(self, connection: ServerConnection) -> None:
        """The server asks to unlink the device this connection is (or was) logged in as, and closes.

        Other live connections of that device end with 401. A connection that never had a device
        (still showing QRs) just closes.
        """
        device = connection.device
        self._end(connection, None)
        if device is not None and device.linked:
            self._unlink(device, "logged out by the server")

    def logout_credentials(self, credentials: bytes) -> bool:
        """Unlink the device these credentials belong to; False if they are unknown or void."""
        device = self._device_for(credentials)
        if device is None:
            return False
        self._unlink(device, "logged out by the server")
        return True

    # -- the phones (control API) ---------------------------------------------------------------

    def scan(self, qr: str, phone: str) -> str:
        """The phone ``phone`` scans ``qr``: link a new device and return its JID.

        Raises:
            SimulatorLookupError: the QR is not the one a live connection shows now, or expired.
            SimulatorInputError: ``phone`` is not 10–15 digits.
        """
        phone = checked_phone(phone)
        connection = self._qrs.get(qr) if isinstance(qr, str) else None
        if (
            connection is None
            or connection.qr is None
            or connection.qr.raw != qr
            or trio.current_time() >= connection.qr.expires_at
        ):
            raise SimulatorLookupError("unknown_qr", "no live connection shows this QR (unknown or expired)")
        return self._link_device(connection, phone)

    def pair(self, code: str) -> str:
        """The phone the code was requested for types it: link a new device and return its JID.

        The dash and letter case are not significant. A code works once.

        Raises:
            SimulatorLookupError: unknown, already used or expired code.
        """
        key = code.replace("-", "").replace(" ", "").upper() if isinstance(code, str) else ""
        connection = self._codes.get(key)
        pairing = connection.pairing_code if connection is not None else None
        if connection is None or pairing is None or pairing.code != key or trio.current_time() >= pairing.expires_at:
            raise SimulatorLookupError("unknown_code", "no live connection waits for this pairing code")
        return self._link_device(connection, pairing.phone)

    def logout(self, phone: str) -> int:
        """The phone unlinks its linked devices: their live connections end with 401.

        Returns the number of devices unlinked.

        Raises:
            SimulatorLookupError: the phone has no linked device.
        """
        devices = self._devices_of(checked_phone(phone))
        for device in devices:
            self._unlink(device, "logged out from the phone")
        return len(devices)

    def inbound(self, phone: str, peer: str, text: str, wa_id: str | None = None) -> str:
        """``peer`` sends ``text`` to the account ``phone``; returns the message's WhatsApp id.

        Every linked device of the account gets it: at once if it has a live connection, else
        when it next connects. Passing an id that was sent before is a redelivery: it is delivered
        again, as WhatsApp does after reconnects. Counts ``messages_in_total``.

        Raises:
            SimulatorLookupError: the phone has no linked device.
            SimulatorInputError: malformed phone, peer, text or id.
        """
        phone = checked_phone(phone)
        peer = checked_phone(peer, field="from")
        if not isinstance(text, str) or not text:
            raise SimulatorInputError("invalid_text", "text must be a non-empty string")
        if wa_id is None:
            wa_id = new_message_id()
        elif not isinstance(wa_id, str) or not wa_id or len(wa_id) > 128:
            raise SimulatorInputError("invalid_id", "id must be a non-empty string of at most 128 characters")
        devices = self._devices_of(phone)
        self._messages_in_total += 1
        message = _Inbound(wa_id, peer, text, trio.current_time())
        for device in devices:
            device.pending.append(message)
            self._flush(device)
        return wa_id

    def drop(self, phone: str) -> int:
        """Cut the network under the account's live connections: each ends with NETWORK_ERROR (0).

        Returns the number of connections cut.

        Raises:
            SimulatorLookupError: the account has no live connection.
        """
        connections = self._live_connections_of(checked_phone(phone))
        for connection in connections:
            self._end(connection, Disconnected(NETWORK_ERROR, "network connection dropped"))
        return len(connections)

    def stall(self, phone: str, stalled: bool = True) -> int:
        """Make the account's live connections stop (or resume) answering keep-alives.

        A stalled connection stays open but delivers nothing: inbound messages wait, sends fail,
        the in-process front reports ``KeepaliveTimeout`` (``KeepaliveRestored`` on resume) and the
        networked front stops answering pings. Returns the number of connections affected.

        Raises:
            SimulatorLookupError: the account has no live connection.
        """
        connections = self._live_connections_of(checked_phone(phone))
        for connection in connections:
            if connection.stalled != stalled:
                connection.stalled = stalled
                connection.sink.keepalive(not stalled)
        for device in {id(c.device): c.device for c in connections if c.device is not None}.values():
            self._flush(device)
        return len(connections)

    def ban(self, phone: str, seconds: float) -> float:
        """Ban the account temporarily: live connections end with 402, and so does every connect
        until the ban expires. Returns the expiry (trio clock).

        Raises:
            SimulatorInputError: ``seconds`` is not a positive number.
        """
        phone = checked_phone(phone)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < 10**9:
            raise SimulatorInputError("invalid_seconds", "seconds must be a positive number")
        expires_at = trio.current_time() + seconds
        self._bans[phone] = expires_at
        for connection in self._live_of_phone(phone):
            self._end(connection, self._ban_event(expires_at))
        return expires_at

    def outdate(self, enabled: bool = True) -> None:
        """While enabled, every new connection is refused with 405 "client outdated"."""
        self._outdated = enabled

    def outage(self, seconds: float) -> int:
        """Make WhatsApp unreachable for ``seconds`` (trio clock): every live connection drops with
        NETWORK_ERROR (0) now, and every new one fails the same way until the outage ends. ``0`` ends
        an outage early; a new call replaces the end of the current one. Linked devices stay linked.

        Returns the number of connections dropped.

        Raises:
            SimulatorInputError: ``seconds`` is not a number in [0, :data:`MAX_OUTAGE_S`].
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_OUTAGE_S:
            raise SimulatorInputError("invalid_seconds", f"seconds must be a number from 0 to {MAX_OUTAGE_S:g}")
        if seconds == 0:
            self._outage_until = None
            self._notify()
            return 0
        self._outage_until = trio.current_time() + seconds
        live = list(self._connections.values())
        for connection in live:
            self._end(connection, Disconnected(NETWORK_ERROR, "WhatsApp is unreachable (outage)"))
        self._notify()
        return len(live)

    @property
    def unreachable(self) -> bool:
        """Is WhatsApp in an outage now?"""
        return self._outage_until is not None and trio.current_time() < self._outage_until

    def outage_remaining(self) -> float:
        """Seconds until the current outage ends; 0 when there is none."""
        if not self.unreachable or self._outage_until is None:
            return 0.0
        return self._outage_until - trio.current_time()

    # -- looking ---------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The counters of docs/simulator-protocol.md#behaviour.

        ``max_live_per_device`` is counted when a connection with device credentials is accepted,
        *before* the older connection is kicked with 440, so one double connection shows as 2.
        ``connections_total`` counts every connection a server opened, refused ones included (an
        outage's probes, a 401, a 402 …).
        """
        return {
            "live_sessions": len(self._connections),
            "linked_devices": sum(1 for d in self._devices.values() if d.linked),
            "replaced_total": self._replaced_total,
            "max_live_per_device": self._max_live_per_device,
            "qr_issued_total": self._qr_issued_total,
            "messages_in_total": self._messages_in_total,
            "messages_out_total": self._messages_out_total,
            "connections_total": self._connections_total,
        }

    def qr_for(self, salon_id: int) -> str | None:
        """The raw QR a live connection of ``salon_id`` shows now, or None."""
        for connection in self._live_of_salon(salon_id):
            if connection.qr is not None:
                return connection.qr.raw
        return None

    def qr_expires_in(self, salon_id: int) -> float | None:
        """Seconds until the QR ``qr_for(salon_id)`` expires, or None."""
        for connection in self._live_of_salon(salon_id):
            if connection.qr is not None:
                return max(0.0, connection.qr.expires_at - trio.current_time())
        return None

    def pairing_code_for(self, salon_id: int) -> str | None:
        """The pairing code (``ABCD-EFGH``) a live connection of ``salon_id`` waits for, or None."""
        for connection in self._live_of_salon(salon_id):
            if connection.pairing_code is not None:
                return _format_code(connection.pairing_code.code)
        return None

    def live_phones(self) -> list[str]:
        """Phones whose linked device has a live, logged-in connection."""
        return sorted({c.device.phone for c in self._connections.values() if c.connected and c.device})

    def sent_messages(self, phone: str | None = None) -> list[SentMessage]:
        """The outbound log, oldest first; only those sent from ``phone``'s account if given."""
        return [m for m in self._sent if phone is None or m.phone == phone]

    async def wait_qr(self, salon_id: int) -> str:
        """Wait until a live connection of ``salon_id`` shows a QR; return it."""
        return await self.wait_for(lambda: self.qr_for(salon_id) or "")

    async def wait_pairing_code(self, salon_id: int) -> str:
        """Wait until a live connection of ``salon_id`` waits for a pairing code; return it."""
        return await self.wait_for(lambda: self.pairing_code_for(salon_id) or "")

    # -- server-side operations a connection asks for --------------------------------------------

    def request_pairing_code(self, connection: ServerConnection, phone: str) -> PairingCodeIssued:
        """Issue a pairing code for ``phone`` on a connection still pairing.

        The QR rotation stops while a code is pending (a simplification: the page shows one or the
        other); the code lives :data:`PAIRING_CODE_TTL_S` and, unused, ends the attempt with 408.
        Asking again replaces the code.

        Raises:
            TransportError: the connection is closed or already logged in, or the phone is malformed.
        """
        if not connection.live or connection.device is not None:
            raise TransportError("pairing codes are only issued on a live connection that is not logged in")
        try:
            phone = checked_phone(phone)
        except SimulatorInputError as exc:
            raise TransportError(exc.message) from None
        self._forget_codes(connection)
        connection.qr_due = False  # asked for before the first QR came: the code is shown instead
        code = "".join(secrets.choice(PAIRING_CODE_ALPHABET) for _ in range(8))
        expires_at = trio.current_time() + PAIRING_CODE_TTL_S
        connection.pairing_code = _PairingCode(code, phone, expires_at)
        self._codes[code] = connection
        connection.set_deadline(expires_at)
        issued = PairingCodeIssued(_format_code(code), PAIRING_CODE_TTL_S)
        connection.sink.event(issued)
        self._notify()
        return issued

    def send_message(self, connection: ServerConnection, to: str, text: str) -> str:
        """Send ``text`` from the connection's account to ``to``; returns the new message id.

        Raises:
            TransportError: not logged in, stalled, or malformed arguments.
        """
        device = connection.device
        if not connection.live or not connection.connected or device is None:
            raise TransportError("not connected")
        if connection.stalled:
            raise TransportError("timed out: the connection does not answer")
        try:
            to = checked_phone(to, field="to")
        except SimulatorInputError as exc:
            raise TransportError(exc.message) from None
        if not isinstance(text, str) or not text:
            raise TransportError("text must be a non-empty string")
        wa_id = new_message_id()
        self._sent.append(SentMessage(wa_id, device.phone, to, text, trio.current_time(), connection.salon_id))
        self._messages_out_total += 1
        self._notify()
        return wa_id

    # -- internals --------------------------------------------------------------------------------

    def _timer_fired(self, connection: ServerConnection) -> None:
        if connection.pairing_code is not None:
            self._end(connection, Disconnected(CONNECTION_LOST, "pairing code expired"))
        elif connection.qr is not None and connection.qr.seq < QR_BATCH_SIZE:
            self._issue_qr(connection, seq=connection.qr.seq + 1)
        else:
            self._end(connection, Disconnected(CONNECTION_LOST, "QR refs attempts ended"))

    def _issue_first_qr(self, connection: ServerConnection) -> None:
        if connection.qr_due:
            connection.qr_due = False
            if connection.live:
                self._issue_qr(connection, seq=1)

    def _issue_qr(self, connection: ServerConnection, *, seq: int) -> None:
        self._forget_codes(connection)
        ttl = qr_ttl_s(seq)
        qr = _Qr(_qr_payload(), seq, trio.current_time() + ttl)
        connection.qr = qr
        self._qrs[qr.raw] = connection
        self._qr_issued_total += 1
        connection.set_deadline(qr.expires_at)
        connection.sink.event(QrIssued(qr.raw, ttl, seq))
        self._notify()

    def _forget_codes(self, connection: ServerConnection) -> None:
        if connection.qr is not None:
            self._qrs.pop(connection.qr.raw, None)
            connection.qr = None
        if connection.pairing_code is not None:
            self._codes.pop(connection.pairing_code.code, None)
            connection.pairing_code = None

    def _link_device(self, connection: ServerConnection, phone: str) -> str:
        number = self._device_numbers.get(phone, 0) + 1
        self._device_numbers[phone] = number
        device = _Device(f"{phone}:{number}", phone, secrets.token_urlsafe(32))
        self._devices[device.device_id] = device
        self._by_phone.setdefault(phone, []).append(device)
        self._save_devices()
        self._attach(connection, device)
        credentials = json.dumps(
            {"v": CREDENTIALS_VERSION, "device": device.device_id, "secret": device.secret},
            separators=(",", ":"),
        ).encode()
        connection.sink.event(PairSuccess(device.jid))
        connection.sink.event(CredsUpdated(credentials))
        self._end(connection, Disconnected(RESTART_REQUIRED, "restart required"))
        return device.jid

    def _device_for(self, credentials: bytes) -> _Device | None:
        try:
            parsed = json.loads(credentials)
            device = self._devices.get(parsed["device"])
            secret = parsed["secret"]
        except (ValueError, TypeError, KeyError):
            return None
        if device is None or not device.linked or not isinstance(secret, str):
            return None
        return device if secrets.compare_digest(device.secret, secret) else None

    def _log_in(self, connection: ServerConnection, credentials: bytes) -> None:
        device = self._device_for(credentials)
        if device is None:
            self._end(connection, Disconnected(LOGGED_OUT, "credentials unknown or device unlinked"))
            return
        ban_expires_at = self._bans.get(device.phone)
        if ban_expires_at is not None and trio.current_time() < ban_expires_at:
            self._end(connection, self._ban_event(ban_expires_at))
            return
        older = [c for c in self._connections_of(device) if c is not connection]
        # Counted before the kick on purpose: a double connection must be visible as 2.
        self._max_live_per_device = max(self._max_live_per_device, len(older) + 1)
        self._attach(connection, device)
        connection.connected = True
        for other in older:
            self._replaced_total += 1
            self._end(other, Disconnected(CONNECTION_REPLACED, "connection replaced"))
        connection.sink.event(Connected(device.jid))
        self._flush(device)
        self._notify()

    def _ban_event(self, expires_at: float) -> Disconnected:
        return Disconnected(TEMPORARILY_BANNED, "temporarily banned", ban_expires_at=expires_at)

    def _unlink(self, device: _Device, detail: str) -> None:
        device.linked = False
        device.pending.clear()
        self._save_devices()
        for connection in self._connections_of(device):
            self._end(connection, Disconnected(LOGGED_OUT, detail))
        self._notify()

    def _flush(self, device: _Device) -> None:
        """Hand the device's waiting messages to its live, answering connections."""
        targets = [c for c in self._connections_of(device) if c.connected and not c.stalled]
        if not targets or not device.pending:
            return
        waiting, device.pending = device.pending, []
        for message in waiting:
            for connection in targets:
                if connection.live:
                    self._hand_over(connection, message)

    def _hand_over(self, connection: ServerConnection, message: _Inbound) -> None:
        tag = connection.next_tag
        connection.next_tag += 1
        connection.unacked[tag] = message
        event = MessageReceived(message.wa_id, message.peer, message.text, message.at)
        if connection.sink.message(tag, event):
            connection.ack(tag)

    def _end(self, connection: ServerConnection, event: Disconnected | None) -> None:
        if not connection.live:
            return
        connection.live = False
        connection.connected = False
        self._connections.pop(connection.connection_id, None)
        self._forget_codes(connection)
        device = connection.device
        _discard(self._by_salon, connection.salon_id, connection.connection_id)
        if device is not None:
            _discard(self._by_device, device.device_id, connection.connection_id)
        if device is not None and device.linked and connection.unacked:
            # Not acknowledged by the client: WhatsApp delivers these again on the next connection.
            device.pending[:0] = list(connection.unacked.values())
        connection.unacked.clear()
        connection.cancel()
        connection.sink.ended(event)
        self._notify()

    def _save_devices(self) -> None:
        if self._devices_file is None:
            return
        linked = [StoredDevice(d.device_id, d.phone, d.secret) for d in self._devices.values() if d.linked]
        # Synchronous: a few hundred bytes, written only when a person links or unlinks a device.
        save_devices(self._devices_file, linked, self._device_numbers)

    def _linked_devices(self, phone: str) -> list[_Device]:
        return [d for d in self._by_phone.get(phone, ()) if d.linked]

    def _attach(self, connection: ServerConnection, device: _Device) -> None:
        connection.device = device
        if connection.live:
            self._by_device.setdefault(device.device_id, {})[connection.connection_id] = connection

    def _connections_of(self, device: _Device) -> list[ServerConnection]:
        """The device's live connections, oldest first."""
        return list(self._by_device.get(device.device_id, {}).values())

    def _devices_of(self, phone: str) -> list[_Device]:
        """``phone``'s linked devices, for a control call that needs one."""
        devices = self._linked_devices(phone)
        if not devices:
            raise SimulatorLookupError("unknown_phone", "this phone has no linked device")
        return devices

    def _live_connections_of(self, phone: str) -> list[ServerConnection]:
        """``phone``'s live connections, for a control call that needs one."""
        connections = self._live_of_phone(phone)
        if not connections:
            raise SimulatorLookupError("no_live_session", "this phone has no live connection")
        return connections

    def _live_of_phone(self, phone: str) -> list[ServerConnection]:
        found = [c for device in self._by_phone.get(phone, ()) for c in self._connections_of(device) if c.connected]
        return sorted(found, key=lambda c: c.connection_id)

    def _live_of_salon(self, salon_id: int) -> Iterator[ServerConnection]:
        # Newest first: if a salon ever had two attempts at once, the latest one is what its page shows.
        return reversed(list(self._by_salon.get(salon_id, {}).values()))

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for(self, probe: Callable[[], _T]) -> _T:
        """Wait until ``probe()`` (re-checked after every change in the core) is truthy; return it.

        E.g. ``await core.wait_for(lambda: core.stats()["live_sessions"] == 0)``.
        """
        while True:
            value = probe()
            if value:
                await trio.lowlevel.checkpoint()
                return value
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()


def _format_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def _b64(size: int) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode()


def _qr_payload() -> str:
    """A fresh QR payload shaped like WhatsApp's: ``ref,noise_pubkey,identity_pubkey,adv_secret``.

    Real refs are server-issued strings of about 80 characters; the keys are base64 of 32 bytes.
    """
    ref = "2@" + _b64(60).rstrip("=")
    return ",".join((ref, _b64(32), _b64(32), _b64(32)))


def _discard(index: dict[_K, dict[int, ServerConnection]], key: _K, connection_id: int) -> None:
    entries = index.get(key)
    if entries is not None:
        entries.pop(connection_id, None)
        if not entries:
            del index[key]
