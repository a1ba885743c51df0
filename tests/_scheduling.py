"""Deterministic trio scheduling for concurrency tests (a pytest plugin).

A test that requests the ``schedule_seed`` fixture runs once per seed (``--schedule-seeds=N``,
20 by default), each time with trio's scheduler made deterministic for that seed, so an
interleaving that breaks an invariant is found repeatably and can be replayed: a failing run
prints ``--schedule-seed=S`` and the exact command.

Private trio API, used here and nowhere else: trio shuffles every scheduling batch with the
module-level ``random.Random`` ``trio._core._run._r``, and sorts the batch first (so the shuffle
depends only on the seed) when ``trio._core._run._ALLOW_DETERMINISTIC_SCHEDULING`` is true —
the hook trio's own Hypothesis plugin and its ``test_scheduler_determinism`` use. Checked with
trio 0.35.0 (``trio/_core/_run.py``: ``_r``, ``_ALLOW_DETERMINISTIC_SCHEDULING`` and the batch
sort in ``unrolled_run``); if a later trio drops them the fixture fails with a message naming
this file instead of silently testing one random schedule.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import trio

_OPTION_SEEDS = "--schedule-seeds"
_OPTION_SEED = "--schedule-seed"
_CHECKED_WITH = "trio 0.35.0"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("schedule", "deterministic trio scheduling")
    group.addoption(
        _OPTION_SEEDS,
        type=int,
        default=20,
        metavar="N",
        help="run each scheduling-sensitive test under seeds 0..N-1 (default 20)",
    )
    group.addoption(
        _OPTION_SEED,
        type=int,
        default=None,
        metavar="S",
        help="run scheduling-sensitive tests under seed S only (to replay a failure)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "schedule_seed" not in metafunc.fixturenames:
        return
    only = metafunc.config.getoption(_OPTION_SEED)
    seeds = [only] if only is not None else list(range(metafunc.config.getoption(_OPTION_SEEDS)))
    metafunc.parametrize("schedule_seed", seeds, indirect=True, ids=[f"seed={s}" for s in seeds])


def _trio_run_module() -> Any:
    run_module = trio._core._run
    if not hasattr(run_module, "_r") or not hasattr(run_module, "_ALLOW_DETERMINISTIC_SCHEDULING"):
        pytest.fail(
            f"trio {trio.__version__} no longer has the private scheduling hooks that "
            f"tests/_scheduling.py relies on (checked with {_CHECKED_WITH}); update that fixture",
            pytrace=False,
        )
    return run_module


@pytest.fixture
def schedule_seed(request: pytest.FixtureRequest) -> Iterator[int]:
    """The seed trio's scheduler runs with in this test; the test body runs deterministically."""
    seed: int = request.param
    run_module = _trio_run_module()
    saved_flag = run_module._ALLOW_DETERMINISTIC_SCHEDULING
    saved_state = run_module._r.getstate()
    run_module._ALLOW_DETERMINISTIC_SCHEDULING = True
    run_module._r.seed(seed)
    try:
        yield seed
    finally:
        run_module._r.setstate(saved_state)
        run_module._ALLOW_DETERMINISTIC_SCHEDULING = saved_flag


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report: pytest.TestReport = yield
    callspec = getattr(item, "callspec", None)
    if report.failed and callspec is not None and "schedule_seed" in callspec.params:
        seed = callspec.params["schedule_seed"]
        command = shlex.join([sys.executable, "-m", "pytest", item.nodeid, f"{_OPTION_SEED}={seed}"])
        report.sections.append(
            ("deterministic schedule", f"failed with schedule seed {seed}; replay it with:\n  {command}")
        )
    return report
