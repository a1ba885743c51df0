"""The server side of the websocket benchmark, run as its own process by ``bench_ws``.

``python -m tests.bench._ws_node ours PORT`` serves a whole node (``open_services`` + ``create_app``,
the in-process WhatsApp simulator, an in-memory store, the in-process bus; no Redis, so no rate
limiter) with one extra bench-only route; ``python -m tests.bench._ws_node bare PORT`` serves the
baseline: a minimal QuartTrio app with one websocket route that registers a trio memory channel per
client and a broadcast function.

Both answer ``POST /_bench/round?companies=C&period=P`` by publishing one QR-like frame to each of
the companies ``1..C``, company ``i`` at ``i·P/C`` seconds into the round (QR refreshes of different
salons are not synchronised), every frame stamped with ``sent_at = time.time()``. The request
returns when the round is over. Prints ``listening`` on stdout once it accepts connections.
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import resource
import sys
import time
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import request, websocket
from quart_trio import QuartTrio

QR_PAYLOAD = "2@" + "Q" * 60 + "," + "K" * 44 + "," + "I" * 44 + "," + "A" * 24


class GcPauses:
    """The longest garbage-collector pause per generation (to explain latency outliers), and the
    process's peak memory. Nothing here walks the heap: the report is made while frames are still
    in flight."""

    def __init__(self) -> None:
        self.longest = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self.slow: list[tuple[int, float, int]] = []
        self.cpu_started = time.process_time()
        self._started = 0.0
        self.objects = 0
        #: Objects in the youngest generation, and the collector's counters: the first outgrows the
        #: count (it drops as old objects are freed), and a young collection walks them all.
        self.young: tuple[int, tuple[int, int, int]] = (0, (0, 0, 0))
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            took = time.perf_counter() - self._started
            self.count[generation] += 1
            self.longest[generation] = max(self.longest[generation], took)
            if took > 0.02:  # (generation, ms, objects freed): the pauses that show in the latency
                self.slow.append((generation, round(took * 1000, 1), info["collected"]))

    def start_round(self) -> None:
        """Count the objects the collector tracks (this walks the heap: before a round, not during)
        and forget the pauses so far: a round's report covers the round alone."""
        self.objects = len(gc.get_objects())
        self.young = (len(gc.get_objects(0)), gc.get_count())
        self.longest = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self.slow = []
        self.cpu_started = time.process_time()

    def report(self) -> dict[str, Any]:
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "gc_objects": self.objects,
            "cpu_ms": round((time.process_time() - self.cpu_started) * 1000),
            "gc_count": self.count,
            "gc_slow": self.slow,
            "gc_young": self.young,
            "gc_longest_ms": [round(x * 1000, 1) for x in self.longest],
            "max_rss_mib": round(rss_mib),
        }


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def qr_frame(seq: int) -> dict[str, Any]:
    """A ``qr`` frame as the actor publishes it: the raw payload only (the page draws it)."""
    return {"type": "qr", "qr": QR_PAYLOAD, "expires_in": 20, "seq": seq}


async def run_round(publish: Any, companies: int, period: float, template: dict[str, Any], seq: int) -> None:
    """Publish one frame per company, spread evenly over ``period`` seconds (under cProfile, its
    statistics written to the file ``BENCH_WS_PROFILE`` names, when that is set; timed by the
    thread's CPU clock: on a shared machine wall time also counts other processes' turns)."""
    profile_to = os.environ.get("BENCH_WS_PROFILE")
    profiler = cProfile.Profile(time.thread_time) if profile_to else None
    if profiler is not None:
        profiler.enable()
    start = trio.current_time()
    for index in range(companies):
        await trio.sleep_until(start + index * period / companies)
        frame = dict(template, seq=seq, sent_at=time.time())
        await publish(index + 1, frame)
    await trio.sleep(0.2)  # the last frames' sends
    if profiler is not None and profile_to:
        profiler.disable()
        profiler.dump_stats(profile_to)


def _config(port: int) -> Config:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    config.backlog = 4096
    config.websocket_ping_interval = 20.0  # as the real node (actor_admin.node.hypercorn_config)
    return config


async def _serve(app: Any, port: int) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: serve(app, _config(port), task_status=task_status))
        print("listening", flush=True)


def _round_args() -> tuple[int, float]:
    return int(request.args.get("companies", "1")), float(request.args.get("period", "0"))


# -- our stack ---------------------------------------------------------------------------------------


async def main_ours(port: int) -> None:
    from actor_admin.api import create_app
    from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
    from actor_admin.node import Parts, freeze_start_up, open_services, tune_gc
    from tests.actors.memory_store import MemoryStore
    from tests.api.conftest import node_settings

    store = MemoryStore()

    async def company(salon_id: int) -> None:
        return None  # no company record: not frozen, not uninstalled

    store.companies.get = company  # type: ignore[attr-defined]  # the in-memory store lacks it
    core = SimulatorCore()
    # The node's own collector settings (GC_THRESHOLDS from the environment, else the default).
    settings = node_settings(port, GC_THRESHOLDS=os.environ.get("GC_THRESHOLDS", ""))
    tune_gc(settings)
    template = qr_frame(0)
    seq = 0
    pauses = GcPauses()
    async with open_services(settings, Parts(store=store, redis=None, transport=SimulatorTransport(core))) as services:
        assert services.limiter is None  # no Redis: the per-IP handshake limit is off
        app = create_app(services)
        freeze_start_up()

        @app.route("/_bench/round", methods=["POST"])
        async def bench_round() -> Any:
            nonlocal seq
            seq += 1
            companies, period = _round_args()
            pauses.start_round()
            await run_round(services.bus.publish, companies, period, template, seq)
            return {"seq": seq, "bus": str(services.bus.statistics()), **pauses.report()}

        await _serve(app, port)


# -- the baseline ------------------------------------------------------------------------------------


async def main_bare(port: int) -> None:
    app = QuartTrio(__name__)
    viewers: dict[int, set[trio.MemorySendChannel[str]]] = {}
    template = qr_frame(0)
    seq = 0
    pauses = GcPauses()

    async def broadcast(salon_id: int, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        for channel in list(viewers.get(salon_id, ())):
            try:
                channel.send_nowait(text)
            except trio.WouldBlock:
                pass

    @app.websocket("/marketplace/ws")
    async def ws() -> None:
        salon_id = int(websocket.args.get("salon", "1"))
        send, receive = trio.open_memory_channel[str](64)
        viewers.setdefault(salon_id, set()).add(send)
        try:
            await websocket.send('{"type":"hello"}')
            async for text in receive:
                await websocket.send(text)
        finally:
            viewers[salon_id].discard(send)

    @app.route("/_bench/round", methods=["POST"])
    async def bench_round() -> Any:
        nonlocal seq
        seq += 1
        companies, period = _round_args()
        pauses.start_round()
        await run_round(broadcast, companies, period, template, seq)
        return {"seq": seq, **pauses.report()}

    await _serve(app, port)


if __name__ == "__main__":
    _raise_fd_limit()
    kind, port_text = sys.argv[1], sys.argv[2]
    trio.run(main_ours if kind == "ours" else main_bare, int(port_text))
