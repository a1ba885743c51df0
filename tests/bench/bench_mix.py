"""Loop lag of one node under a realistic mix: how late a ``trio.sleep(0.01)`` wakes.

One node process (``python -m tests.bench.bench_mix --node PORT``: ``open_services`` + ``create_app``
+ hypercorn as in ``tests/bench/_ws_node.py``, the in-process WhatsApp simulator and its control API
under ``/_dev/whatsapp``, an in-memory store, the in-process bus) carries at once:

* ``SALONS`` (10,000) connected salons, restored from stored credentials before the run;
* a steady stream of inbound WhatsApp messages, ``INBOUND_PER_S`` (200) a second to random salons,
  delivered by the simulator over each salon's link (store + ack path of the actor). Why 200: a
  busy salon's WhatsApp gets ≈ 100 client messages over a 10-hour day, so 10,000 salons average
  ≈ 28 a second and a peak hour ≈ 3 times that; 200 is over twice the peak;
* ``VIEWERS`` (2,000) websocket viewers in ``CLIENT_PROCS`` other processes
  (``tests/bench/_ws_clients.py``): ``BURST`` of them are the onboarding salons' pages, the rest
  watch connected salons;
* after ``STEADY_S`` seconds, a burst of ``BURST`` (500) salons onboarding at once, driven from this
  process over HTTP as a page and a phone would: ``POST /marketplace/api/qr`` (the answer carries the
  QR), ``POST /_dev/whatsapp/scan`` with it, then the salon connects; ``AFTER_S`` seconds more follow.

Inside the node a task sleeps 10 ms in a loop and notes how late it woke. ``run(results)`` adds
``loop_lag_p50_ms`` / ``loop_lag_p99_ms`` / ``loop_lag_max_ms`` over the whole run (target p99
≤ 20 ms), the same with ``_burst`` for the burst alone (from its first request until every burst
salon is connected), and ``mix_burst_s``, how long the burst took.

``python -m tests.bench.bench_mix --profile`` runs the same mix with a trio instrument timing every
task step (``before_task_step`` / ``after_task_step``) and prints the longest single steps with
their task and where each one yielded, and the tasks by total step time: where the lag comes from.
The instrument itself costs CPU, so the lag figures come from a run without it.
The node's collector policy runs as in ``serve``: ``GC_THRESHOLDS`` and the heap frozen once the
restore has settled (docs/capacity.md#garbage-collection).
"""

from __future__ import annotations

import gc
import heapq
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import trio

from actor_admin.json_types import JSON
from tests.bench.bench_ws import _free_port, _line

ROOT = Path(__file__).resolve().parents[2]
SALONS = int(os.environ.get("BENCH_MIX_SALONS", "10000"))  # smaller for a quick look
INBOUND_PER_S = 200.0
VIEWERS = int(os.environ.get("BENCH_MIX_VIEWERS", "2000"))
BURST = 500
CLIENT_PROCS = 2
STEADY_S = float(os.environ.get("BENCH_MIX_STEADY_S", "10"))
AFTER_S = 5.0
BURST_TIMEOUT_S = 120.0
LAG_PERIOD_S = 0.01
TOP_STEPS = 25


def _say(text: str) -> None:
    print(f"  mix: {text}", file=sys.stderr, flush=True)


def phone_of(salon_id: int) -> str:
    return f"7900{salon_id:07d}"


# -- the node --------------------------------------------------------------------------------------


class StepTimer:
    """A trio instrument: the CPU time of every task step (this thread's clock, so time the machine
    gave other processes is not counted), less any garbage collection inside it (counted apart:
    a collection lands on whichever step allocates), the longest steps with where they yielded, and
    the total per task name."""

    def __init__(self, keep: int = TOP_STEPS) -> None:
        self.keep = keep
        self.longest: list[tuple[float, int, str, str]] = []  # a min-heap of (seconds, n, task, where)
        self.per_task: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # total, count, max
        self.gc_s = 0.0
        self.gc_longest_s = 0.0
        self._gc_started = 0.0
        self._started: float | None = None  # None: the step that added this instrument
        self._gc_at_start = 0.0
        self._n = 0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.thread_time()
        else:
            took = time.thread_time() - self._gc_started
            self.gc_s += took
            self.gc_longest_s = max(self.gc_longest_s, took)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._gc_at_start = self.gc_s
        self._started = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._started is None:
            return
        took = time.thread_time() - self._started - (self.gc_s - self._gc_at_start)
        totals = self.per_task[task.name]
        totals[0] += took
        totals[1] += 1
        if took > totals[2]:
            totals[2] = took
        if len(self.longest) < self.keep or took > self.longest[0][0]:
            self._n += 1
            entry = (took, self._n, task.name, _suspended_at(task))
            if len(self.longest) < self.keep:
                heapq.heappush(self.longest, entry)
            else:
                heapq.heapreplace(self.longest, entry)

    def report(self) -> dict[str, Any]:
        by_total = sorted(self.per_task.items(), key=lambda item: -item[1][0])[:TOP_STEPS]
        return {
            "steps_gc_ms": round(self.gc_s * 1e3, 1),
            "steps_gc_longest_ms": round(self.gc_longest_s * 1e3, 1),
            "longest_steps": [
                {"ms": round(took * 1e3, 2), "task": name, "yielded_at": where}
                for took, _, name, where in sorted(self.longest, reverse=True)
            ],
            "tasks_by_total": [
                {"task": name, "total_ms": round(t * 1e3, 1), "steps": int(n), "max_ms": round(m * 1e3, 2)}
                for name, (t, n, m) in by_total
            ],
        }


def _suspended_at(task: trio.lowlevel.Task) -> str:
    """The chain of functions a task is suspended in, outermost first (after its step ended)."""
    names: list[str] = []
    coro: Any = task.coro
    while coro is not None and len(names) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        names.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(names[-6:])


class LagSampler:
    """Sleeps ``LAG_PERIOD_S`` in a loop; notes how late each wake-up was, tagged with the phase.

    It also counts garbage collections: the figures ``…_no_gc`` leave out the samples during which
    a collection ran, to tell the collector's pauses from our own steps."""

    def __init__(self) -> None:
        self.phase = "steady"
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.without_gc: dict[str, list[float]] = defaultdict(list)
        self.collections = 0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.collections += 1

    async def run(self) -> None:
        while True:
            deadline = trio.current_time() + LAG_PERIOD_S
            collections = self.collections
            await trio.sleep_until(deadline)
            late = trio.current_time() - deadline
            self.samples[self.phase].append(late)
            if self.collections == collections:
                self.without_gc[self.phase].append(late)

    def clear(self) -> None:
        self.samples.clear()
        self.without_gc.clear()

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = {}
        for suffix, samples in (("", self.samples), ("_no_gc", self.without_gc)):
            report[f"all{suffix}"] = _lag_figures([x for values in samples.values() for x in values])
            report.update({f"{phase}{suffix}": _lag_figures(values) for phase, values in samples.items()})
        return report


def _lag_figures(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] * 1e3,
        "max_ms": ordered[-1] * 1e3,
    }


async def _inbound_stream(core: Any, salons: int, per_second: float) -> None:
    """``per_second`` messages a second to random connected salons, from random peers."""
    rng = random.Random(15)
    interval = 1.0 / per_second
    next_at = trio.current_time()
    n = 0
    while True:
        next_at += interval
        await trio.sleep_until(next_at)
        n += 1
        salon_id = rng.randint(1, salons)
        core.inbound(phone_of(salon_id), f"7911{rng.randint(0, 9_999_999):07d}", f"message {n}")


async def main_node(port: int, profile: bool) -> None:
    from actor_admin.actors import Registry
    from actor_admin.api import create_app
    from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
    from actor_admin.node import CollectorPolicy, Parts, open_services, tune_gc
    from tests.actors.memory_store import MemoryStore
    from tests.api.conftest import node_settings
    from tests.bench._ws_node import GcPauses, _config, _raise_fd_limit
    from tests.bench.bench_sessions import _link_salons

    _raise_fd_limit()
    store = MemoryStore()

    async def company(salon_id: int) -> None:
        return None  # no company record: not frozen, not uninstalled

    store.companies.get = company  # type: ignore[attr-defined]  # the in-memory store lacks it
    stored: set[str] = set()

    async def insert_inbound(salon_id: int, wa_id: str, *args: Any, fence: int = 0, **options: Any) -> bool:
        # Stored once, as PostgreSQL would, but kept as plain strings: the test store's tuples would
        # grow this process's heap with every message, and the collector with it, which a node
        # whose messages live in PostgreSQL does not see.
        key = f"{salon_id}:{wa_id}"
        if key in stored:
            return False
        stored.add(key)
        return True

    store.messages.insert_inbound = insert_inbound  # type: ignore[method-assign]
    core = SimulatorCore()
    settings = node_settings(port)
    sampler = LagSampler()
    pauses = GcPauses()
    steps = StepTimer() if profile else None
    # The collector as a node runs it: its thresholds, and the heap frozen once the restore has
    # settled (docs/capacity.md#garbage-collection).
    tune_gc(settings)
    collector = CollectorPolicy.from_settings(settings)
    parts = Parts(store=store, redis=None, transport=SimulatorTransport(core), simulator=core, collector=collector)
    async with open_services(settings, parts) as services:
        registry: Registry = services.registry
        app = create_app(services)
        salons = range(1, SALONS + 1)
        started = time.perf_counter()
        await _link_salons(core, store, salons)
        await services.router.restore(salons, per_second=1e9)
        while registry.by_state().get("connected", 0) < SALONS:  # noqa: ASYNC110
            await trio.sleep(0.1)
        print(f"restored {SALONS} salons in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        collector.start_up()  # as ``serve`` does once it listens
        collector.settled(SALONS)  # as the keeper tells it when its restore round has started all

        @app.route("/_bench/phase", methods=["POST"])
        async def bench_phase() -> Any:
            from quart import request

            name = request.args.get("name", "steady")
            if name == "measure":
                sampler.clear()  # start-up and the viewers' connecting are not measured
                trio.lowlevel.spawn_system_task(sampler.run)
                trio.lowlevel.spawn_system_task(_inbound_stream, core, SALONS, INBOUND_PER_S)
                if steps is not None:
                    trio.lowlevel.add_instrument(steps)
                name = "steady"
            sampler.phase = name
            return {"phase": name}

        @app.route("/_bench/states", methods=["GET"])
        async def bench_states() -> Any:
            return registry.by_state()  # cheap: polled during the burst

        @app.route("/_bench/report", methods=["GET"])
        async def bench_report() -> Any:
            return {
                "states": registry.by_state(),
                "lag": sampler.report(),
                "simulator": core.stats(),
                **pauses.report(),
                **(steps.report() if steps is not None else {}),
            }

        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: _serve(app, _config(port), task_status))
            print("listening", flush=True)


async def _serve(app: Any, config: Any, task_status: Any) -> None:
    from hypercorn.trio import serve

    await serve(app, config, task_status=task_status)


# -- the driver ------------------------------------------------------------------------------------


def _start_viewers(url: str) -> tuple[list[subprocess.Popen[str]], int, int]:
    """The viewers: ``VIEWERS - BURST`` on connected salons, ``BURST`` on the onboarding salons'
    pages (salons ``SALONS + 1 …``), in ``CLIENT_PROCS`` processes; returns them and the counts."""
    groups: list[tuple[int, int, int]] = []  # (first, count, companies) for _ws_clients
    watching = VIEWERS - BURST
    share = math.ceil(watching / (CLIENT_PROCS - 1)) if CLIENT_PROCS > 1 else watching
    for first in range(0, watching, share):
        groups.append((first, min(share, watching - first), SALONS))
    groups.append((SALONS, BURST, SALONS + BURST))  # viewer i watches i % companies + 1
    clients = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.bench._ws_clients", "ours", url, str(a), str(b), str(c)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for a, b, c in groups
    ]
    connected = failed = 0
    for client in clients:
        assert client.stdout is not None
        _, ok, bad = _line(client.stdout, "a viewer process").split()
        connected += int(ok)
        failed += int(bad)
    return clients, connected, failed


async def _post(port: int, path: str, body: dict[str, str], headers: dict[str, str]) -> tuple[int, JSON]:
    """One POST on a connection of its own, as 500 browsers and phones would each open: a bare
    HTTP/1.1 exchange, because httpx's connection pool costs its caller time quadratic in the
    requests in flight (500 at once took ≈ 10 s of this process's time before the node saw them all)."""
    data = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(data)}", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        raw = b""
        while chunk := await stream.receive_some(65536):
            raw += chunk
            head, found, rest = raw.partition(b"\r\n\r\n")
            length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if found and length and len(rest) >= int(length[0].split(b":")[1]):
                break
    head, _, rest = raw.partition(b"\r\n\r\n")
    answer = json.loads(rest) if rest else {}
    return int(head.split(b" ", 2)[1]), answer if isinstance(answer, dict) else {}


async def _burst(port: int) -> float:
    """Onboard ``BURST`` salons at once, as their pages and phones would; seconds until all connected."""
    from actor_admin.api._tokens import mint_onboarding_token
    from tests.api.conftest import JWT_SECRET

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=BURST_TIMEOUT_S) as http:
        await http.post("/_bench/phase", params={"name": "burst"})
        started = time.perf_counter()
        failures: list[str] = []
        answered: list[float] = []  # seconds from asking for a QR to having it

        async def onboard(salon_id: int) -> None:
            token = mint_onboarding_token(JWT_SECRET, salon_id, now=time.time())
            asked = time.perf_counter()
            status, answer = await _post(port, "/marketplace/api/qr", {}, {"Authorization": f"Bearer {token}"})
            answered.append(time.perf_counter() - asked)
            qr = answer.get("qr")
            if status != 200 or not isinstance(qr, str):
                failures.append(f"{salon_id}: {status} {answer}")
                return
            status, answer = await _post(port, "/_dev/whatsapp/scan", {"qr": qr, "phone": phone_of(salon_id)}, {})
            if status != 200:
                failures.append(f"{salon_id}: scan {status} {answer}")

        async with trio.open_nursery() as nursery:
            for salon_id in range(SALONS + 1, SALONS + BURST + 1):
                nursery.start_soon(onboard, salon_id)
        _say(
            f"burst: every QR shown and scanned after {time.perf_counter() - started:.2f} s; a QR answered in "
            f"p50 {statistics.median(answered):.2f} s, max {max(answered):.2f} s"
        )
        if failures:
            raise RuntimeError(f"{len(failures)} onboardings failed, e.g. {failures[:3]}")
        with trio.fail_after(BURST_TIMEOUT_S):
            while True:
                states = (await http.get("/_bench/states")).json()
                if states.get("connected", 0) >= SALONS + BURST:
                    break
                await trio.sleep(0.05)
        took = time.perf_counter() - started
        await http.post("/_bench/phase", params={"name": "after"})
        return took


def _mix(profile: bool) -> dict[str, Any]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    node = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bench_mix", "--node", str(port), *(["--profile"] if profile else [])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    clients: list[subprocess.Popen[str]] = []
    try:
        assert node.stdout is not None
        if _line(node.stdout, "the mix node") != "listening":
            raise RuntimeError("the mix node did not start")
        clients, connected, failed = _start_viewers(base.replace("http://", "ws://") + "/marketplace/ws")
        _say(f"{SALONS:,} salons connected; viewers connected {connected} (failed {failed})")
        httpx.post(f"{base}/_bench/phase", params={"name": "measure"}).raise_for_status()
        time.sleep(STEADY_S)
        burst_s = trio.run(_burst, port)
        time.sleep(AFTER_S)
        report: dict[str, Any] = httpx.get(f"{base}/_bench/report", timeout=60).json()
        report["burst_s"] = burst_s
        report["viewers"] = connected
        report["viewers_failed"] = failed
        return report
    finally:
        for process in [*clients, node]:
            if process.poll() is None:
                process.kill()
        for process in [*clients, node]:
            process.wait(timeout=30)


def _describe(report: dict[str, Any]) -> None:
    for phase, figures in report["lag"].items():
        _say(
            f"loop lag, {phase}: p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
            f"max {figures['max_ms']:.1f} ms ({figures['n']} samples)"
        )
    _say(
        f"burst of {BURST} onboarded in {report['burst_s']:.2f} s; {report['simulator'].get('messages_in_total')} "
        f"inbound messages; GC {report['gc_count']} longest {report['gc_longest_ms']} ms; "
        f"peak RSS {report['max_rss_mib']} MiB"
    )


def run(results: dict[str, float]) -> None:
    report = _mix(profile=False)
    _describe(report)
    lag = report["lag"]
    for key, phase in (("", "all"), ("_burst", "burst"), ("_no_gc", "all_no_gc"), ("_burst_no_gc", "burst_no_gc")):
        results[f"loop_lag_p50_ms{key}"] = lag[phase]["p50_ms"]
        results[f"loop_lag_p99_ms{key}"] = lag[phase]["p99_ms"]
        results[f"loop_lag_max_ms{key}"] = lag[phase]["max_ms"]
    results["mix_burst_s"] = report["burst_s"]


def _profile() -> None:
    report = _mix(profile=True)
    _describe(report)
    print(f"garbage collection: {report['steps_gc_ms']} ms CPU, longest {report['steps_gc_longest_ms']} ms")
    print("longest single steps (CPU, collections excluded):")
    for step in report["longest_steps"]:
        print(f"  {step['ms']:8.2f} ms  {step['task']}\n             yielded at {step['yielded_at']}")
    print("tasks by total step time:")
    for task in report["tasks_by_total"]:
        print(f"  {task['total_ms']:9.1f} ms  {task['steps']:8d} steps  max {task['max_ms']:7.2f} ms  {task['task']}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--node"]:
        trio.run(main_node, int(sys.argv[2]), "--profile" in sys.argv[3:])
    elif sys.argv[1:] == ["--profile"]:
        _profile()
    else:
        found: dict[str, float] = {}
        run(found)
        for name, value in sorted(found.items()):
            print(f"{name} = {value:.3f}")
