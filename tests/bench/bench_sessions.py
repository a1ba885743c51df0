"""Company sessions at scale: QR-to-viewer latency and restore pacing (memory per salon is
``bench_scale``'s).

``run(results)`` adds, each measured in a fresh subprocess (``python -m tests.bench.bench_sessions
--probe KIND N``) so every figure starts from a clean heap:

* ``qr_to_viewer_p50_ms`` / ``qr_to_viewer_p99_ms`` — real clock, 1,000 salons asked for a QR at
  once, each with one viewer subscribed on a ``LocalBus``: from the moment the simulator hands the
  QR to the link (a wrapping transport timestamps ``QrIssued`` as it passes ``deliver``) to the
  moment that salon's viewer receives the ``qr`` frame (the raw payload: the page draws it).
  Target p99 ≤ 50 ms. The probe runs the garbage collector as a node does (its thresholds, start-up
  frozen). ``qr_to_viewer_cpu_p50_ms`` / ``…_cpu_p99_ms``: the same run timed by this
  process's CPU clock (``time.process_time``) instead: the wait a viewer would see on a core of its
  own, which a shared, busy machine's wall clock hides under other processes' work.
* ``restore_10k_virtual_s`` — **virtual** seconds (``MockClock(autojump_threshold=0)``) to bring
  10,000 salons with stored credentials back to ``connected`` at the default pacing (20 a second, so
  the floor is 500 s); ``restore_ratio`` is that over 500 (target ≤ 1.1); ``restore_10k_wall_s`` is the
  real time the simulation took. Virtual time stands still while the CPU works, so that ratio alone
  cannot show a CPU-bound restore: ``restore_real_clock_ratio`` is the same check on the real clock,
  1,000 salons at 500 a second (25 × the default rate), over its 2 s floor.

Also, for context, ``qr_to_viewer_p50_ms_100`` / ``qr_to_viewer_p99_ms_100``: the QR latency when
100 salons, not 1,000, ask at once.

Just the QR probes, without the minutes of the restore: ``python -m tests.bench.bench_sessions --qr
[RUNS]`` runs the 1,000-salon probe RUNS times (default 4) on each clock, alternating, and prints
each run and the best and median p99 (nothing is written to ``.bench/results.json``). ``--probe
qr-rounds 1000`` prints where the CPU of the window goes: thread CPU per task step, summed by
scheduling round (from the round of the first QR's issue) and by task (docs/architecture.md#qr-latency).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import attrs
import trio
import trio.testing

from actor_admin.actors import Registry, Router, SessionDeps, company_actor_factory
from actor_admin.actors._router import RESTORE_PER_SECOND
from actor_admin.cluster import LocalBus
from actor_admin.config import DEFAULT_GC_THRESHOLDS
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.node import freeze_start_up
from actor_admin.runtime import open_supervisor
from actor_admin.session import CredsUpdated, Disconnected, MessageReceived, QrIssued, RequestQr, TransportEvent
from actor_admin.whatsapp import Link, LinkSpec, Transport
from tests.actors.memory_store import MemoryStore

QR_SALONS = 1_000
QR_SMALL_HERD = 100  # for context: how the latency scales with the herd
RESTORE_SALONS = 10_000
# Virtual time does not advance while the CPU works, so the virtual figure cannot show a restore
# that is CPU-bound; this real-clock run checks the pacing holds at 25 × the default rate.
RESTORE_REAL_SALONS = 1_000
RESTORE_REAL_PER_SECOND = 500.0
_ROOT = Path(__file__).resolve().parents[2]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _progress(text: str) -> None:
    print(f"  sessions: {text}", file=sys.stderr, flush=True)


def _deps(
    core: SimulatorCore, store: MemoryStore, *, transport: Transport | None = None, **options: Any
) -> SessionDeps:
    return SessionDeps(
        transport=transport if transport is not None else SimulatorTransport(core),
        store=store,
        bus=options.pop("bus", None) or LocalBus(),
        registry=Registry(),
        **options,
    )


# -- linking salons without a page --------------------------------------------------------------


class _PairingSink:
    """The simulator's sink for a pairing-only connection: keeps the QR and the new credentials."""

    def __init__(self) -> None:
        self.qr: str | None = None
        self.credentials: bytes | None = None

    def event(self, event: TransportEvent) -> None:
        if isinstance(event, QrIssued) and self.qr is None:
            self.qr = event.code
        elif isinstance(event, CredsUpdated):
            self.credentials = event.credentials

    def message(self, tag: int, event: MessageReceived) -> bool:
        return False

    def keepalive(self, ok: bool) -> None:
        pass

    def ended(self, event: Disconnected | None) -> None:
        pass


async def _link_salons(core: SimulatorCore, store: MemoryStore, salon_ids: range) -> None:
    """Link a device for each salon (a QR connection, scanned at once) and store its credentials,
    as if every salon had been onboarded before this process started."""
    for salon_id in salon_ids:
        sink = _PairingSink()
        core.accept(salon_id, None, sink, qr_at_once=True)
        assert sink.qr is not None
        core.scan(sink.qr, f"7900{salon_id:07d}")
        assert sink.credentials is not None
        await store.credentials.save(salon_id, sink.credentials, transport="simulator")


async def _wait_connected(registry: Registry, count: int, *, poll_s: float) -> None:
    # Polling the counts: one ``Registry.wait_state`` per salon would wake every waiter on every
    # change, quadratic in the number of salons. ``poll_s`` is the measurement's resolution.
    while registry.by_state().get("connected", 0) < count:  # noqa: ASYNC110
        await trio.sleep(poll_s)


# -- QR to viewer -------------------------------------------------------------------------------


class _TimingTransport:
    """Wraps a transport and notes, per QR, the time (by ``clock``) it was handed to the link's ``deliver``."""

    def __init__(self, inner: Transport, clock: Callable[[], float]) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.clock = clock
        self.issued_at: dict[str, float] = {}

    async def open(self, nursery: trio.Nursery, spec: LinkSpec) -> Link:
        issued_at = self.issued_at
        deliver = spec.deliver
        clock = self.clock

        def timed(event: TransportEvent) -> None:
            if isinstance(event, QrIssued):
                issued_at[event.code] = clock()
            deliver(event)

        return await self.inner.open(nursery, attrs.evolve(spec, deliver=timed))


async def _qr_probe(
    count: int,
    clock: Callable[[], float] = trio.current_time,
    finish: Callable[[dict[str, float]], NoReturn] | None = None,
) -> None:
    core = SimulatorCore()
    timing = _TimingTransport(SimulatorTransport(core), clock)
    bus = LocalBus()
    deps = _deps(core, MemoryStore(), transport=timing, bus=bus)
    latencies: list[float] = []
    async with open_supervisor(company_actor_factory(deps)) as supervisor:
        router = Router(supervisor)
        async with trio.open_nursery() as nursery:
            subscribed = trio.Event()
            ready = [0]

            async def viewer(salon_id: int) -> None:
                async with bus.subscribe(salon_id) as subscription:
                    ready[0] += 1
                    if ready[0] == count:
                        subscribed.set()
                    async for frame in subscription:
                        if frame.get("type") == "qr":
                            latencies.append(clock() - timing.issued_at[frame["qr"]])
                            return

            for salon_id in range(1, count + 1):
                nursery.start_soon(viewer, salon_id)
            await subscribed.wait()
            await trio.testing.wait_all_tasks_blocked()
            started = time.perf_counter()
            async with trio.open_nursery() as askers:
                for salon_id in range(1, count + 1):
                    askers.start_soon(router.ask, salon_id, RequestQr())
        elapsed = time.perf_counter() - started
        assert len(latencies) == count
        latencies.sort()
        (finish or _finish)(
            {
                "p50_ms": statistics.median(latencies) * 1e3,
                "p99_ms": latencies[int(0.99 * (count - 1))] * 1e3,
                "max_ms": latencies[-1] * 1e3,
                "all_shown_s": elapsed,
            }
        )


class _RoundsInstrument(trio.abc.Instrument):
    """Thread CPU of every task step, with the scheduling round it ran in (a round ends at each
    I/O wait); steps are kept once ``recording`` is set."""

    def __init__(self) -> None:
        self.round = 0
        self.recording = False
        self.steps: list[tuple[int, str, float]] = []  # (round, task kind, seconds)
        self._started = 0.0

    def before_io_wait(self, timeout: float) -> None:
        self.round += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.recording:
            # "actor 17", "…viewer": the kind of task, without the salon.
            kind = task.name.rsplit(".", 1)[-1].rstrip("0123456789 ")
            self.steps.append((self.round, kind, time.thread_time() - self._started))


def _qr_rounds(count: int) -> None:
    """Run the QR probe under :class:`_RoundsInstrument` and print the window's CPU by round and task."""
    instrument = _RoundsInstrument()
    first_issue: list[int] = []  # index of the step that issued the first QR

    def clock() -> float:
        if not first_issue:
            first_issue.append(len(instrument.steps))
        return time.process_time()

    def report(measured: dict[str, float]) -> NoReturn:
        steps = instrument.steps[first_issue[0] :]
        first_round = steps[0][0]
        cpu: dict[tuple[int, str], float] = {}
        tasks: dict[tuple[int, str], int] = {}
        for round_, kind, seconds in steps:
            key = (round_ - first_round, kind)
            cpu[key] = cpu.get(key, 0.0) + seconds
            tasks[key] = tasks.get(key, 0) + 1
        for (round_, kind), seconds in sorted(cpu.items()):
            steps_of, per = tasks[round_, kind], seconds / tasks[round_, kind] * 1e6
            print(f"round +{round_}  {kind:<12} {steps_of:>5} steps  {seconds * 1e3:6.1f} ms  {per:5.1f} µs each")
        print(f"window: {sum(cpu.values()) * 1e3:.1f} ms of task steps; probe (process CPU): {json.dumps(measured)}")
        sys.stdout.flush()
        os._exit(0)

    async def main() -> None:
        instrument.recording = True
        await _qr_probe(count, clock, finish=report)

    trio.run(main, instruments=[instrument])


# -- restore pacing -------------------------------------------------------------------------------


async def _restore_probe(count: int, per_second: float = RESTORE_PER_SECOND) -> None:
    """Time on trio's clock (virtual under MockClock) from ``restore`` until every salon is connected."""
    core = SimulatorCore()
    store = MemoryStore()
    deps = _deps(core, store)
    salons = range(1, count + 1)
    await _link_salons(core, store, salons)
    async with open_supervisor(company_actor_factory(deps)) as supervisor:
        router = Router(supervisor)
        wall = time.perf_counter()
        started = trio.current_time()
        restored = await router.restore(salons, per_second=per_second)
        await _wait_connected(deps.registry, count, poll_s=0.01)
        elapsed = trio.current_time() - started
        wall = time.perf_counter() - wall
        stats = core.stats()
        assert restored == count and stats["live_sessions"] == count, stats
        assert stats["qr_issued_total"] == count and stats["max_live_per_device"] == 1, stats
        _finish({"clock_s": elapsed, "wall_s": wall})


# -- entry points ---------------------------------------------------------------------------------


def _probe(kind: str, count: int, *options: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_sessions", "--probe", kind, str(count), *options],
        cwd=_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(results: dict[str, float]) -> None:
    # (salons, clock, key prefix, key suffix)
    for herd, clock, prefix, suffix in (
        (QR_SALONS, "wall", "qr_to_viewer", ""),
        (QR_SALONS, "cpu", "qr_to_viewer_cpu", ""),
        (QR_SMALL_HERD, "wall", "qr_to_viewer", f"_{QR_SMALL_HERD}"),
    ):
        started = time.perf_counter()
        qr = _probe("qr", herd, clock)
        results[f"{prefix}_p50_ms{suffix}"] = qr["p50_ms"]
        results[f"{prefix}_p99_ms{suffix}"] = qr["p99_ms"]
        _progress(
            f"qr, {herd:,} salons at once, {clock} clock: "
            f"p50 {qr['p50_ms']:.1f} ms, p99 {qr['p99_ms']:.1f} ms, max {qr['max_ms']:.1f} ms, "
            f"all shown in {qr['all_shown_s']:.2f} s (probe {time.perf_counter() - started:.1f} s)"
        )

    restore = _probe("restore", RESTORE_SALONS)
    floor = RESTORE_SALONS / RESTORE_PER_SECOND
    results["restore_10k_virtual_s"] = restore["clock_s"]
    results["restore_ratio"] = restore["clock_s"] / floor
    results["restore_10k_wall_s"] = restore["wall_s"]
    _progress(
        f"restore {RESTORE_SALONS:,}: {restore['clock_s']:.1f} virtual s (floor {floor:.0f} s), "
        f"simulated in {restore['wall_s']:.1f} wall s"
    )
    real = _probe("restore-real", RESTORE_REAL_SALONS, str(RESTORE_REAL_PER_SECOND))
    real_floor = RESTORE_REAL_SALONS / RESTORE_REAL_PER_SECOND
    results["restore_real_clock_ratio"] = real["clock_s"] / real_floor
    _progress(
        f"restore {RESTORE_REAL_SALONS:,} at {RESTORE_REAL_PER_SECOND:.0f}/s on the real clock: "
        f"{real['clock_s']:.2f} s (floor {real_floor:.1f} s)"
    )


def _qr_runs(runs: int) -> None:
    """The 1,000-salon QR probe ``runs`` times on each clock, alternating; each run and the summary."""
    p99: dict[str, list[float]] = {"cpu": [], "wall": []}
    for _ in range(runs):
        for clock in p99:
            qr = _probe("qr", QR_SALONS, clock)
            p99[clock].append(qr["p99_ms"])
            print(f"{clock:>4} clock: p50 {qr['p50_ms']:6.1f} ms  p99 {qr['p99_ms']:6.1f} ms", flush=True)
    for clock, values in p99.items():
        print(f"{clock:>4} p99: best {min(values):.1f} ms, median {statistics.median(values):.1f} ms over {runs} runs")


def _node_gc() -> None:
    """The collector as a node runs it: the default ``GC_THRESHOLDS`` (``tune_gc``) and the start-up's
    objects frozen (``freeze_start_up``; docs/websocket.md#garbage-collection). With Python's own
    thresholds a 1,000-salon QR window held ≈ 20 young and 2 middle collections that a node does not
    run at that rate."""
    gc.set_threshold(*DEFAULT_GC_THRESHOLDS)
    freeze_start_up()


def _finish(measured: dict[str, float]) -> NoReturn:
    """Print a probe's numbers for the parent and leave at once, from inside the run: tearing down
    thousands of actors would only cost time."""
    print(json.dumps(measured), flush=True)
    os._exit(0)


def _main(argv: list[str]) -> None:
    if len(argv) >= 3 and argv[0] == "--probe":
        kind, count = argv[1], int(argv[2])
        if kind in ("qr", "qr-rounds"):
            _node_gc()
        if kind == "qr-rounds":
            _qr_rounds(count)
        elif kind == "qr":
            trio.run(_qr_probe, count, time.process_time if argv[3:] == ["cpu"] else trio.current_time)
        elif kind == "restore":
            trio.run(_restore_probe, count, clock=trio.testing.MockClock(autojump_threshold=0))
        elif kind == "restore-real":
            trio.run(_restore_probe, count, float(argv[3]))
        raise SystemExit(f"unknown probe {kind!r} (or it ended without numbers)")
    if argv[:1] == ["--qr"] and len(argv) <= 2:
        _qr_runs(int(argv[1]) if len(argv) == 2 else 4)
        return
    if not argv:
        measured_all: dict[str, float] = {}
        run(measured_all)
        for name, value in sorted(measured_all.items()):
            print(f"{name}: {value:,.3f}")
        return
    raise SystemExit("usage: python -m tests.bench.bench_sessions [--qr [RUNS] | --probe KIND COUNT [PER_SECOND]]")


if __name__ == "__main__":
    _main(sys.argv[1:])
