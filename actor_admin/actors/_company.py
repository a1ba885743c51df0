"""The ``CompanySession`` actor: one per salon, a thin loop around the session machine.

receive a message → ``step(state, event, now)`` → perform the effects in order. Everything it
decides is in :mod:`actor_admin.session`; here are only the hands: the transport link, timers, the
store, the bus, the inbound stream, and answers to callers who ``ask``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Protocol, final

import attrs
import trio

from actor_admin.cluster import Here, Location, inbound_fields
from actor_admin.json_types import JSON
from actor_admin.logs import about_salon
from actor_admin.runtime import ActorContext, MailboxClosed, MailboxFull, Request, TimerHandle, TimerWheel
from actor_admin.session import Alert as AlertEffect
from actor_admin.session import (
    AskPairingCode,
    CancelTimer,
    CheckOwnership,
    Command,
    ConfirmCredentials,
    Connect,
    DeleteCredentials,
    Disconnect,
    Effect,
    Event,
    Frame,
    LinkFailed,
    LogEvent,
    LogoutDevice,
    MessageReceived,
    MessageSent,
    OwnershipChecked,
    PairingCodeFailed,
    PersistConnection,
    PersistUnlinked,
    Publish,
    RecordSendOutcome,
    Reply,
    SendMessage,
    SessionPolicy,
    SessionState,
    SetTimer,
    StateName,
    StoreCredentials,
    StoreMessage,
    Timer,
    TransportEvent,
    snapshot_frames,
    step,
)
from actor_admin.store import Fenced
from actor_admin.whatsapp import Link, LinkSpec, Transport

from ._ports import ActivationPayload, FramePublisher, InboundSink, SessionStore
from ._registry import Registry
from ._upstream import UpstreamWatch

log = logging.getLogger("actor_admin.actors")

#: Transitions into states that need a person are logged above info (journalctl -p warning / -p err).
_TRANSITION_LEVEL = {"failed": logging.ERROR, "conflict": logging.WARNING, "logged_out": logging.WARNING}


@final
@attrs.frozen
class LinkEvent:
    """A transport event tagged with the link that produced it, so a closed link's leftovers
    are recognised and dropped (a ``Disconnect`` cannot recall what is already in the mailbox)."""

    generation: int
    event: TransportEvent


@final
@attrs.frozen
class GetSnapshot:
    """Ask the actor for the frames a new viewer must see first (state, current QR or code)."""


@final
@attrs.frozen
class Snapshot:
    """The answer to :class:`GetSnapshot`: the frames a viewer who joins now must see, in order."""

    frames: list[Frame]


#: What a company actor's mailbox carries; callers ``ask`` with a ``Command`` or ``GetSnapshot``.
CompanyMessage = Event | LinkEvent | GetSnapshot


class SalonOwnership(Protocol):
    """This node's ownership of salons, as an actor sees it (the cluster's keeper; docs/cluster.md).

    Fence 0 means "no fence": writes are not checked and the node may always connect.
    """

    async def locate(self, salon_id: int) -> Location:
        """Where the salon's actor belongs; claims it for this node when placement says so."""
        ...

    def may_connect(self, salon_id: int, fence: int) -> bool:
        """Whether a connection may be opened now (this node's lease is valid and it still owns the salon)."""
        ...

    async def owns(self, salon_id: int, fence: int) -> bool:
        """Whether ``fence`` is still ``salon_id``'s current fence (asked before the retry after a 440)."""
        ...

    def fenced(self, salon_id: int, fence: int) -> None:
        """A write with ``fence`` was refused: this node lost the salon; its actor is being stopped."""
        ...


@attrs.frozen
class SessionDeps:
    """What every company actor needs; built once by the composition root."""

    transport: Transport
    store: SessionStore
    bus: FramePublisher
    registry: Registry
    policy: SessionPolicy = attrs.field(factory=SessionPolicy)
    #: Where new inbound messages are announced; None: stored only (no Redis).
    inbound: InboundSink | None = None
    #: Which salons this node owns, with which fence. None: one node owns every salon, unfenced.
    ownership: SalonOwnership | None = None
    activation_payload: Callable[[int, str], JSON] | None = None
    sends_per_minute: float = 20.0
    #: The node's view of WhatsApp: outage detection, one probe (docs/whatsapp.md#upstream-outage).
    #: None: every session dials on its own.
    upstream: UpstreamWatch | None = None
    #: The node's actor timers: one task for all (docs/architecture.md#qr-latency).
    timers: TimerWheel = attrs.field(factory=TimerWheel)


class CompanySession:
    """One run of one salon's actor. The supervisor makes a fresh one for every (re)start."""

    def __init__(self, deps: SessionDeps, salon_id: int) -> None:
        self.deps = deps
        self.salon_id = salon_id
        self.state = SessionState()
        self.link: Link | None = None
        self.generation = 0
        self.timers: dict[str, TimerHandle] = {}
        self.waiting: dict[int, Request[CompanyMessage]] = {}
        self.request_ids = itertools.count(1)
        self.send_channel: trio.MemorySendChannel[SendMessage] | None = None
        #: The fence every write of this run states (0: none). None: this node does not own the salon,
        #: or a write was refused — the run writes nothing more and opens no connection.
        self.fence: int | None = 0
        #: A write was refused: another node owns the salon; this run never connects again.
        self.lost = False

    async def __call__(
        self, ctx: ActorContext[int, CompanyMessage], *, task_status: trio.TaskStatus[None]
    ) -> None:
        # Every line logged while this salon's actor works — by its link, httpx, anything — names the salon.
        with about_salon(self.salon_id):
            await self._run(ctx, task_status)

    async def _run(self, ctx: ActorContext[int, CompanyMessage], task_status: trio.TaskStatus[None]) -> None:
        store = self.deps.store
        ownership = self.deps.ownership
        if ownership is not None:
            where = await ownership.locate(self.salon_id)
            self.fence = where.fence if isinstance(where, Here) else None
        # The salon id seeds the back-off jitter: salons that dropped together retry spread out, and
        # the same salon replays the same delays (deterministic tests).
        has_credentials = await store.credentials.load(self.salon_id) is not None
        origin = await store.credentials.origin(self.salon_id) if has_credentials else None
        self.state = SessionState.initial(
            has_credentials=has_credentials,
            jitter_seed=self.salon_id,
            # Only the transport that made the credentials can say they are void (a 401 deletes them).
            credentials_confirmed=origin is not None and origin.transport == self.deps.transport.kind,
        )
        self._publish_view()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.ctx = ctx
            task_status.started()
            try:
                async for message in ctx.inbox:
                    try:
                        await self.handle(message)
                    except Fenced:
                        await self._lost_salon()
            finally:
                for timer in self.timers.values():
                    timer.cancel()
                self.timers.clear()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self._close_link()
                self._clear_view()
                if self.deps.upstream is not None:
                    self.deps.upstream.forget(self.salon_id)
                for request in self.waiting.values():
                    if not request.answered:
                        request.fail(MailboxClosed("the session stopped before answering"))
                nursery.cancel_scope.cancel()

    async def handle(self, message: CompanyMessage | Request[CompanyMessage]) -> None:
        event: Event
        if isinstance(message, Request):
            body = message.body
            if isinstance(body, GetSnapshot):
                frames = snapshot_frames(self.state, trio.current_time())
                message.reply(Snapshot(frames))
                return
            if not isinstance(body, Command):
                message.fail(TypeError(f"a session answers commands, not {type(body).__name__}"))
                return
            request_id = next(self.request_ids)
            self.waiting[request_id] = message
            event = attrs.evolve(body, request_id=request_id)
        elif isinstance(message, GetSnapshot):
            return  # only meaningful as a request: nobody waits for this one
        elif isinstance(message, LinkEvent):
            if message.generation != self.generation:
                return  # from a link we already closed
            event = message.event
        else:
            event = message
        before = self.state.name
        self.state, effects = step(self.state, event, trio.current_time(), policy=self.deps.policy)
        if self.state.name != before:
            self._log_transition(before, event)
        for effect in effects:
            await self.perform(effect)
        self._publish_view()
        if self.deps.upstream is not None and self.state.name != before:
            self._tell_upstream(self.deps.upstream, before)

    def _log_transition(self, before: StateName, event: Event) -> None:
        """One line per transition, with what caused it: operators grep a salon's history by salon_id.
        Its fields are not even gathered when the level is off (docs/architecture.md#qr-latency)."""
        level = _TRANSITION_LEVEL.get(self.state.name, logging.INFO)
        if not log.isEnabledFor(level):
            return
        log.log(
            level,
            "session %s -> %s",
            before,
            self.state.name,
            extra={
                "salon_id": self.salon_id,
                "state": self.state.name,
                "reason": self.state.reason,
                "cause": _cause(event),
            },
        )

    def _tell_upstream(self, upstream: UpstreamWatch, before: StateName) -> None:
        """Report what the node's outage detector needs: connections made, lost, dials that failed."""
        after = self.state
        if after.name == "connected":
            upstream.connected(self.salon_id)
        elif before == "connected" and after.name in ("reconnecting", "connecting"):
            if after.reason != "restart_required":  # WhatsApp asked for a reconnect: no loss
                upstream.connection_lost(self.salon_id)
        elif before == "connecting" and not after.link_open:
            upstream.dial_failed(self.salon_id)

    # -- effects ----------------------------------------------------------------------------

    async def _lost_salon(self) -> None:
        """A write was refused: another node owns the salon now. Close the connection without logging
        the device out, write nothing more, never reconnect; the keeper stops this actor."""
        fence, self.fence, self.lost = self.fence, None, True
        await self._close_link()
        if fence is not None and self.deps.ownership is not None:
            self.deps.ownership.fenced(self.salon_id, fence)

    async def perform(self, effect: Effect) -> None:
        store = self.deps.store
        salon_id = self.salon_id
        if self.fence is None and _forbidden_without_salon(effect):
            return
        # Only effects that write nothing get past the guard above without a fence; 0 would state none.
        fence = self.fence if self.fence is not None else 0
        # A match tries its cases in order: the effects of nearly every step come first.
        match effect:
            case Publish(frame=frame):
                await self._publish(frame)
            case SetTimer(name=name, at=at):
                self._set_timer(name, at)
            case CancelTimer(name=name):
                timer = self.timers.pop(name, None)
                if timer is not None:
                    timer.cancel()
            case Reply(request_id=request_id, outcome=outcome):
                request = self.waiting.pop(request_id, None) if request_id is not None else None
                if request is not None:
                    # An answer may come before the step's last effect (request_qr's, before the dial):
                    # whoever asked must not then find an older state in the registry.
                    self._publish_view()
                    request.reply(outcome)
            case Connect(with_credentials=with_credentials):
                await self._open_link(with_credentials)
            case Disconnect():
                await self._close_link()
            case LogoutDevice():
                link, self.link = self.link, None
                self.generation += 1
                if link is not None:
                    with trio.move_on_after(10):
                        await link.logout()
            case AskPairingCode(phone=phone):
                await self._ask_pairing_code(phone)
            case SendMessage():
                if self.send_channel is None:
                    # Started at the first send, not with the actor: most salons sit idle, and a
                    # pacer task with its queue per salon was a quarter of an idle salon's memory
                    # (docs/capacity.md#what-a-salon-holds).
                    self.send_channel, receive = trio.open_memory_channel[SendMessage](256)
                    self.nursery.start_soon(self._pace_sends, receive)
                try:
                    self.send_channel.send_nowait(effect)
                except trio.WouldBlock:
                    self._feed(MessageSent(effect.idempotency_key, None, "send queue full"))
            case PersistConnection(phone=phone):
                await store.companies.record_connection(
                    salon_id, phone, activation_payload=self._activation_payload(), fence=fence
                )
            case PersistUnlinked(reason=reason):
                await store.companies.mark_disconnected(salon_id, fence=fence)
                await store.events.append(salon_id, "whatsapp_unlinked", {"reason": reason}, fence=fence)
            case StoreCredentials(credentials=credentials, account=account):
                kind = self.deps.transport.kind
                await store.credentials.save(salon_id, credentials, transport=kind, account=account, fence=fence)
            case ConfirmCredentials(account=account):
                await store.credentials.confirm(salon_id, self.deps.transport.kind, account, fence=fence)
            case DeleteCredentials():
                await store.credentials.delete(salon_id, fence=fence)
            case StoreMessage(message=MessageReceived(wa_id=wa_id, peer=peer, text=text, peer_lid=peer_lid)):
                counts = self.deps.registry.messages
                if await store.messages.insert_inbound(salon_id, wa_id, peer, text, fence=fence, peer_lid=peer_lid):
                    counts.inbound_stored += 1
                    if not peer:
                        counts.inbound_unresolved_lid += 1
                        log.warning(
                            "inbound message %s stored with the sender's LID only (%s): no phone number to reply to",
                            wa_id,
                            peer_lid,
                            extra={"salon_id": salon_id},
                        )
                    await self._pass_on_inbound(wa_id, peer, text, peer_lid)
                else:
                    counts.inbound_duplicates += 1
                if self.link is not None:  # stored (now or before): WhatsApp need not deliver it again
                    await self.link.received(wa_id)
            case RecordSendOutcome(outcome=MessageSent(idempotency_key=key, wa_id=wa_id, error=error)):
                counts = self.deps.registry.messages
                if error is None:
                    counts.outbound_sent += 1
                else:
                    counts.outbound_failed += 1
                await store.messages.record_send_outcome(salon_id, key, wa_id=wa_id, error=error, fence=fence)
            case LogEvent(type=type_, data=data):
                log.info("%s", type_, extra={"salon_id": salon_id, **dict(data)})
                await store.events.append(salon_id, type_, dict(data), fence=fence)
            case AlertEffect(code=code, message=text):
                log.warning("alert %s: %s", code, text, extra={"salon_id": salon_id})
            case CheckOwnership():
                ownership = self.deps.ownership
                owned = ownership is None or (self.fence is not None and await ownership.owns(salon_id, self.fence))
                self._feed(OwnershipChecked(owned))

    def _activation_payload(self) -> ActivationPayload | None:
        make = self.deps.activation_payload
        if make is None:
            return None
        salon_id = self.salon_id
        return lambda api_key: make(salon_id, api_key)

    async def _open_link(self, with_credentials: bool) -> None:
        await self._close_link()
        ownership = self.deps.ownership
        if ownership is not None and not self.lost:
            # Claimed since this run started (a viewer came before the keeper's first round)?
            where = await ownership.locate(self.salon_id)
            self.fence = where.fence if isinstance(where, Here) else None
        fence = self.fence
        if ownership is not None and (fence is None or not ownership.may_connect(self.salon_id, fence)):
            # The lease lapsed (or the salon moved): open nothing; the machine retries after its back-off.
            self._feed(LinkFailed("this node's ownership of the salon is not confirmed"))
            return
        upstream = self.deps.upstream
        if with_credentials and upstream is not None and not upstream.may_dial(self.salon_id):
            # WhatsApp is down for the whole node: wait on the slow cadence; one probe dials for all.
            self._feed(LinkFailed("held back: WhatsApp is unreachable, one probe tests it", upstream_down=True))
            return
        credentials = await self.deps.store.credentials.load(self.salon_id) if with_credentials else None
        self.generation += 1
        generation = self.generation
        ref = self.ctx.ref

        def deliver(event: TransportEvent) -> None:
            try:
                ref.send_nowait(LinkEvent(generation, event))
            except MailboxFull:
                # Losing a transport event would desynchronise the machine: crash the run and let
                # the supervisor restart it from the stored truth.
                self.nursery.cancel_scope.cancel()
                log.error("mailbox full; restarting session", extra={"salon_id": self.salon_id})
            except MailboxClosed:
                pass

        try:
            spec = LinkSpec(salon_id=self.salon_id, credentials=credentials, deliver=deliver)
            self.link = await self.deps.transport.open(self.nursery, spec)
        except Exception as exc:
            self.link = None
            self._feed(LinkFailed(f"{type(exc).__name__}: {exc}"))

    async def _close_link(self) -> None:
        link, self.link = self.link, None
        self.generation += 1
        if link is not None:
            with trio.move_on_after(10):
                await link.aclose()

    async def _ask_pairing_code(self, phone: str) -> None:
        if self.link is None:
            self._feed(PairingCodeFailed("no open connection"))
            return
        try:
            await self.link.request_pairing_code(phone)
        except Exception as exc:
            self._feed(PairingCodeFailed(str(exc)))

    async def _pace_sends(self, receive: trio.MemoryReceiveChannel[SendMessage]) -> None:
        """Sends leave at most ``sends_per_minute`` a minute, so a burst never gets a number banned."""
        interval = 60.0 / self.deps.sends_per_minute
        next_at = trio.current_time()
        async for effect in receive:
            await trio.sleep_until(next_at)
            next_at = max(trio.current_time(), next_at) + interval
            link = self.link
            if link is None:
                self._feed(MessageSent(effect.idempotency_key, None, "not connected"))
                continue
            try:
                wa_id = await link.send_message(effect.to, effect.text)
            except Exception as exc:
                self._feed(MessageSent(effect.idempotency_key, None, str(exc) or type(exc).__name__))
            else:
                self._feed(MessageSent(effect.idempotency_key, wa_id))

    async def _pass_on_inbound(self, wa_id: str, peer: str, text: str, peer_lid: str | None = None) -> None:
        if self.deps.inbound is None:
            return
        fields = inbound_fields(wa_id, peer, text, peer_lid)
        try:
            # The sink records the announcement too (published_at), with this run's fence.
            await self.deps.inbound.publish_inbound(self.salon_id, fields, fence=self.fence or 0)
        except Exception as exc:
            log.warning("inbound stream unavailable: %s", exc, extra={"salon_id": self.salon_id})

    async def _publish(self, frame: Frame) -> None:
        try:
            await self.deps.bus.publish(self.salon_id, frame)
        except Exception as exc:
            log.warning("bus publish failed: %s", exc, extra={"salon_id": self.salon_id})

    def _set_timer(self, name: str, at: float) -> None:
        old = self.timers.pop(name, None)
        if old is not None:
            old.cancel()
        self.timers[name] = self.deps.timers.call_at(at, lambda: self._timer_due(name))

    def _timer_due(self, name: str) -> None:
        # A replaced or cancelled timer never fires, so the one due is the one in ``timers``.
        del self.timers[name]
        self._feed(Timer(name))

    def _feed(self, event: Event) -> None:
        try:
            self.ctx.ref.send_nowait(event)
        except (MailboxFull, MailboxClosed):
            log.error("could not feed %s back to the session", type(event).__name__, extra={"salon_id": self.salon_id})

    def _publish_view(self) -> None:
        self.deps.registry.update(self.salon_id, self.state.name, self.state.phone, self.state.reason)

    def _clear_view(self) -> None:
        self.deps.registry.forget(self.salon_id)


def _forbidden_without_salon(effect: Effect) -> bool:
    """Effects a run that does not own its salon must not perform: its writes (``_open_link`` refuses
    to connect)."""
    return isinstance(
        effect,
        PersistConnection | PersistUnlinked | StoreCredentials | ConfirmCredentials | DeleteCredentials | StoreMessage
        | RecordSendOutcome | LogEvent | LogoutDevice,
    )


def _cause(event: Event) -> str:
    """What made a transition, for its log line: the event's name, with WhatsApp's reason code."""
    reason = getattr(event, "reason", None)
    name = type(event).__name__
    return f"{name}({reason})" if isinstance(reason, int) else name


def company_actor_factory(deps: SessionDeps) -> Callable[[int], CompanySession]:
    return lambda salon_id: CompanySession(deps, salon_id)
