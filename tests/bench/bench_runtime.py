"""Cost of the actor runtime against bare trio: throughput, request/reply latency, memory per
idle actor, and concurrent ``ensure``.

Targets (docs/architecture.md#performance-targets): ``mailbox_ratio`` >= 0.8, ``ask_ratio`` <= 3, ``idle_actor_ratio``
<= 2. Memory is measured in fresh subprocesses (``python -m tests.bench.bench_runtime --probe
KIND N``) so each figure starts from a clean heap.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from actor_admin.runtime import ActorContext, Request, open_supervisor

MESSAGES = 200_000
CAPACITY = 64
ASKS = 20_000
REPEATS = 3
MEMORY_SIZES = (10_000, 50_000)
_ROOT = Path(__file__).resolve().parents[2]


# -- throughput ------------------------------------------------------------------------------


async def _raw_channel_seconds() -> float:
    send, receive = trio.open_memory_channel[int](CAPACITY)
    done = trio.Event()

    async def consumer() -> None:
        count = 0
        async for _ in receive:
            count += 1
            if count == MESSAGES:
                done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        started = time.perf_counter()
        for n in range(MESSAGES):
            await send.send(n)
        await done.wait()
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    return elapsed


def _counting_actor(count: list[int], done: trio.Event) -> Callable[..., Any]:
    async def actor(
        ctx: ActorContext[int, Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async for _ in ctx.inbox:
            count[0] += 1
            if count[0] == MESSAGES:
                done.set()

    return actor


async def _mailbox_seconds() -> float:
    count = [0]
    done = trio.Event()
    actor = _counting_actor(count, done)
    async with open_supervisor(lambda key: actor) as supervisor:
        ref = await supervisor.ensure(0)
        await trio.testing.wait_all_tasks_blocked()
        started = time.perf_counter()
        for n in range(MESSAGES):
            await ref.send(n)
        await done.wait()
        return time.perf_counter() - started


# -- request/reply ---------------------------------------------------------------------------


async def _echo(ctx: ActorContext[int, Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    async for msg in ctx.inbox:
        if isinstance(msg, Request):
            msg.reply(msg.body)


async def _ask_roundtrips() -> list[float]:
    async with open_supervisor(lambda key: _echo) as supervisor:
        ref = await supervisor.ensure(0)
        samples = []
        for n in range(ASKS):
            started = time.perf_counter()
            await ref.ask(n, timeout=10)
            samples.append(time.perf_counter() - started)
        return samples


async def _bare_roundtrips() -> list[float]:
    request_send, request_receive = trio.open_memory_channel[int](CAPACITY)
    reply_send, reply_receive = trio.open_memory_channel[int](1)

    async def server() -> None:
        async for request in request_receive:
            await reply_send.send(request)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        samples = []
        for n in range(ASKS):
            started = time.perf_counter()
            await request_send.send(n)
            await reply_receive.receive()
            samples.append(time.perf_counter() - started)
        nursery.cancel_scope.cancel()
    return samples


# -- concurrent ensure -----------------------------------------------------------------------


async def _ensure_1000_seconds() -> float:
    async def idle(
        ctx: ActorContext[int, Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async for _ in ctx.inbox:
            pass

    async with open_supervisor(lambda key: idle) as supervisor:
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(supervisor.ensure, 0)
        return time.perf_counter() - started


# -- memory (run in a subprocess) ------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _bare_task(receive: trio.MemoryReceiveChannel[object]) -> None:
    async for _ in receive:
        pass


async def _idle_actor(
    ctx: ActorContext[int, Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    task_status.started()
    async for _ in ctx.inbox:
        pass


def _report_and_exit(per_item: float) -> None:
    # Exit on the spot: tearing down tens of thousands of tasks would only cost time.
    print(per_item, flush=True)
    os._exit(0)


async def _probe(kind: str, count: int) -> None:
    """Print the RSS growth per bare task or idle actor, after a warm-up of 1,000 of them."""
    if kind == "bare":
        senders: list[trio.MemorySendChannel[object]] = []
        async with trio.open_nursery() as nursery:

            def spawn() -> None:
                send, receive = trio.open_memory_channel[object](CAPACITY)
                senders.append(send)  # someone holds the sending side, as a mailbox ref would
                nursery.start_soon(_bare_task, receive)

            for _ in range(1000):
                spawn()
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            before = _rss_bytes()
            for _ in range(count):
                spawn()
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            _report_and_exit((_rss_bytes() - before) / count)
    async with open_supervisor(lambda key: _idle_actor) as supervisor:
        for key in range(1000):
            await supervisor.ensure(key)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        before = _rss_bytes()
        for key in range(1000, 1000 + count):
            await supervisor.ensure(key)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        _report_and_exit((_rss_bytes() - before) / count)


def _measure_in_subprocess(kind: str, count: int) -> float:
    output = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_runtime", "--probe", kind, str(count)],
        cwd=_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(output.strip().splitlines()[-1])


# -- entry points ----------------------------------------------------------------------------


def run(results: dict[str, float]) -> None:
    raw = min(trio.run(_raw_channel_seconds) for _ in range(REPEATS))
    boxed = min(trio.run(_mailbox_seconds) for _ in range(REPEATS))
    results["raw_channel_msgs_per_s"] = MESSAGES / raw
    results["mailbox_msgs_per_s"] = MESSAGES / boxed
    results["mailbox_ratio"] = raw / boxed

    ask = min(statistics.median(trio.run(_ask_roundtrips)) for _ in range(REPEATS))
    bare = min(statistics.median(trio.run(_bare_roundtrips)) for _ in range(REPEATS))
    results["ask_roundtrip_us"] = ask * 1e6
    results["bare_roundtrip_us"] = bare * 1e6
    results["ask_ratio"] = ask / bare

    results["ensure_1000_concurrent_ms"] = statistics.median(trio.run(_ensure_1000_seconds) for _ in range(5)) * 1e3

    for count in MEMORY_SIZES:
        suffix = "" if count == MEMORY_SIZES[-1] else f"_{count // 1000}k"
        bare_bytes = _measure_in_subprocess("bare", count)
        actor_bytes = _measure_in_subprocess("actor", count)
        results[f"bare_task_bytes{suffix}"] = bare_bytes
        results[f"idle_actor_bytes{suffix}"] = actor_bytes
        results[f"idle_actor_ratio{suffix}"] = actor_bytes / bare_bytes


def _main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "--probe" and argv[1] in ("bare", "actor"):
        trio.run(_probe, argv[1], int(argv[2]))
    raise SystemExit("usage: python -m tests.bench.bench_runtime --probe bare|actor COUNT")


if __name__ == "__main__":
    _main(sys.argv[1:])
