"""Upstream outage detection: when many sessions lose WhatsApp together, one probe instead of a stampede.

A salon's session knows only its own connection; a node sees them all. When WhatsApp itself is down
(or this node's egress is cut), every connected session drops within a moment, and without this
module each would retry on its own: a thousand separate faults, a thousand dials per cadence. Here:

- :class:`OutageDetector` — a small pure state machine (no clock, no I/O; time is an argument),
  tested on its own (``tests/actors/test_upstream.py``). States ``ok`` and ``outage``.
- :class:`UpstreamWatch` — the thin wiring: company actors report to it and ask it before dialling;
  it reads trio's clock and restores the held salons through the router when the outage ends.

The rule (docs/whatsapp.md#upstream-outage):

- **Detection.** In ``ok``, a connected session that loses its connection to a transient cause is
  a *loss*. When at least ``min_lost`` (5) distinct salons lost their connection within
  ``window_s`` (10 s) **and** they are at least ``min_share`` (50 %) of the salons that were
  connected just before (those still connected plus those lost in the window), the node is in an
  *outage*: one node-wide fault, not many separate ones.
- **Hold back, one probe.** In ``outage`` a session that wants to dial with its credentials is held
  back (it is told so and waits on the slow cadence, docs/whatsapp.md#disconnect-policy), except one:
  the first to ask once ``next_probe_at`` has passed becomes the *probe* and dials. Only one probe
  is in flight; a failed probe sets the next one ``probe_backoff`` later (60 s, 120 s, 240 s …, ±25 %).
  So WhatsApp sees one connection attempt per cadence from this node, however many salons wait.
- **Recovery.** Any session connecting (the probe, or a person relinking) proves WhatsApp reachable:
  the node is ``ok`` again and every held salon is restored at the paced restore rate (20 a second),
  without a rescan and without a person.

QR links (no credentials) are never held back: a person is waiting for them, and they say by
themselves that WhatsApp cannot be reached.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Literal, Protocol, final

import attrs
import trio

from actor_admin.backoff import Backoff

from ._registry import Registry

log = logging.getLogger("actor_admin.actors")

UpstreamState = Literal["ok", "outage"]

#: Probe attempts during an outage: 60, 120, 240, 240 … s, ±25 % (45 s to 5 min), like a session's slow cadence.
PROBE_BACKOFF: Final = Backoff(initial_s=60.0, factor=2.0, max_s=240.0, jitter=0.25)


@final
@attrs.frozen(kw_only=True)
class OutagePolicy:
    """The detector's numbers (see the module docstring)."""

    min_lost: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    min_share: float = attrs.field(default=0.5, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)])
    window_s: float = attrs.field(default=10.0, validator=attrs.validators.gt(0.0))
    probe_backoff: Backoff = PROBE_BACKOFF


@final
@attrs.define(kw_only=True)
class OutageDetector:
    """The node's view of WhatsApp: ``ok``, or ``outage`` behind one probe. Pure: ``now`` is given.

    Attributes:
        state: ``ok`` or ``outage``.
        since: when the current outage was recognised.
        probe: the salon whose dial is the probe in flight, if any.
        probes: probe attempts made in the current outage.
        next_probe_at: the earliest time the next probe may dial.
        held: salons held back in the current outage, restored when it ends.
        lost: salons that lost their connection recently (salon → when), for detection.
    """

    policy: OutagePolicy = attrs.field(factory=OutagePolicy)
    seed: int = 0
    state: UpstreamState = "ok"
    since: float | None = None
    probe: int | None = None
    probes: int = 0
    next_probe_at: float = 0.0
    held: set[int] = attrs.field(factory=set)
    lost: dict[int, float] = attrs.field(factory=dict)

    def connection_lost(self, salon_id: int, now: float, *, still_connected: int) -> bool:
        """A connected session lost its connection to a transient cause; ``still_connected`` sessions
        remain connected. Returns True when this loss makes the node recognise an outage."""
        if self.state == "outage":
            self.held.add(salon_id)
            return False
        cutoff = now - self.policy.window_s
        self.lost = {salon: at for salon, at in self.lost.items() if at > cutoff}
        self.lost[salon_id] = now
        count = len(self.lost)
        if count < self.policy.min_lost or count < self.policy.min_share * (still_connected + count):
            return False
        self.state, self.since, self.probes, self.probe = "outage", now, 0, None
        self.held = set(self.lost)
        self.lost = {}
        self.next_probe_at = now + self._probe_delay()
        return True

    def may_dial(self, salon_id: int, now: float) -> bool:
        """May ``salon_id`` dial WhatsApp with its credentials now? In an outage only the probe may;
        the others are held back until it succeeds."""
        if self.state == "ok" or self.probe == salon_id:
            return True
        if self.probe is None and now >= self.next_probe_at:
            self.probe = salon_id
            self.probes += 1
            self.held.discard(salon_id)
            return True
        self.held.add(salon_id)
        return False

    def dial_failed(self, salon_id: int, now: float) -> None:
        """``salon_id``'s dial ended without a connection; if it was the probe, the next one waits."""
        if self.state == "outage" and self.probe == salon_id:
            self.probe = None
            self.held.add(salon_id)
            self.next_probe_at = now + self._probe_delay()

    def connected(self, salon_id: int, now: float) -> list[int]:
        """``salon_id`` connected: WhatsApp is reachable. Ends an outage; returns the salons to restore
        (held back, in salon order), empty when there was no outage."""
        self.lost.pop(salon_id, None)
        if self.state == "ok":
            return []
        released = sorted(self.held - {salon_id})
        self.state, self.since, self.probe, self.probes = "ok", None, None, 0
        self.held = set()
        self.lost = {}
        return released

    def forget(self, salon_id: int) -> None:
        """``salon_id``'s actor stopped: it neither waits nor probes any more."""
        self.held.discard(salon_id)
        self.lost.pop(salon_id, None)
        if self.probe == salon_id:
            self.probe = None  # the next dialer may probe at once: the last attempt never finished

    def _probe_delay(self) -> float:
        fraction = random.Random(self.seed * 1_000_003 + self.probes).random()
        return self.policy.probe_backoff.delay(min(self.probes, 64), fraction)


@final
@attrs.frozen
class UpstreamView:
    """What ``/status`` shows of the node's view of WhatsApp (docs/http-api.md#status)."""

    upstream: UpstreamState
    since: float | None  # trio clock
    held_back: int
    probes: int
    next_probe_in_s: float | None


class Restorer(Protocol):
    """How held salons come back: ``Router.restore`` (paced at the restore rate, 20 a second)."""

    async def restore(
        self, salon_ids: Iterable[int], *, progress: Callable[[int], Awaitable[None] | None] | None = None
    ) -> int: ...

    def running(self, salon_id: int) -> bool: ...


@final
class UpstreamWatch:
    """The detector wired to trio's clock, the registry's count of connected sessions, and the router.

    Company actors call :meth:`connection_lost`, :meth:`may_dial`, :meth:`dial_failed`,
    :meth:`connected` and :meth:`forget`; :meth:`run` (one task per node) restores the salons an
    outage held back, paced by ``restore`` (``Router.restore``).
    """

    def __init__(self, registry: Registry, detector: OutageDetector | None = None) -> None:
        self.registry = registry
        self.detector = detector if detector is not None else OutageDetector()
        self._released: list[int] = []
        self._restoring = 0  # released salons the running restore has not started yet
        self._wake = trio.Event()
        #: Salons restored after outages since start, for tests and logs.
        self.restored_total = 0

    def connection_lost(self, salon_id: int) -> None:
        now = trio.current_time()
        if self.detector.connection_lost(salon_id, now, still_connected=self.registry.count("connected")):
            log.warning(
                "WhatsApp unreachable: %d sessions lost their connection together; reconnects held back "
                "behind one probe",
                len(self.detector.held),
                extra={"upstream": "outage"},
            )

    def may_dial(self, salon_id: int) -> bool:
        allowed = self.detector.may_dial(salon_id, trio.current_time())
        if allowed and self.detector.state == "outage":
            log.info(
                "probing WhatsApp with salon %s (probe %d)",
                salon_id,
                self.detector.probes,
                extra={"salon_id": salon_id, "upstream": "outage"},
            )
        return allowed

    def dial_failed(self, salon_id: int) -> None:
        self.detector.dial_failed(salon_id, trio.current_time())

    def connected(self, salon_id: int) -> None:
        now = trio.current_time()
        since = self.detector.since
        released = self.detector.connected(salon_id, now)
        if since is None:
            return
        log.warning(
            "WhatsApp reachable again after %.0f s (salon %s connected); restoring %d held salon(s)",
            now - since,
            salon_id,
            len(released),
            extra={"salon_id": salon_id, "upstream": "ok"},
        )
        self._released.extend(released)
        self._wake.set()

    def forget(self, salon_id: int) -> None:
        self.detector.forget(salon_id)

    def view(self) -> UpstreamView:
        d = self.detector
        next_in = None
        if d.state == "outage" and d.probe is None:
            next_in = max(0.0, d.next_probe_at - trio.current_time())
        held = len(d.held) + len(self._released) + self._restoring  # released, not restarted yet: waiting
        return UpstreamView(d.state, d.since, held, d.probes, None if next_in is None else round(next_in, 3))

    async def run(self, router: Restorer) -> None:
        """Restore the salons each ended outage held back, paced by the router; runs until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            released, self._released = self._released, []
            if not released:
                continue
            self._restoring = len(released)

            def progress(count: int, total: int = len(released)) -> None:
                self._restoring = total - count

            # Only salons whose actor still runs: one stopped meanwhile (frozen, uninstalled, moved to
            # another node) must not be started again by this restore.
            still_held = (salon for salon in released if router.running(salon))
            try:
                self.restored_total += await router.restore(still_held, progress=progress)
            finally:
                self._restoring = 0
