"""Retention as an operator sees it over real HTTP: table sizes and the retention in force in the
detailed ``/status``, pruned rows in ``/metrics`` (docs/http-api.md#status, docs/data.md#retention)."""

from __future__ import annotations

from tests.store._ownership_helpers import sql

from .conftest import TestNode
from .test_metrics import scrape


async def old_and_new_messages(dsn: str, old: int, new: int) -> None:
    await sql(
        dsn,
        "INSERT INTO messages (salon_id, direction, wa_id, peer, text, status, at) "
        "SELECT 7, 'in', 'w' || g, '79001234567', 'hi', 'received', "
        "       CASE WHEN g <= $1::int THEN now() - interval '100 days' ELSE now() END "
        "FROM generate_series(1, $1::int + $2::int) g",
        old, new,
    )
    await sql(dsn, "ANALYZE messages")


async def test_the_detailed_status_shows_table_sizes_and_the_retention_in_force(node: TestNode, pg_dsn: str) -> None:
    await old_and_new_messages(pg_dsn, 0, 300)

    body = (await node.http.get("/status", headers=node.admin)).json()

    tables = body["storage"]["tables"]
    assert set(tables) == {"companies", "whatsapp_credentials", "company_events", "outbox", "messages"}
    assert tables["messages"]["rows_estimate"] == 300
    assert tables["messages"]["bytes"] > 0
    assert body["storage"]["retention"] == {
        "messages_days": 90, "events_days": 365, "outbox_days": 30, "last_run": None,
    }
    anonymous = (await node.http.get("/status")).json()
    assert "storage" not in anonymous  # sizes are for operators only


async def test_pruned_rows_are_counted_in_metrics_and_the_last_run_shown_in_status(node: TestNode, pg_dsn: str) -> None:
    await old_and_new_messages(pg_dsn, 40, 2)
    before = await scrape(node)
    assert before[("actor_admin_retention_pruned_rows_total", (("table", "messages"),))] == 0.0
    assert node.services.pruner is not None

    await node.services.pruner.prune_once()

    after = await scrape(node)
    assert after[("actor_admin_retention_pruned_rows_total", (("table", "messages"),))] == 40.0
    assert after[("actor_admin_retention_pruned_rows_total", (("table", "outbox"),))] == 0.0
    assert after[("actor_admin_retention_runs_total", (("outcome", "done"),))] == 1.0
    last_run = (await node.http.get("/status", headers=node.admin)).json()["storage"]["retention"]["last_run"]
    assert last_run["outcome"] == "done"
    assert last_run["pruned"] == {"messages": 40, "company_events": 0, "outbox": 0}
    assert last_run["at"].endswith("Z")
