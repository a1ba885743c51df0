"""How many live viewers one node's ``WS /marketplace/ws`` holds, and what our stack costs over a
bare hypercorn + quart-trio broadcast.

``run(results)`` adds:

* ``ws_p99_ms_<N>`` (N = 100, 1000, 5000, and the other steps tried) — p99 delivery latency of a
  QR-like frame with N viewers spread over 100 companies, every company publishing one frame per
  ``PERIOD_S`` (staggered, as QR refreshes of different salons are), for ``ROUNDS`` periods;
* ``ws_viewers_held`` — the largest N of ``STEPS`` whose p99 stayed within ``P99_LIMIT_MS`` with every
  frame delivered (target ≥ 5,000);
* ``ws_broadcast_ms`` / ``ws_broadcast_bare_ms`` — median time for one frame to reach all of 1,000
  viewers of one company (publish → last viewer), ours vs the bare app (both served at once, their
  broadcasts alternating);
* ``ws_overhead_ratio`` — the first over the second (target ≤ 1.5);
* ``ws_fanout_cpu_us_<N>`` — the server's CPU time per frame delivered over a round (the idle
  upkeep of N connections — keep-alive pings, timers — included);
* ``ws_bytes_per_viewer_<N>`` — bytes each viewer received from its TCP socket while the frames
  flowed (websocket framing and keep-alive pings included), for N = 1000 and 5000;
* against Socket.IO on Node, the stack this one replaces (where ``node`` and ``npm`` exist; one line
  says it is skipped otherwise): ``socket.io`` pinned to ``SOCKETIO_VERSION``, installed under
  ``.bench/socketio``, serving ``tests/bench/_socketio_server.js`` — the same frames to the same
  viewers, measured by the same client processes (speaking Engine.IO v4 over a websocket) —
  ``socketio_p99_ms_<N>``, ``socketio_bytes_per_viewer_<N>``, ``socketio_fanout_cpu_us_<N>``, and ours over theirs:
  ``ws_vs_socketio_p99_ratio_<N>`` and ``ws_vs_socketio_bytes_per_viewer_ratio_<N>`` (aim ≤ 1.0).

Each measurement runs the server in its own process (``tests/bench/_ws_node.py``: the real node
wiring — ``open_services`` + ``create_app`` + hypercorn — with an in-memory store, the in-process bus
and no Redis, hence no per-IP limiter) and the viewers in ``CLIENT_PROCS`` other processes
(``tests/bench/_ws_clients.py``, trio-websocket), all on this machine, so the clients' CPU competes
with the server's: the figures are a floor for a node on its own machine.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import IO, Any, NamedTuple

import httpx

ROOT = Path(__file__).resolve().parents[2]
STEPS = (100, 1000, 2000, 3000, 5000, 8000, 10000)
ALWAYS = (100, 1000, 5000)  # measured even after a step failed: they are reported by name
COMPANIES = 100
PERIOD_S = 5.0  # 4× the real rate: a salon's QR is refreshed every 20 s
ROUNDS = 2
P99_LIMIT_MS = 100.0
CLIENT_PROCS = 2
BROADCAST_VIEWERS = 1000
BROADCASTS = 25
BROADCAST_GAP_S = 0.3
SOCKETIO_VERSION = "4.8.4"
SOCKETIO_DIR = ROOT / ".bench" / "socketio"
SOCKETIO_STEPS = (1000, 5000)


def _say(text: str) -> None:
    print(f"  ws: {text}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _line(stream: IO[str], what: str) -> str:
    line = stream.readline()
    if not line:
        raise RuntimeError(f"{what} exited before it was ready")
    return line.strip()


class _Run:
    """One server process and its viewer processes, torn down on exit."""

    def __init__(self, kind: str, viewers: int, companies: int) -> None:
        self.kind = kind
        self.port = _free_port()
        self.viewers = viewers
        self.companies = companies
        self.node: subprocess.Popen[str] | None = None
        self.clients: list[subprocess.Popen[str]] = []
        self.connected = 0
        self.failed = 0
        self.bytes_while_flowing = 0

    def __enter__(self) -> _Run:
        if self.kind == "socketio":
            command = ["node", str(ROOT / "tests" / "bench" / "_socketio_server.js"), str(self.port)]
            environment = dict(os.environ, NODE_PATH=str(SOCKETIO_DIR / "node_modules"))
            url = f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"
        else:
            command = [sys.executable, "-m", "tests.bench._ws_node", self.kind, str(self.port)]
            environment = dict(os.environ)
            url = f"ws://127.0.0.1:{self.port}/marketplace/ws"
        self.node = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=environment)
        assert self.node.stdout is not None
        if _line(self.node.stdout, "the websocket node") != "listening":
            raise RuntimeError("the websocket node did not start")
        share = math.ceil(self.viewers / CLIENT_PROCS)
        for first in range(0, self.viewers, share):
            count = min(share, self.viewers - first)
            arguments = [self.kind, url, str(first), str(count), str(self.companies)]
            self.clients.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.bench._ws_clients", *arguments],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for client in self.clients:
            assert client.stdout is not None
            _, ok, failed = _line(client.stdout, "a viewer process").split()
            self.connected += int(ok)
            self.failed += int(failed)
        return self

    def round(self, period: float) -> dict[str, Any]:
        """Publish one frame per company over ``period`` seconds; the server's figures after it."""
        with httpx.Client(timeout=period + 60) as http:
            response = http.post(
                f"http://127.0.0.1:{self.port}/_bench/round", params={"companies": self.companies, "period": period}
            )
            response.raise_for_status()
            report: dict[str, Any] = response.json()
            return report

    def samples(self) -> list[tuple[int, float]]:
        found: list[tuple[int, float]] = []
        for client in self.clients:
            assert client.stdin is not None and client.stdout is not None
            client.stdin.write("stop\n")
            client.stdin.flush()
        for client in self.clients:
            assert client.stdout is not None
            report = json.loads(_line(client.stdout, "a viewer process"))
            found += [(int(seq), float(ms)) for seq, ms in report["samples"]]
            self.bytes_while_flowing += int(report["bytes_total"]) - int(report["bytes_ready"])
        return found

    def __exit__(self, *exc: object) -> None:
        for process in [*self.clients, self.node]:
            if process is not None and process.poll() is None:
                process.kill()
        for process in [*self.clients, self.node]:
            if process is not None:
                process.wait(timeout=30)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


class Step(NamedTuple):
    """One scaling step: p99 latency (ms), whether every frame arrived, bytes per viewer, and the
    server's CPU time (µs) per frame delivered, the median of the rounds (idle upkeep included)."""

    p99_ms: float
    complete: bool
    bytes_per_viewer: float
    cpu_us_per_delivery: float


def _scaling_step(viewers: int, kind: str = "ours") -> Step:
    """``viewers`` viewers of ``COMPANIES`` companies, ``ROUNDS`` rounds of frames."""
    started = time.perf_counter()
    with _Run(kind, viewers, COMPANIES) as run:
        connect_s = time.perf_counter() - started
        reports = [run.round(PERIOD_S) for _ in range(ROUNDS)]
        time.sleep(0.5)  # let the last frames of the round land
        samples = run.samples()
    expected = ROUNDS * viewers
    latencies = [ms for _, ms in samples] or [math.nan]
    missing = expected - len(samples)
    p99 = _p99(latencies)
    bytes_per_viewer = run.bytes_while_flowing / max(1, run.connected)
    report = reports[-1]
    cpu_us = statistics.median(r["cpu_ms"] for r in reports) * 1000 / viewers
    server = ""
    if "gc_count" in report:
        # Collections by generation over all rounds, and the longest pause of each.
        counts = [sum(r["gc_count"][g] for r in reports) for g in range(3)]
        longest = [max(r["gc_longest_ms"][g] for r in reports) for g in range(3)]
        slow = [pause for r in reports for pause in r["gc_slow"]]
        server = (
            f"; server GC {counts} (longest {longest} ms; over 20 ms, as (generation, ms, freed): {slow}; "
            f"young generation before each round {[r['gc_young'] for r in reports]}), "
            f"{report['gc_objects']} objects, peak RSS {report['max_rss_mib']} MiB"
        )
    _say(
        f"{kind}, {viewers} viewers: connected {run.connected} (failed {run.failed}) in {connect_s:.1f} s, "
        f"{len(samples)}/{expected} frames, p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {p99:.1f} ms, max {max(latencies):.1f} ms{server}; "
        f"server CPU {cpu_us:.0f} µs per frame delivered, "
        f"{bytes_per_viewer:.0f} bytes per viewer; load {_load()}"
    )
    # A frame that never arrived (a refused connection, a dropped viewer) fails the step outright.
    return Step(p99, missing <= 0, bytes_per_viewer, cpu_us)


def _load() -> str:
    """The machine's 1-minute load average: it is shared, and the figures move with it."""
    return f"{os.getloadavg()[0]:.1f}"


def _broadcast_times(run: _Run, samples: list[tuple[int, float]]) -> list[float]:
    """Per frame, the time (ms) from publishing it to its last viewer receiving it; the first
    frame warms up and is left out."""
    by_seq: dict[int, list[float]] = defaultdict(list)
    for seq, ms in samples:
        by_seq[seq].append(ms)
    short = sum(1 for values in by_seq.values() if len(values) < run.connected)
    if short or run.failed or len(by_seq) < BROADCASTS:
        raise RuntimeError(f"{run.kind}: {run.failed} viewers failed to connect, {short} broadcasts missed some")
    return [max(values) for seq, values in sorted(by_seq.items()) if seq > 1]


def _broadcasts() -> tuple[float, float]:
    """Median broadcast time (ms) to ``BROADCAST_VIEWERS`` viewers of one company: ours, bare.

    Both servers run side by side with their viewers connected, and their broadcasts alternate
    frame by frame, so other load on the machine (it is shared) hits both alike.
    """
    with _Run("ours", BROADCAST_VIEWERS, 1) as ours, _Run("bare", BROADCAST_VIEWERS, 1) as bare:
        for _ in range(BROADCASTS):
            for run in (ours, bare):
                run.round(0.0)
                time.sleep(BROADCAST_GAP_S)
        times = {run.kind: _broadcast_times(run, run.samples()) for run in (ours, bare)}
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    _say(
        f"broadcast to {BROADCAST_VIEWERS} viewers, median of {BROADCASTS - 1}: ours {medians['ours']:.1f} ms, "
        f"bare {medians['bare']:.1f} ms (ours p25–p75 {_quartiles(times['ours'])}, "
        f"bare {_quartiles(times['bare'])})"
    )
    return medians["ours"], medians["bare"]


def _quartiles(values: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.0f}–{q3:.0f}"


def _socketio_ready() -> bool:
    """Is the pinned ``socket.io`` installed under ``.bench/socketio`` (installing it if need be)?
    False, having said why, where ``node`` or ``npm`` is missing or the install failed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _say("Socket.IO comparison skipped: node and npm are not both on PATH")
        return False
    installed = SOCKETIO_DIR / "node_modules" / "socket.io" / "package.json"
    if installed.exists() and json.loads(installed.read_text()).get("version") == SOCKETIO_VERSION:
        return True
    _say(f"installing socket.io@{SOCKETIO_VERSION} under {SOCKETIO_DIR.relative_to(ROOT)} …")
    done = subprocess.run(
        ["npm", "install", "--prefix", str(SOCKETIO_DIR), "--no-audit", "--no-fund", f"socket.io@{SOCKETIO_VERSION}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        _say(f"Socket.IO comparison skipped: npm install failed: {done.stderr.strip()[-300:]}")
        return False
    return True


def _against_socketio(results: dict[str, Any], ours: dict[int, Step]) -> None:
    if not _socketio_ready():
        return
    for viewers in SOCKETIO_STEPS:
        theirs = _scaling_step(viewers, "socketio")
        results[f"socketio_p99_ms_{viewers}"] = theirs.p99_ms
        results[f"socketio_bytes_per_viewer_{viewers}"] = theirs.bytes_per_viewer
        results[f"socketio_fanout_cpu_us_{viewers}"] = theirs.cpu_us_per_delivery
        results[f"ws_vs_socketio_p99_ratio_{viewers}"] = ours[viewers].p99_ms / theirs.p99_ms
        ratio = ours[viewers].bytes_per_viewer / theirs.bytes_per_viewer
        results[f"ws_vs_socketio_bytes_per_viewer_ratio_{viewers}"] = ratio


def run(results: dict[str, Any]) -> None:
    held = 0
    failed = False
    steps: dict[int, Step] = {}
    for viewers in STEPS:
        if failed and viewers not in ALWAYS:
            continue
        step = steps[viewers] = _scaling_step(viewers)
        results[f"ws_p99_ms_{viewers}"] = step.p99_ms
        results[f"ws_fanout_cpu_us_{viewers}"] = step.cpu_us_per_delivery
        if viewers in SOCKETIO_STEPS:
            results[f"ws_bytes_per_viewer_{viewers}"] = step.bytes_per_viewer
        if not failed and step.complete and step.p99_ms <= P99_LIMIT_MS:
            held = viewers
        else:
            failed = True
    results["ws_viewers_held"] = held
    _against_socketio(results, steps)

    ours, bare = _broadcasts()
    results["ws_broadcast_ms"] = ours
    results["ws_broadcast_bare_ms"] = bare
    results["ws_overhead_ratio"] = ours / bare


if __name__ == "__main__":
    found: dict[str, Any] = {}
    run(found)
    for name, value in found.items():
        print(f"{name} = {value:.3f}")
