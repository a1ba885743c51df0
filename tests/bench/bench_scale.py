"""The scale curve of one node: memory per idle salon and per websocket viewer, and the time to
restore 10,000 salons after a restart.

``run(results)`` adds:

* ``idle_session_bytes_1k``, ``_10k``, ``_50k`` — **RSS** growth per connected, idle salon with
  1,000, 10,000 and 50,000 salons on one node (``open_services`` as production wires it, the
  in-process WhatsApp simulator, the in-memory store of tests/actors/memory_store.py, no Redis).
  Each size runs in a fresh process (``python -m tests.bench.bench_scale --probe idle N``). The
  salons' devices are linked in the simulator and their credentials stored first; the baseline is
  taken after that and after 100 warm-up salons are connected (so neither WhatsApp's side of the
  pairing nor one-time costs are counted); then the salons are brought up with ``Router.restore``
  **unpaced** (the question is memory, not pacing: 50,000 salons at 20 a second would take 42 min)
  and the RSS after a full collection, minus the baseline, is divided by N. The simulator's live
  connection per salon (its half of the link) is in the figure: ``idle_session_heap_bytes`` says
  how much.
* ``idle_session_heap_bytes`` — the same at 10,000 salons measured as the **Python heap**
  (``tracemalloc``, started at the baseline), per salon, and ``idle_session_heap_simulator_bytes``,
  the part of it allocated by the simulator's code (``actor_admin/doubles``): not a node's in
  production. The probe also prints gc-tracked objects per salon by type, trio tasks per salon,
  live trio deadlines (timers) per salon and the heaviest allocation sites.
* ``idle_viewer_bytes`` — RSS growth per websocket viewer of the node's ``WS /marketplace/ws``,
  1,000 viewers over 100 salons after 100 warm-up viewers, each having received one QR frame. The
  server is ``tests/bench/_ws_node.py`` (as ``bench_ws`` runs it); the viewers are trio-websocket
  clients in two other processes (``tests/bench/_ws_clients.py``); RSS is read from
  ``/proc/PID/statm`` (kernel socket buffers are not in it).
* ``restore_10k_s`` — **computed**, not timed end to end (10,000 salons at the default 20 a second
  would take over 500 s). Two restores with stored, encrypted credentials in PostgreSQL, one node
  with its ownership keeper (as ``serve`` runs it), counted until the simulator holds one live
  connection per salon: ``restore_paced_s``, ``RESTORE_PACED`` salons at the default rate; and
  ``RESTORE_UNPACED`` salons unpaced, whose CPU time in this process per salon is
  ``restore_cpu_ms_per_salon`` (PostgreSQL's own CPU not included). Then ``restore_10k_s`` =
  (``restore_paced_s`` − ``RESTORE_PACED`` / rate: the start-up and the tail the pacing does not
  explain) + 10,000 / min(rate, 1,000 / ``restore_cpu_ms_per_salon``): the pacing holds unless the
  node's one core cannot keep up with it. ``restore_paced_per_s`` is ``RESTORE_PACED`` /
  ``restore_paced_s``. Needs ``DATABASE_URL``; skipped without it.
* ``gc_longest_pause_ms_restore_10k`` — the longest garbage collection (this thread's CPU time,
  any generation) while one node restores ``GC_SALONS`` (10,000) salons through its ownership keeper,
  unpaced, with the node's :class:`~actor_admin.node.CollectorPolicy` bound as ``serve`` binds it (in
  a fresh process, ``--probe gc N on``; the keeper claims from the in-memory ownership model of
  tests/cluster, the store is the in-memory one). ``gc_full_pause_ms_10k``: what a full collection
  costs once the restore has settled and the keeper planned once more (the steady state: when one
  comes depends on what the node allocates, so it is forced and timed), and
  ``gc_full_pause_ms_10k_unfrozen`` the same without the policy (``--probe gc N off``: only the
  start-up freeze). ``gc_frozen_garbage_bytes_per_left_salon``: after ``GC_LEAVING`` salons stop, what
  each left frozen in reference cycles (``sys.getsizeof`` of what the unfreeze-and-collect found:
  a lower bound), and ``gc_refreeze_pause_ms_10k`` that unfreeze-and-collect. With ``DATABASE_URL``,
  ``gc_full_pause_ms_restore_pg`` / ``…_unfrozen``: a full collection after ``bench_restore``'s
  unpaced restore of ``GC_PG_SALONS`` salons through PostgreSQL, with and without the policy
  (``--probe gcpg N on|off``).

The machine is shared: each progress line carries the 1-minute load average when it was measured.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing
import trio_asyncio

from actor_admin.actors._router import RESTORE_PER_SECOND
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.node import CollectorPolicy, Parts, freeze_start_up, open_services, tune_gc
from actor_admin.store import Member
from tests.actors.memory_store import MemoryStore
from tests.api.conftest import free_port, node_settings
from tests.cluster._ownership_model import OwnershipModel

from ._cluster_db import StatementCounter, add_salons, bench_database, counting_store
from .bench_restore import _link, _reset, _restore
from .bench_sessions import _finish, _link_salons, _rss_bytes, _wait_connected
from .bench_ws import _free_port, _line

IDLE_SIZES = (1_000, 10_000, 50_000)
IDLE_WARMUP = 100
HEAP_SALONS = 10_000
VIEWERS = 1_000
VIEWER_WARMUP = 100
VIEWER_COMPANIES = 100
VIEWER_PROCS = 2
RESTORE_PACED = 500  # 25 s at the default 20 a second
RESTORE_UNPACED = 2_000
RESTORE_TARGET = 10_000
GC_SALONS = 10_000
GC_LEAVING = 1_000
GC_PG_SALONS = 1_200  # unpaced through PostgreSQL: ≈ 60 s on the shared machine
_ROOT = Path(__file__).resolve().parents[2]
_SIMULATOR_CODE = f"{os.sep}actor_admin{os.sep}doubles{os.sep}"


def _say(text: str) -> None:
    print(f"  scale: {text} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)


# -- idle salons (in a probe process) -------------------------------------------------------------


def _task_count() -> int:
    """Every live trio task, walked from the root."""
    count = 0
    root = trio.lowlevel.current_root_task()
    pending = [] if root is None else [root]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


def _deadline_count() -> int:
    """Cancel scopes with a finite deadline attached to a task: trio's timers (private, bench only)."""
    runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
    return int(runner.deadlines._active)


def _census() -> Counter[str]:
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        counts[f"{kind.__module__}.{kind.__qualname__}"] += 1
    return counts


async def _idle_probe(count: int, heap: bool) -> None:
    core = SimulatorCore()
    store = MemoryStore()

    async def company(salon_id: int) -> None:
        return None  # no company record: not frozen, not uninstalled

    store.companies.get = company  # type: ignore[attr-defined]  # the in-memory store lacks it
    parts = Parts(store=store, transport=SimulatorTransport(core), simulator=core)  # type: ignore[arg-type]
    async with open_services(node_settings(free_port()), parts) as services:
        router, registry = services.router, services.registry
        warm = range(10_000_000, 10_000_000 + IDLE_WARMUP)
        await _link_salons(core, store, warm)
        await router.restore(warm, per_second=1e9)
        await _wait_connected(registry, IDLE_WARMUP, poll_s=0.01)

        salons = range(1, count + 1)
        await _link_salons(core, store, salons)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        before, tasks, deadlines = _rss_bytes(), _task_count(), _deadline_count()
        census = _census() if heap else Counter()
        if heap:
            tracemalloc.start()
        started = time.perf_counter()
        await router.restore(salons, per_second=1e9)
        await _wait_connected(registry, IDLE_WARMUP + count, poll_s=0.05)
        connect_s = time.perf_counter() - started
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        measured: dict[str, Any] = {
            "rss_per_salon": (_rss_bytes() - before) / count,
            "tasks_per_salon": (_task_count() - tasks) / count,
            "deadlines_per_salon": (_deadline_count() - deadlines) / count,
            "connect_s": connect_s,
        }
        stats = core.stats()
        assert stats["live_sessions"] == IDLE_WARMUP + count and stats["max_live_per_device"] == 1, stats
        if heap:
            snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
            files = snapshot.statistics("filename")
            measured["heap_per_salon"] = sum(s.size for s in files) / count
            measured["heap_simulator_per_salon"] = (
                sum(s.size for s in files if _SIMULATOR_CODE in s.traceback[0].filename) / count
            )
            measured["heap_by_file"] = {_short(s.traceback[0].filename): round(s.size / count) for s in files[:12]}
            measured["heap_by_line"] = {
                f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}": round(s.size / count)
                for s in snapshot.statistics("lineno")[:15]
            }
            grown = _census() - census
            measured["objects_per_salon"] = {
                name: round(n / count, 2) for name, n in grown.most_common(25) if n >= count // 2
            }
        _finish(measured)


def _short(filename: str) -> str:
    for marker in ("site-packages/", "actor_admin/", "tests/"):
        if marker in filename:
            return filename[filename.index(marker) :].removeprefix("site-packages/")
    return Path(filename).name


# -- websocket viewers ------------------------------------------------------------------------------


def _rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _viewers(procs: list[subprocess.Popen[str]], url: str, first: int, count: int) -> int:
    """Start ``count`` viewers in ``VIEWER_PROCS`` processes; how many connected once all are ready."""
    started = []
    share = -(-count // VIEWER_PROCS)
    for start in range(first, first + count, share):
        arguments = ["ours", url, str(start), str(min(share, first + count - start)), str(VIEWER_COMPANIES)]
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench._ws_clients", *arguments],
            cwd=_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(process)
        started.append(process)
    connected = 0
    for process in started:
        assert process.stdout is not None
        _, ok, failed = _line(process.stdout, "a viewer process").split()
        if int(failed):
            raise RuntimeError(f"{failed} viewers failed to connect")
        connected += int(ok)
    return connected


def _viewer_bytes() -> float:
    port = _free_port()
    procs: list[subprocess.Popen[str]] = []
    try:
        node = subprocess.Popen(
            [sys.executable, "-m", "tests.bench._ws_node", "ours", str(port)],
            cwd=_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(node)
        assert node.stdout is not None
        if _line(node.stdout, "the websocket node") != "listening":
            raise RuntimeError("the websocket node did not start")
        url = f"ws://127.0.0.1:{port}/marketplace/ws"

        def settled_rss() -> int:
            # One QR frame to every salon, so each viewer's send path has been used, then the RSS.
            with httpx.Client(timeout=60) as http:
                http.post(
                    f"http://127.0.0.1:{port}/_bench/round", params={"companies": VIEWER_COMPANIES, "period": 0}
                ).raise_for_status()
            return _rss_of(node.pid)

        empty = _rss_of(node.pid)
        _viewers(procs, url, 0, VIEWER_WARMUP)
        before = settled_rss()
        connected = _viewers(procs, url, VIEWER_WARMUP, VIEWERS)
        after = settled_rss()
    finally:
        for process in procs:
            process.kill()
        for process in procs:
            process.wait(timeout=30)
    per_viewer = (after - before) / connected
    _say(
        f"{connected:,} viewers: {per_viewer / 1024:.1f} KiB RSS a viewer "
        f"(node RSS {empty / 2**20:.0f} MiB empty, {before / 2**20:.0f} MiB with {VIEWER_WARMUP} warm-up viewers, "
        f"{after / 2**20:.0f} MiB after)"
    )
    return per_viewer


# -- restore after a restart --------------------------------------------------------------------------


async def _restores(dsn: str) -> tuple[tuple[float, float], tuple[float, float]]:
    async with trio_asyncio.open_loop():
        async with counting_store(dsn, StatementCounter()) as store:
            await add_salons(store, 1, RESTORE_UNPACED)
            paced_core = SimulatorCore()
            await _link(store, paced_core, range(1, RESTORE_PACED + 1))
            paced = await _restore(dsn, paced_core, 1, RESTORE_PACED, per_second=RESTORE_PER_SECOND)
            await _reset(store)
            unpaced_core = SimulatorCore()
            await _link(store, unpaced_core, range(1, RESTORE_UNPACED + 1))
            unpaced = await _restore(dsn, unpaced_core, 1, RESTORE_UNPACED, per_second=1e6)
            return paced, unpaced


def _restore_figures(results: dict[str, float]) -> None:
    with bench_database() as dsn:
        if dsn is None:
            _say("DATABASE_URL is not set; the restore figures are skipped")
            return
        (paced_s, paced_cpu), (unpaced_s, cpu_ms) = trio.run(_restores, dsn)
    floor = RESTORE_PACED / RESTORE_PER_SECOND
    overhead = max(0.0, paced_s - floor)
    rate = min(RESTORE_PER_SECOND, 1000 / cpu_ms)
    results["restore_paced_s"] = paced_s
    results["restore_paced_per_s"] = RESTORE_PACED / paced_s
    results["restore_cpu_ms_per_salon"] = cpu_ms
    results["restore_unpaced_per_s"] = RESTORE_UNPACED / unpaced_s
    results["restore_10k_s"] = overhead + RESTORE_TARGET / rate
    _say(
        f"restore {RESTORE_PACED} at {RESTORE_PER_SECOND:.0f}/s: {paced_s:.1f} s (floor {floor:.0f} s, "
        f"{paced_cpu:.1f} ms CPU a salon); {RESTORE_UNPACED:,} unpaced: {unpaced_s:.1f} s, "
        f"{cpu_ms:.1f} ms CPU a salon (one core: {1000 / cpu_ms:.0f}/s); "
        f"10,000 → {results['restore_10k_s']:.0f} s"
    )


# -- garbage collection during and after a restore (in a probe process) -----------------------------


class _Pauses:
    """Every collection's CPU time (this thread's), the longest by generation."""

    def __init__(self) -> None:
        self.longest = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            took = time.thread_time() - self._started
            self.count[info["generation"]] += 1
            self.longest[info["generation"]] = max(self.longest[info["generation"]], took)

    def take(self) -> dict[str, Any]:
        taken = {"count": self.count, "longest_ms": [round(x * 1000, 1) for x in self.longest]}
        self.longest, self.count = [0.0, 0.0, 0.0], [0, 0, 0]
        return taken


class _ModelOwnership:
    """The keeper's ownership store over the in-memory model; a claim sets the memory store's fence."""

    def __init__(self, store: MemoryStore) -> None:
        self.model = OwnershipModel()
        self.store = store

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.model, {"nodes": "nodes_list", "owners": "owners_now"}.get(name, name))

        async def call(*args: Any, **kwargs: Any) -> Any:
            await trio.lowlevel.checkpoint()
            result = method(*args, **kwargs)
            if name == "claim":
                self.store.fences.update(result)
            return result

        return call


def _timed_full_collection() -> float:
    started = time.thread_time()
    gc.collect()
    return (time.thread_time() - started) * 1000


async def _gc_probe(count: int, policy_on: bool) -> None:
    core = SimulatorCore()
    store = MemoryStore()

    async def company(salon_id: int) -> None:
        return None

    store.companies.get = company  # type: ignore[attr-defined]  # the in-memory store lacks it
    ownership = store.ownership = _ModelOwnership(store)  # type: ignore[attr-defined]
    settings = node_settings(free_port())
    tune_gc(settings)
    salons = range(1, count + 1)
    await _link_salons(core, store, salons)
    ownership.model.companies.update(salons)
    collector = CollectorPolicy.from_settings(settings) if policy_on else None
    member = Member.new("gc-probe", "bench")
    parts = Parts(store=store, transport=SimulatorTransport(core), simulator=core, member=member,  # type: ignore[arg-type]
                  collector=collector)
    async with open_services(settings, parts) as services, trio.open_nursery() as nursery:
        keeper = parts.keeper
        assert keeper is not None
        keeper.restore_interval_s = 1e-6  # unpaced: the question is the heap, not the pacing
        keeper.wanted = lambda: _wanted(salons)
        if collector is not None:
            collector.start_up()
        else:
            freeze_start_up()
        pauses, rss, cpu = _Pauses(), _rss_bytes(), time.process_time()
        nursery.start_soon(keeper.run)
        await keeper.restore()
        await _wait_connected(services.registry, count, poll_s=0.05)
        measured: dict[str, Any] = {"restore": pauses.take(), "restore_cpu_s": time.process_time() - cpu}
        planned = keeper._last_plan
        while keeper._last_plan == planned:  # noqa: ASYNC110 - the keeper offers no event per round
            await trio.sleep(0.1)  # the round after the restore: the policy's second freeze
        await trio.testing.wait_all_tasks_blocked()
        measured["rss_mib"] = (_rss_bytes() - rss) / 2**20
        measured["frozen"] = gc.get_freeze_count()
        measured["full_ms"] = _timed_full_collection()
        for salon_id in range(1, GC_LEAVING + 1):
            await services.router.stop(salon_id)
        await trio.testing.wait_all_tasks_blocked()
        measured["left_collected"] = gc.collect()  # what leaving salons left unfrozen in cycles
        gc.unfreeze()
        gc.set_debug(gc.DEBUG_SAVEALL)
        measured["refreeze_ms"] = _timed_full_collection()
        measured["left_frozen_objects"] = len(gc.garbage)
        measured["left_frozen_bytes"] = sum(sys.getsizeof(o) for o in gc.garbage)
        if collector is not None:
            measured["policy"] = {"freezes": collector.freezes, "refreezes": collector.refreezes}
        _finish(measured)


async def _wanted(salons: range) -> set[int]:
    return set(salons)


async def _gc_pg_probe(dsn: str, count: int, policy_on: bool) -> dict[str, Any]:
    """The same through PostgreSQL: ``bench_restore``'s unpaced restore of ``count`` salons."""
    async with trio_asyncio.open_loop():
        async with counting_store(dsn, StatementCounter()) as store:
            await add_salons(store, 1, count)
            core = SimulatorCore()
            await _link(store, core, range(1, count + 1))
            settings = node_settings(free_port())
            tune_gc(settings)
            freeze_start_up()
            pauses = _Pauses()
            took, _ = await _restore(
                dsn, core, 1, count, per_second=1e6, within_s=10 + count * 0.5,
                collector=lambda: CollectorPolicy.from_settings(settings) if policy_on else None,
            )
            return {"restore": pauses.take(), "took_s": took, "full_ms": _timed_full_collection()}


def _gc_figures(results: dict[str, float]) -> None:
    on, off = _probe("gc", str(GC_SALONS), "on"), _probe("gc", str(GC_SALONS), "off")
    if os.environ.get("DATABASE_URL"):
        pg_on, pg_off = _probe("gcpg", str(GC_PG_SALONS), "on"), _probe("gcpg", str(GC_PG_SALONS), "off")
        results["gc_full_pause_ms_restore_pg"] = pg_on["full_ms"]
        results["gc_full_pause_ms_restore_pg_unfrozen"] = pg_off["full_ms"]
        for name, probe in (("policy", pg_on), ("start-up freeze only", pg_off)):
            _say(
                f"gc, {GC_PG_SALONS:,} salons through PostgreSQL, {name}: restore {probe['restore']} "
                f"in {probe['took_s']:.0f} s; then a full collection {probe['full_ms']:.0f} ms"
            )
    results["gc_longest_pause_ms_restore_10k"] = max(on["restore"]["longest_ms"])
    results["gc_full_pause_ms_10k"] = on["full_ms"]
    results["gc_full_pause_ms_10k_unfrozen"] = off["full_ms"]
    results["gc_refreeze_pause_ms_10k"] = on["refreeze_ms"]
    results["gc_frozen_garbage_bytes_per_left_salon"] = on["left_frozen_bytes"] / GC_LEAVING
    for name, probe in (("policy", on), ("start-up freeze only", off)):
        _say(
            f"gc, {GC_SALONS:,} salons, {name}: restore {probe['restore']} in {probe['restore_cpu_s']:.1f} s CPU; "
            f"then {probe['frozen']:,} frozen, RSS +{probe['rss_mib']:.0f} MiB, a full collection "
            f"{probe['full_ms']:.0f} ms; {GC_LEAVING:,} leave: {probe['left_collected']:,} collected unfrozen, "
            f"{probe['left_frozen_objects']:,} objects ({probe['left_frozen_bytes'] / 1024:.0f} KiB) left frozen, "
            f"unfreeze + collect {probe['refreeze_ms']:.0f} ms; {probe.get('policy')}"
        )


# -- entry points -------------------------------------------------------------------------------------


def _probe(*arguments: str) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_scale", "--probe", *arguments],
        cwd=_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return found


def run(results: dict[str, float]) -> None:
    """``python -m tests.bench --only scale`` (``BENCH_SCALE_ONLY=gc``: the collector's figures alone)."""
    if os.environ.get("BENCH_SCALE_ONLY") == "gc":
        _gc_figures(results)
        return
    for count in IDLE_SIZES:
        idle = _probe("idle", str(count))
        results[f"idle_session_bytes_{count // 1000}k"] = idle["rss_per_salon"]
        _say(
            f"idle {count:,}: {idle['rss_per_salon'] / 1024:.1f} KiB RSS a salon, "
            f"{idle['tasks_per_salon']:.2f} tasks and {idle['deadlines_per_salon']:.2f} timers a salon, "
            f"connected unpaced in {idle['connect_s']:.1f} s"
        )
    heap = _probe("idle", str(HEAP_SALONS), "heap")
    results["idle_session_heap_bytes"] = heap["heap_per_salon"]
    results["idle_session_heap_simulator_bytes"] = heap["heap_simulator_per_salon"]
    _say(
        f"heap at {HEAP_SALONS:,}: {heap['heap_per_salon'] / 1024:.1f} KiB a salon by tracemalloc "
        f"({heap['heap_simulator_per_salon'] / 1024:.1f} KiB of it the simulator's), "
        f"RSS {heap['rss_per_salon'] / 1024:.1f} KiB with tracemalloc on"
    )
    for title in ("objects_per_salon", "heap_by_file", "heap_by_line"):
        _say(f"{title}: {json.dumps(heap[title])}")

    results["idle_viewer_bytes"] = _viewer_bytes()
    _gc_figures(results)
    _restore_figures(results)


def _main(argv: list[str]) -> None:
    """Only the probe: the whole module runs as ``python -m tests.bench --only scale``."""
    if len(argv) >= 3 and argv[:2] == ["--probe", "idle"]:
        trio.run(_idle_probe, int(argv[2]), argv[3:] == ["heap"])
    if len(argv) == 4 and argv[:2] == ["--probe", "gc"]:
        trio.run(_gc_probe, int(argv[2]), argv[3] == "on")
    if len(argv) == 4 and argv[:2] == ["--probe", "gcpg"]:
        with bench_database() as dsn:  # not _finish: the throwaway database is dropped on the way out
            assert dsn is not None
            print(json.dumps(trio.run(_gc_pg_probe, dsn, int(argv[2]), argv[3] == "on")), flush=True)
        raise SystemExit(0)
    raise SystemExit("usage: python -m tests.bench.bench_scale --probe idle COUNT [heap] | --probe gc COUNT on|off")


if __name__ == "__main__":
    _main(sys.argv[1:])
