"""Model-based test: random programs of ensure / crash / exit / stop / restart / time advances,
run against the real supervisor and against a small synchronous model of what it should do.

A supervisor lives inside one ``trio.run``, so rather than a RuleBasedStateMachine whose rules
could not share it, Hypothesis draws a whole program (a list of operations) and the test runs
it in one ``trio.run`` on a manual MockClock, comparing supervisor and model after every step.
Hypothesis shrinks a failing program to a short one, and trio's Hypothesis plugin makes the
scheduling deterministic per example, so a failure replays.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actor_admin.runtime import ActorState, Backoff, Restart, Supervisor, SupervisorPolicy, open_supervisor
from tests.runtime._probe import Probe

KEYS = (0, 1)
POLICY = SupervisorPolicy(
    backoff=Backoff(initial_s=1.0, factor=2.0, max_s=8.0, jitter=0.0),
    backoff_reset_after_s=10.0,
    intensity_max_restarts=3,
    intensity_window_s=20.0,
    stop_grace_s=1.0,
)


@attrs.define
class KeyModel:
    state: ActorState = ActorState.RUNNING
    restarts: int = 0
    attempt: int = 0
    crashes: list[float] = attrs.field(factory=list)
    run_started: float = 0.0
    wake_at: float | None = None


@attrs.define
class Model:
    """What the supervisor should do, written as plainly as possible from the spec."""

    restart_type: Restart
    now: float = 0.0
    keys: dict[Hashable, KeyModel] = attrs.field(factory=dict)
    starts: dict[Hashable, int] = attrs.field(factory=lambda: dict.fromkeys(KEYS, 0))

    def ensure(self, key: Hashable) -> None:
        if key not in self.keys:
            self.keys[key] = KeyModel(run_started=self.now)
            self.starts[key] += 1

    def end(self, key: Hashable, crashed: bool) -> None:
        """The running actor of ``key`` crashed or returned by itself."""
        model = self.keys[key]
        if self.restart_type is Restart.TEMPORARY or (not crashed and self.restart_type is Restart.TRANSIENT):
            del self.keys[key]
            return
        if self.now - model.run_started >= POLICY.backoff_reset_after_s:
            model.attempt = 0
        model.crashes = [t for t in model.crashes if t > self.now - POLICY.intensity_window_s]
        model.crashes.append(self.now)
        if len(model.crashes) > POLICY.intensity_max_restarts:
            model.state = ActorState.FAILED
            return
        model.state = ActorState.BACKING_OFF
        model.wake_at = self.now + POLICY.backoff.base_delay(model.attempt)
        model.attempt += 1

    def stop(self, key: Hashable) -> None:
        self.keys.pop(key, None)

    def restart(self, key: Hashable) -> None:
        model = self.keys.get(key)
        if model is None:
            self.ensure(key)
            return
        if model.state is ActorState.FAILED:
            model.crashes = []
            model.attempt = 0
        self._run_again(key, model)

    def next_wake(self) -> float | None:
        wakes = [m.wake_at for m in self.keys.values() if m.state is ActorState.BACKING_OFF]
        return min((w for w in wakes if w is not None), default=None)

    def wake_due(self) -> None:
        for key, model in self.keys.items():
            if model.state is ActorState.BACKING_OFF and model.wake_at == self.now:
                self._run_again(key, model)

    def _run_again(self, key: Hashable, model: KeyModel) -> None:
        model.state = ActorState.RUNNING
        model.wake_at = None
        model.restarts += 1
        model.run_started = self.now
        self.starts[key] += 1


key_st = st.sampled_from(KEYS)
# Weighted towards crashes and short advances: the interesting histories (back-off chains,
# the intensity limit, resets) need several of them in a row on one key.
key_ops = st.tuples(st.sampled_from(["ensure", "crash", "crash", "crash", "exit", "stop", "restart"]), key_st)
# Binary fractions only, so virtual time adds up exactly in model and clock alike.
advances = st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0, 11.0, 30.0]))
operations = st.one_of(key_ops, advances)


async def _completes_without_time(operation: Callable[[], Awaitable[object]]) -> None:
    """Run ``operation``; with cooperative actors it must finish without virtual time passing,
    so still being blocked once every task is blocked means a deadlock in the supervisor."""
    finished = False

    async def run() -> None:
        nonlocal finished
        await operation()
        finished = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        if not finished:
            nursery.cancel_scope.cancel()
    assert finished, "operation deadlocked"


def _check(supervisor: Supervisor[Hashable, Any], model: Model, probe: Probe) -> None:
    assert trio.current_time() == model.now
    assert set(supervisor.keys()) == set(model.keys)
    for key in KEYS:
        assert probe.max_live[key] <= 1, f"two actors ran at once for key {key}"
        assert len(probe.starts[key]) == model.starts[key]
        expected = model.keys.get(key)
        assert probe.live[key] == (1 if expected and expected.state is ActorState.RUNNING else 0)
        if expected is None:
            assert supervisor.get(key) is None
            continue
        ref = supervisor.get(key)
        assert ref is not None
        stats = ref.statistics()
        assert (stats.state, stats.restarts) == (expected.state, expected.restarts)


async def _run_program(restart_type: Restart, program: list[tuple[str, Any]]) -> None:
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    probe = Probe()
    model = Model(restart_type)
    async with open_supervisor(probe.factory, policy=POLICY, restart=restart_type) as supervisor:
        for op, arg in program:
            if op == "ensure":
                await _completes_without_time(lambda k=arg: supervisor.ensure(k))
                model.ensure(arg)
            elif op in ("crash", "exit"):
                ref = supervisor.get(arg)
                running = model.keys.get(arg)
                if ref is None or running is None or running.state is not ActorState.RUNNING:
                    continue
                ref.send_nowait(op)
                model.end(arg, crashed=op == "crash")
            elif op == "stop":
                await _completes_without_time(lambda k=arg: supervisor.stop(k))
                model.stop(arg)
            elif op == "restart":
                await _completes_without_time(lambda k=arg: supervisor.restart(k))
                model.restart(arg)
            else:
                target = model.now + arg
                while (wake := model.next_wake()) is not None and wake <= target:
                    clock.jump(wake - trio.current_time())
                    model.now = wake
                    await trio.testing.wait_all_tasks_blocked()
                    model.wake_due()
                clock.jump(target - trio.current_time())
                model.now = target
            await trio.testing.wait_all_tasks_blocked()
            _check(supervisor, model, probe)
    assert sum(probe.live.values()) == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    restart_type=st.sampled_from(list(Restart)),
    program=st.lists(operations, max_size=60),
)
def test_supervisor_matches_its_model(restart_type: Restart, program: list[tuple[str, Any]]) -> None:
    trio.run(_run_program, restart_type, program, clock=trio.testing.MockClock())
