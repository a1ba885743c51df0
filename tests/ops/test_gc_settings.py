"""The collector settings a node runs with (docs/websocket.md#garbage-collection): ``serve`` as a real
process sets ``GC_THRESHOLDS`` and freezes its start-up objects, and ``/status`` says so; after
restore and claim rounds its :class:`CollectorPolicy` freezes the salons' heap and collects what that
froze once enough of it was freed (docs/capacity.md#garbage-collection)."""

from __future__ import annotations

import gc
import subprocess
import weakref
from pathlib import Path

import attrs
import httpx

from actor_admin.api import Counters
from actor_admin.node import CollectorPolicy, freeze_start_up, tune_gc
from tests.api.conftest import ADMIN_TOKEN, free_port, node_settings

from ._serve import serve_env, start_serve, stop_serve


async def test_serve_runs_with_the_configured_thresholds_and_its_start_up_frozen(
    aio_loop: object, pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    env = serve_env(pg_dsn, redis_url, free_port(), tmp_path, GC_THRESHOLDS="12345,7,3")
    serve = await start_serve(env, subprocess.DEVNULL, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=serve.base_url, timeout=10) as http:
            status = (await http.get("/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})).json()
    finally:
        assert await stop_serve(serve) == 0

    assert status["gc"]["thresholds"] == [12345, 7, 3]
    assert status["gc"]["frozen"] > 10_000  # modules, classes, the app: all of start-up
    assert len(status["gc"]["collections"]) == 3


def test_tuning_sets_the_thresholds_and_freezing_hides_what_exists_from_the_collector() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(node_settings(free_port(), GC_THRESHOLDS="4321,9,8"))
        assert gc.get_threshold() == (4321, 9, 8)
        made_before = [object.__new__(type("Probe", (), {}))]
        freeze_start_up()
        assert gc.get_freeze_count() > 0
        assert not any(item is made_before for item in gc.get_objects())
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)



class _Probe:
    """A tracked object that can be weakly referenced."""

    partner: object = None


@attrs.define
class _Counts:
    """The supervisor's counts, as the policy reads them."""

    actors: int = 0
    ended_total: int = 0


def _tracked(probe: object) -> bool:
    return any(item is probe for item in gc.get_objects())


def test_a_settled_round_freezes_what_its_actors_made_and_the_next_call_freezes_once_more() -> None:
    policy = CollectorPolicy(refreeze_share=0.25, counts=_Counts(actors=3))
    try:
        policy.start_up()
        made_by_the_round = _Probe()
        policy.settled(3)
        assert not _tracked(made_by_the_round)
        connected_after = _Probe()  # the last actors' connections, opened after the starter drained
        policy.settled(0)
        assert not _tracked(connected_after)
        later = _Probe()
        policy.settled(0)  # a planning round with nothing started: nothing frozen
        assert _tracked(later)
        assert (policy.freezes, policy.refreezes) == (2, 0)
    finally:
        gc.unfreeze()


def test_garbage_frozen_with_actors_that_ended_is_collected_once_their_share_is_reached() -> None:
    counts = _Counts(actors=8)
    policy = CollectorPolicy(refreeze_share=0.25, counts=counts)
    try:
        policy.start_up()
        left = _Probe()
        left.partner = left  # an actor's reference cycle: reference counting never frees it
        gone = weakref.ref(left)
        policy.settled(8)
        del left
        counts.actors, counts.ended_total = 7, 1  # one of eight left: below a quarter
        policy.settled(0)
        policy.settled(0)
        assert gone() is not None and policy.refreezes == 0  # frozen: no collection sees it
        counts.actors, counts.ended_total = 6, 2  # a quarter of those running (0.25 × 6 ≤ 2)
        policy.settled(0)
        assert gone() is None and policy.refreezes == 1
        assert policy.ended_at_collection == 2
        policy.settled(0)
        assert policy.refreezes == 1  # counted from the collection on
    finally:
        gc.unfreeze()


def test_closed_viewers_count_towards_the_collection_of_frozen_garbage_as_ended_actors_do() -> None:
    counts, viewers = _Counts(actors=2), Counters(websockets_open=6, websockets_total=6)
    policy = CollectorPolicy(refreeze_share=0.25, counts=counts, viewers=viewers)
    try:
        policy.start_up()
        policy.settled(2)  # two salons' actors and six open viewers frozen
        viewers.websockets_open = 4  # two viewers closed: 2 ≥ 0.25 × (2 actors + 4 viewers)
        policy.settled(0)
        assert policy.refreezes == 1
    finally:
        gc.unfreeze()
