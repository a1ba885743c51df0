"""The collector settings a node runs with (docs/websocket.md#garbage-collection): ``serve`` as a real
process sets ``GC_THRESHOLDS`` and freezes its start-up objects, and ``/status`` says so."""

from __future__ import annotations

import gc
import subprocess
from pathlib import Path

import httpx

from actor_admin.node import freeze_start_up, tune_gc
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
