"""The real WhatsApp transport: neonize (whatsmeow compiled to a shared library) behind :class:`Transport`.

neonize is an optional extra (``pip install 'actor-admin[whatsapp]'``). :mod:`actor_admin.whatsapp`
exports this module's transport, so neonize itself is imported only when a client is made, never at
import time; :func:`neonize_available` can be asked first.

Threads. neonize's ``connect()`` blocks for the whole life of the connection and its callbacks
arrive on threads Go created. A link runs ``connect()`` in a worker thread it owns (an unbounded
limiter of its own, so a thousand connections never starve trio's default thread limiter), and
hands every callback to the actor's trio thread with ``trio.from_thread.run_sync`` and the trio
token captured in ``open()``. Everything the actor sees is decided in the trio thread, in one
place (:meth:`NeonizeLink._accept`): that is what makes "exactly one ``Disconnected``" and
"nothing after ``aclose()``" hold without further locking. A callback arriving after the trio run
ended is dropped (``trio.RunFinishedError``).

Reconnects. whatsmeow reconnects by itself after most disconnects, and the neonize 0.5.2 bridge
exposes no switch for ``EnableAutoReconnect``. So the first event that ends a connection makes
the link stop the client (whatsmeow's ``Disconnect()`` marks the disconnect as expected, which
cancels its pending auto-reconnect) *before* the ``Disconnected`` reaches the actor; the session
machine then decides whether and when to open a new link. See docs/neonize-transport.md.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol, TypeVar, final

import attrs
import trio

from actor_admin.session import (
    LOGGED_OUT,
    NETWORK_ERROR,
    QR_BATCH_S,
    UNLINKED_REASONS,
    CredsUpdated,
    Disconnected,
    PairingCodeIssued,
    TransportEvent,
    normalise_phone,
)
from actor_admin.whatsapp._neonize_map import (
    PAIRING_CODE_TTL_S,
    format_jid,
    format_pairing_code,
    is_terminal,
    map_event,
    map_login_status,
    needs_lid_lookup,
    phone_of,
    qr_issued,
    type_name,
)
from actor_admin.whatsapp._neonize_store import (
    StoreFormatError,
    WorkingDir,
    remove_leftovers,
    remove_store,
    restore_store,
    snapshot_store,
)
from actor_admin.whatsapp._transport import Deliver, LinkSpec, TransportError, TransportKind

log = logging.getLogger(__name__)

INSTALL_HINT: Final = "pip install 'actor-admin[whatsapp]'"

_PAIR_SUCCESS: Final = 2  # neonize.PairStatus.SUCCESS

T = TypeVar("T")


class NeonizeMissing(RuntimeError):
    """neonize (the real WhatsApp client) is not installed or its shared library cannot load."""

    def __init__(self, cause: str = "") -> None:
        why = f" ({cause})" if cause else ""
        super().__init__(
            f"WHATSAPP_TRANSPORT=neonize needs the optional WhatsApp client, which is not usable{why}. "
            f"Install it with: {INSTALL_HINT}"
        )


def neonize_available() -> bool:
    """True when neonize imports and its Go library loads on this machine."""
    try:
        _neonize_api()
    except NeonizeMissing:
        return False
    return True


def require_neonize() -> None:
    """Raise :class:`NeonizeMissing` (with the install hint) unless neonize is usable."""
    _neonize_api()


@final
@attrs.frozen
class ClientSpec:
    """What a client for one link is made from.

    ``session_name`` is unique per link (not only per company): neonize keys its Go-side clients by
    this name in one process-wide map, and stopping a client by name must never hit the next link
    of the same company.
    """

    salon_id: int
    session_name: str
    db_path: Path
    new_device: bool
    proxy: str | None = None


class ClientHandlers(Protocol):
    """The callbacks a client calls, from threads that are not trio's."""

    def on_qr(self, code: str) -> None: ...

    def on_login_status(self, status: str) -> None: ...

    def on_event(self, event: object) -> None: ...


class NeonizeClient(Protocol):
    """The few blocking operations a link needs from a neonize client (a seam for tests)."""

    def run(self, handlers: ClientHandlers) -> None:
        """Connect and block until the client is stopped; raise if the connection cannot start."""

    def stop(self) -> None:
        """Disconnect (without logging out) and release the client; idempotent."""

    def own_jid(self) -> str: ...

    def pair_phone(self, phone: str) -> str: ...

    def send_text(self, to: str, text: str) -> str: ...

    def phone_for_lid(self, lid: str) -> str | None:
        """The phone number whatsmeow's LID map holds for ``lid`` (``"<digits>@lid"``), if any."""

    def logout(self) -> None: ...


ClientFactory = Callable[[ClientSpec], NeonizeClient]


@functools.cache
def _neonize_api() -> tuple[Any, type[Any], tuple[type[Any], ...]]:
    """Import neonize once: its client module, our client class, the event classes we subscribe to.

    Also makes neonize's connection threads daemonic. neonize 0.5.2 runs each Go connection in a
    non-daemon thread that returns only when Go does; after ``Stop`` during a QR batch Go keeps
    looping until the batch runs out (up to ~160 s), and a stuck client may never return
    (neonize#41). A non-daemon thread would hold the process open past its shutdown deadline.
    """
    try:
        import neonize.client as neonize_client
        from neonize import events as ev
    except Exception as exc:  # ImportError, OSError from the .so, neonize's own RuntimeError
        raise NeonizeMissing(f"{type(exc).__name__}: {exc}") from exc

    class _DaemonThread(threading.Thread):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["daemon"] = True
            super().__init__(*args, **kwargs)

    neonize_client.Thread = _DaemonThread

    class _Client(neonize_client.NewClient):  # type: ignore[misc]
        """neonize's client, with the login-status callback (how a QR batch ended) made visible.

        neonize 0.5.2 only ``print``s it, from the name-mangled ``__onLoginStatus``; this overrides
        that method by its mangled name.
        """

        login_status_handler: Callable[[str], None] | None = None

        def _NewClient__onLoginStatus(self, uuid: int, status: int | None) -> None:
            handler = self.login_status_handler
            if handler is not None and status:
                handler(ctypes.string_at(status).decode(errors="replace"))

    subscribed = (
        ev.PairStatusEv,
        ev.ConnectedEv,
        ev.KeepAliveTimeoutEv,
        ev.KeepAliveRestoredEv,
        ev.LoggedOutEv,
        ev.StreamReplacedEv,
        ev.TemporaryBanEv,
        ev.ConnectFailureEv,
        ev.ClientOutdatedEv,
        ev.DisconnectedEv,
        ev.MessageEv,
    )
    return neonize_client, _Client, subscribed


@final
class _RealClient:
    """A neonize ``NewClient`` for one link.

    Every call into Go holds a per-client lock and is refused once the client is stopped: the Go
    bridge looks clients up in a map and dereferences what it finds, so a call racing ``Stop``
    (which deletes the entry) would crash the whole process with a nil pointer.
    """

    def __init__(self, spec: ClientSpec) -> None:
        _, client_class, self._subscribed = _neonize_api()
        self._spec = spec
        self._client = client_class(
            str(spec.db_path), uuid=spec.session_name, new_device=spec.new_device
        )
        self._lock = threading.Lock()
        self._stopped = False

    def run(self, handlers: ClientHandlers) -> None:
        client = self._client
        client.event.qr(lambda _client, data: handlers.on_qr(bytes(data).decode(errors="replace")))
        for event_class in self._subscribed:
            client.event(event_class)(lambda _client, event: handlers.on_event(event))
        client.login_status_handler = handlers.on_login_status
        with self._lock:
            if self._stopped:
                return
        if self._spec.proxy:
            from neonize._binder import ProxySettings

            client.connect(ProxySettings(proxy_address=self._spec.proxy))
        else:
            client.connect()

    def stop(self) -> None:
        # Always calls Go's Stop (a no-op for an unknown name): a second call is how a client
        # that registered itself after the first one gets stopped.
        with self._lock:
            self._stopped = True
            self._client.stop()

    def _locked(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._stopped:
                raise TransportError("the WhatsApp client is stopped")
            return fn()

    def own_jid(self) -> str:
        return self._locked(lambda: format_jid(self._client.get_me().JID))

    def pair_phone(self, phone: str) -> str:
        return self._locked(lambda: str(self._client.PairPhone(phone, True)))

    def send_text(self, to: str, text: str) -> str:
        return self._locked(lambda: str(self._client.send_message(to, text).ID))

    def phone_for_lid(self, lid: str) -> str | None:
        from neonize.utils.jid import build_jid

        user, _, server = lid.partition("@")
        return self._locked(lambda: phone_of(self._client.get_pn_from_lid(build_jid(user, server))))

    def logout(self) -> None:
        self._locked(self._client.logout)


@final
class NeonizeTransport:
    """Opens neonize links, one per connection attempt of one company.

    Credentials are the company's whatsmeow device store packed as bytes (see
    ``_neonize_store``): restored into a private SQLite file for the life of a link, snapshotted
    back into ``CredsUpdated`` events, deleted when the link closes.

    Making the transport claims a directory of this process's own under ``store_dir`` and removes
    the working stores that dead processes left there and in ``legacy_store_dirs`` (one log line
    names how many): after a crash, the plaintext copies last only until the next start.

    Args:
        store_dir: the RAM-backed root for working stores (``ram_store_root``; created ``0700``).
            Never a persistent disk: the stores hold the device's keys unencrypted.
        legacy_store_dirs: where earlier releases kept working stores (``DATA_DIR/neonize``);
            their leftovers are removed at start.
        proxy: optional ``socks5://`` / ``http://`` proxy for WhatsApp's websocket.
        snapshot_interval_s: how often a connected link checks its store for changes to persist.
        call_timeout_s: bound on send / pairing-code calls.
        close_timeout_s: bound on stopping the client in ``aclose()`` (neonize#41: it may hang).
        logout_timeout_s: bound on the logout request.
        client_factory: makes the client for a link; the default is the real neonize client.

    Raises:
        NeonizeMissing: with the default client factory, when neonize is not usable here.
    """

    kind: ClassVar[TransportKind] = "neonize"

    def __init__(
        self,
        store_dir: Path,
        *,
        legacy_store_dirs: Sequence[Path] = (),
        proxy: str | None = None,
        snapshot_interval_s: float = 60.0,
        call_timeout_s: float = 30.0,
        close_timeout_s: float = 5.0,
        logout_timeout_s: float = 10.0,
        client_factory: ClientFactory | None = None,
    ) -> None:
        if client_factory is None:
            require_neonize()
            client_factory = _RealClient
        self._working = WorkingDir(store_dir)
        #: The leftover store files removed at start (dead processes' and earlier releases').
        self.removed_leftovers = [*self._working.removed, *remove_leftovers(legacy_store_dirs)]
        if self.removed_leftovers:
            places = sorted({str(p.parent) for p in self.removed_leftovers})
            log.warning(
                "removed %d leftover WhatsApp working store file(s) (plaintext keys a crash or an earlier "
                "release left behind; the encrypted copies in PostgreSQL are intact) from %s",
                len(self.removed_leftovers),
                ", ".join(places),
            )
        self._store_dir = self._working.path
        self._proxy = proxy
        self._snapshot_interval_s = snapshot_interval_s
        self._call_timeout_s = call_timeout_s
        self._close_timeout_s = close_timeout_s
        self._logout_timeout_s = logout_timeout_s
        self._client_factory = client_factory
        self._limiters: tuple[trio.CapacityLimiter, trio.CapacityLimiter] | None = None

    @property
    def store_dir(self) -> Path:
        """This process's own directory of working stores."""
        return self._store_dir

    def close(self) -> None:
        """Delete this process's working-store directory; call once every link is closed."""
        self._working.close()

    def _thread_limiters(self) -> tuple[trio.CapacityLimiter, trio.CapacityLimiter]:
        # Made inside the trio run (first open). Runner threads live as long as their connection,
        # so they get an unbounded limiter of their own; short calls get a bounded one that a
        # hung Go call cannot take from the rest of the process.
        if self._limiters is None:
            self._limiters = (trio.CapacityLimiter(math.inf), trio.CapacityLimiter(64))
        return self._limiters

    async def open(self, nursery: trio.Nursery, spec: LinkSpec) -> NeonizeLink:
        """Start connecting; no credentials start a fresh pairing (QR batch).

        Credentials that are not a neonize store snapshot (e.g. the simulator's) end the link at
        once with ``Disconnected(401)``, as WhatsApp ends a connection of a device it does not know.
        """
        salon_id, credentials = spec.salon_id, spec.credentials
        token = trio.lowlevel.current_trio_token()
        runner_limiter, call_limiter = self._thread_limiters()
        session_name = f"salon-{salon_id}-{secrets.token_hex(6)}"
        db_path = self._store_dir / f"{session_name}.db"

        def prepare() -> None:
            self._store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if credentials is not None:
                restore_store(credentials, db_path)

        unusable: StoreFormatError | None = None
        try:
            await trio.to_thread.run_sync(prepare, limiter=call_limiter)
        except StoreFormatError as exc:
            unusable = exc
        client_spec = ClientSpec(
            salon_id=salon_id,
            session_name=session_name,
            db_path=db_path,
            new_device=credentials is None,
            proxy=self._proxy,
        )
        client: NeonizeClient
        if unusable is not None:
            client = _NoClient()
        else:
            try:
                client = self._client_factory(client_spec)
            except BaseException:
                await trio.to_thread.run_sync(remove_store, db_path, limiter=call_limiter)
                raise
        link = NeonizeLink(
            client=client,
            spec=client_spec,
            deliver=spec.deliver,
            trio_token=token,
            runner_limiter=runner_limiter,
            call_limiter=call_limiter,
            known_credentials=credentials,
            snapshot_interval_s=self._snapshot_interval_s,
            call_timeout_s=self._call_timeout_s,
            close_timeout_s=self._close_timeout_s,
            logout_timeout_s=self._logout_timeout_s,
        )
        if unusable is not None:
            # Like WhatsApp meeting credentials it does not know: the device is not linked.
            end = Disconnected(reason=LOGGED_OUT, detail=f"unusable credentials: {unusable}")
            nursery.start_soon(link._fail, end, name=f"neonize-link-{salon_id}")
            return link
        nursery.start_soon(link._run, name=f"neonize-link-{salon_id}")
        nursery.start_soon(link._snapshot_loop, name=f"neonize-snapshots-{salon_id}")
        return link


@final
class NeonizeLink:
    """One neonize connection attempt of one company; see :class:`~actor_admin.whatsapp.Link`.

    State that decides what the actor sees (``_closed``, ``_ended``) is touched only in the trio
    thread. Callback threads read ``_dead`` only to skip work early; the trio thread re-checks.
    """

    def __init__(
        self,
        *,
        client: NeonizeClient,
        spec: ClientSpec,
        deliver: Deliver,
        trio_token: trio.lowlevel.TrioToken,
        runner_limiter: trio.CapacityLimiter,
        call_limiter: trio.CapacityLimiter,
        known_credentials: bytes | None,
        snapshot_interval_s: float,
        call_timeout_s: float,
        close_timeout_s: float,
        logout_timeout_s: float,
    ) -> None:
        self._client = client
        self._spec = spec
        self._about = {"salon_id": spec.salon_id}  # for log lines: they run on threads without the salon context
        self._deliver = deliver
        self._token = trio_token
        self._runner_limiter = runner_limiter
        self._call_limiter = call_limiter
        self._snapshot_interval_s = snapshot_interval_s
        self._call_timeout_s = call_timeout_s
        self._close_timeout_s = close_timeout_s
        self._logout_timeout_s = logout_timeout_s
        # trio thread only
        self._closed = False  # aclose()/logout() began, or the runner task is gone
        self._ended = False  # Disconnected was reported
        self._cleaned = False
        self._done = trio.Event()  # closed or ended: wakes the snapshot loop
        self._first_qr = trio.Event()
        self._batch_started_at: float | None = None
        # callback threads (and read from trio)
        self._dead = threading.Event()
        self._ending = threading.Event()  # a callback thread is reporting the link's end
        self._connected = False
        self._qr_seq = 0
        self._snapshot_lock = threading.Lock()
        self._last_digest = hashlib.sha256(known_credentials).digest() if known_credentials else None

    # ---- the Link protocol -------------------------------------------------------------

    async def request_pairing_code(self, phone: str) -> None:
        """Ask WhatsApp for a pairing code for ``phone``; it arrives as ``PairingCodeIssued``.

        Waits (up to the call timeout) for the connection to show its first QR: WhatsApp hands
        out pairing codes only on a connection that is in the pairing phase.
        """
        _check_phone(phone)
        self._check_open()
        with trio.move_on_after(self._call_timeout_s):
            await self._first_qr.wait()
        if not self._first_qr.is_set():
            raise TransportError("no pairing session yet: the connection has shown no QR")
        raw = await self._call(self._client.pair_phone, phone, bound_s=self._call_timeout_s)
        elapsed = 0.0
        if self._batch_started_at is not None:
            elapsed = trio.current_time() - self._batch_started_at
        ttl = max(min(PAIRING_CODE_TTL_S, QR_BATCH_S - elapsed), 0.0)
        self._accept(PairingCodeIssued(code=format_pairing_code(raw), ttl_s=ttl))

    async def send_message(self, to: str, text: str) -> str:
        """Send ``text`` to the phone number ``to`` (digits); return WhatsApp's message id."""
        _check_phone(to)
        self._check_open()
        return await self._call(self._client.send_text, to, text, bound_s=self._call_timeout_s)

    async def received(self, wa_id: str) -> None:
        """Nothing to do: whatsmeow sends WhatsApp's receipts itself (no checkpoint: see Link.received)."""

    async def logout(self) -> None:
        """Unlink the device from the phone, then close. Nothing is reported afterwards.

        Raises:
            TransportError: the logout did not reach WhatsApp (the link is closed anyway).
        """
        if self._closed:
            return
        self._mark_closed()
        failure: TransportError | None = None
        with trio.CancelScope(shield=True):
            try:
                await self._call(self._client.logout, bound_s=self._logout_timeout_s)
            except TransportError as exc:
                failure = exc
            await self._cleanup()
        if failure is not None:
            raise failure

    async def aclose(self) -> None:
        """Close without logging out (credentials stay valid); bounded, idempotent, cancel-safe."""
        if self._closed:
            return
        self._mark_closed()
        with trio.CancelScope(shield=True):
            await self._cleanup()

    # ---- callbacks, on neonize's threads -------------------------------------------------

    def on_qr(self, code: str) -> None:
        if self._dead.is_set():
            self._stop_client_quietly()
            return
        self._qr_seq += 1
        self._to_trio(self._accept_qr, code, self._qr_seq)

    def on_login_status(self, status: str) -> None:
        if self._dead.is_set():
            self._stop_client_quietly()
            return
        end = map_login_status(status)
        if end is None:
            return
        self._ending.set()
        self._stop_client_quietly()
        self._to_trio(self._accept, end)

    def on_event(self, event: object) -> None:
        if self._dead.is_set():
            # A sign of life from a client we stopped: Stop may have raced the Go side's start
            # (it registers the client only after opening its store), so stop it again.
            self._stop_client_quietly()
            return
        own_jid = ""
        lid_phone: str | None = None
        creds: bytes | None = None
        name = type_name(event)
        if name == "neonize.PairStatus" and getattr(event, "Status", 0) == _PAIR_SUCCESS:
            # The new device is in the store now: announce it, then persist it at once.
            self._to_trio(self._accept_raw, event, "")
            creds = self._quietly(self._snapshot_if_changed, None)
            if creds is not None:
                self._to_trio(self._accept, CredsUpdated(credentials=creds))
            return
        if name == "neonize.Connected":
            # Persist first, then announce: the actor stores the credentials it has when it
            # records the connection.
            self._connected = True
            own_jid = self._quietly(self._client.own_jid, "")
            creds = self._quietly(self._snapshot_if_changed, None)
        elif is_terminal(event):
            reason = map_event(event, 0.0)
            # After an unlinking reason the device is gone from the phone: its store is worthless.
            unlinked = isinstance(reason, Disconnected) and reason.reason in UNLINKED_REASONS
            if self._connected and not unlinked:
                creds = self._quietly(self._snapshot_if_changed, None)
            # Stop before reporting: whatsmeow may already be reconnecting on its own, and the
            # session machine must not open the next link while this client still could. The
            # runner returns once stopped; ``_ending`` tells it that the real reason is on its way.
            self._ending.set()
            self._stop_client_quietly()
        elif (lid := needs_lid_lookup(event)) is not None:
            # The message names its sender only by LID: whatsmeow's LID map may know the number
            # (it learns pairs from other messages, history sync and contact queries).
            lid_phone = self._quietly(functools.partial(self._client.phone_for_lid, lid), None)
        if creds is not None:
            self._to_trio(self._accept, CredsUpdated(credentials=creds))
        self._to_trio(self._accept_raw, event, own_jid, lid_phone)

    # ---- the trio side ---------------------------------------------------------------

    def _accept(self, event: TransportEvent) -> None:
        """The one gate every event passes, in the trio thread."""
        if self._closed or self._ended:
            return
        if isinstance(event, Disconnected):
            self._ended = True
            self._dead.set()
            self._done.set()
        self._deliver(event)

    def _accept_raw(self, event: object, own_jid: str, lid_phone: str | None = None) -> None:
        mapped = map_event(event, trio.current_time(), own_jid=own_jid, lid_phone=lid_phone)
        if mapped is not None:
            self._accept(mapped)

    def _accept_qr(self, code: str, seq: int) -> None:
        if self._closed or self._ended:
            return
        if seq == 1:
            self._batch_started_at = trio.current_time()
        self._first_qr.set()
        self._accept(qr_issued(code, seq))

    async def _run(self) -> None:
        """Own the client's blocking ``run()``; report its end if nothing else did."""
        try:
            try:
                await trio.to_thread.run_sync(
                    self._client.run, self, abandon_on_cancel=True, limiter=self._runner_limiter
                )
                detail = "connection ended"
            except Exception as exc:
                detail = str(exc) or type(exc).__name__
            if self._ending.is_set():
                # A callback thread stopped the client to report an end with its real reason
                # (440, 401, …); let that one arrive rather than racing it with a generic one.
                with trio.move_on_after(self._close_timeout_s):
                    await self._done.wait()
            self._accept(Disconnected(reason=NETWORK_ERROR, detail=detail))
        finally:
            # Cancelled (the actor died) or done: nothing more reaches the actor, and the client
            # must not outlive its owner — an orphaned connection would fight the next one (440).
            self._mark_closed()
            with trio.CancelScope(shield=True):
                await self._cleanup()

    async def _fail(self, end: Disconnected) -> None:
        """Report ``end`` as this link's whole life (it never had a client)."""
        self._accept(end)
        self._mark_closed()
        with trio.CancelScope(shield=True):
            await self._cleanup()

    async def _snapshot_loop(self) -> None:
        """While connected, persist store changes (new signal sessions, pre-keys) periodically."""
        while True:
            with trio.move_on_after(self._snapshot_interval_s):
                await self._done.wait()
            if self._done.is_set():
                return
            if not self._connected:
                continue
            try:
                creds = await trio.to_thread.run_sync(
                    self._snapshot_if_changed, abandon_on_cancel=True, limiter=self._call_limiter
                )
            except Exception:
                log.warning("salon %s: store snapshot failed", self._spec.salon_id, exc_info=True, extra=self._about)
                continue
            if creds is not None:
                self._accept(CredsUpdated(credentials=creds))

    async def _cleanup(self) -> None:
        """Stop the client (bounded: neonize#41) and delete the store's working copy, once."""
        if self._cleaned:
            return
        self._cleaned = True
        with trio.move_on_after(self._close_timeout_s) as scope:
            await trio.to_thread.run_sync(
                self._stop_client_quietly, abandon_on_cancel=True, limiter=self._call_limiter
            )
        if scope.cancelled_caught:
            log.warning(
                "salon %s: neonize client did not stop within %s s; abandoned",
                self._spec.salon_id,
                self._close_timeout_s,
                extra=self._about,
            )
        with trio.move_on_after(self._close_timeout_s):
            await trio.to_thread.run_sync(
                remove_store, self._spec.db_path, abandon_on_cancel=True, limiter=self._call_limiter
            )

    def _mark_closed(self) -> None:
        self._closed = True
        self._dead.set()
        self._done.set()

    def _check_open(self) -> None:
        if self._closed or self._ended:
            raise TransportError("the WhatsApp link is closed")

    async def _call(self, fn: Callable[..., T], *args: object, bound_s: float) -> T:
        """Run a blocking client call in a thread, bounded; every failure is a TransportError."""
        with trio.move_on_after(bound_s):
            try:
                return await trio.to_thread.run_sync(
                    fn, *args, abandon_on_cancel=True, limiter=self._call_limiter
                )
            except TransportError:
                raise
            except Exception as exc:
                raise TransportError(str(exc) or type(exc).__name__) from exc
        raise TransportError(f"WhatsApp did not answer within {bound_s} s")

    # ---- helpers for callback threads ------------------------------------------------------

    def _to_trio(self, fn: Callable[..., None], *args: object) -> None:
        try:
            trio.from_thread.run_sync(fn, *args, trio_token=self._token)
        except trio.RunFinishedError:
            pass  # the process is shutting down; nobody is left to tell
        except Exception:
            log.exception("salon %s: delivering a WhatsApp event failed", self._spec.salon_id, extra=self._about)

    def _stop_client_quietly(self) -> None:
        try:
            self._client.stop()
        except Exception:
            log.warning(
                "salon %s: stopping the neonize client failed", self._spec.salon_id, exc_info=True, extra=self._about
            )

    def _snapshot_if_changed(self) -> bytes | None:
        with self._snapshot_lock:
            if not os.path.exists(self._spec.db_path):
                return None
            blob = snapshot_store(self._spec.db_path)
            digest = hashlib.sha256(blob).digest()
            if digest == self._last_digest:
                return None
            self._last_digest = digest
            return blob

    def _quietly(self, fn: Callable[[], T], default: T) -> T:
        try:
            return fn()
        except Exception:
            log.warning(
                "salon %s: %s failed",
                self._spec.salon_id,
                getattr(fn, "__name__", fn),
                exc_info=True,
                extra=self._about,
            )
            return default


def _check_phone(phone: str) -> None:
    """The session hands over numbers as :func:`~actor_admin.session.normalise_phone` returns them."""
    if normalise_phone(phone) != phone:
        raise TransportError(f"not a phone number (10 to 15 digits, country code first): {phone!r}")


@final
class _NoClient:
    """The client of a link that cannot connect (unusable credentials): every call refuses."""

    def run(self, handlers: ClientHandlers) -> None:
        return None

    def stop(self) -> None:
        return None

    def own_jid(self) -> str:
        raise TransportError("not connected")

    def pair_phone(self, phone: str) -> str:
        raise TransportError("not connected")

    def send_text(self, to: str, text: str) -> str:
        raise TransportError("not connected")

    def phone_for_lid(self, lid: str) -> str | None:
        return None

    def logout(self) -> None:
        raise TransportError("not connected")
