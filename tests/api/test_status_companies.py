"""The supervisor's JSON behind the /status page: salons one page at a time, filtered by state or problem,
and a salon's history from the event log, newest first (docs/http-api.md#status-companies,
docs/http-api.md#status-history)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import TestNode
from .test_webhook import connect, eventually, hook

pytestmark = pytest.mark.integration


async def _bulk_register(node: TestNode, count: int, *, activation_failed: int) -> None:
    """``count`` salons in one statement (registering them one by one would take the test's time)."""

    async def work(conn: Any) -> None:
        await conn.execute(
            "INSERT INTO companies (salon_id, title, integration_status) "
            "SELECT g, 'Salon ' || g, CASE WHEN g % ($1::int / $2::int) = 0 THEN 'activation_failed' "
            "ELSE 'pending_whatsapp' END FROM generate_series(1, $1::int) AS g",
            count,
            activation_failed,
        )

    await node.services.store._db.run(work)


@pytest.mark.parametrize("path", ["/status/companies", "/status/companies/7/history"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"}], ids=["none", "wrong"])
async def test_the_supervisors_json_needs_the_admin_token(node: TestNode, path: str, headers: dict[str, str]) -> None:
    await node.register(7)
    answer = await node.http.get(path, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


async def test_ten_thousand_salons_come_one_small_page_at_a_time(node: TestNode) -> None:
    await _bulk_register(node, 10_000, activation_failed=40)
    first = await node.http.get("/status/companies", headers=node.admin)
    assert first.status_code == 200
    body = first.json()
    assert (body["total"], body["page"], body["per_page"]) == (10_000, 1, 50)
    assert [c["salon_id"] for c in body["companies"]] == list(range(1, 51))
    assert len(first.content) < 20_000  # one page, not the 1.5 MB of every salon
    assert body["problems"]["activation_failed"] == 40
    last = (await node.http.get("/status/companies?page=200", headers=node.admin)).json()
    assert [c["salon_id"] for c in last["companies"]] == list(range(9951, 10_001))
    failed = (await node.http.get("/status/companies?problem=activation_failed", headers=node.admin)).json()
    assert failed["total"] == 40
    assert {c["integration_status"] for c in failed["companies"]} == {"activation_failed"}


async def test_the_logged_out_problem_lists_the_salon_unlinked_and_no_other(node: TestNode) -> None:
    await connect(node, 7)
    await connect(node, 8, phone="79007654321")
    assert (await node.http.post("/admin/companies/7/logout", headers=node.admin)).status_code == 200
    listing = (await node.http.get("/status/companies?problem=logged_out", headers=node.admin)).json()
    assert [(c["salon_id"], c["state"]) for c in listing["companies"]] == [(7, "logged_out")]
    assert listing["problems"]["logged_out"] == 1
    connected = (await node.http.get("/status/companies?state=connected", headers=node.admin)).json()
    assert [c["salon_id"] for c in connected["companies"]] == [8]
    assert connected["companies"][0]["phone"] == "79007654321"


async def test_a_salons_history_answers_why_it_is_not_connected_newest_first(node: TestNode) -> None:
    await connect(node, 7)
    assert (await node.http.post("/webhook/yclients", json=hook(7, "freeze"))).status_code == 200

    async def frozen_logged() -> Any:
        answer = (await node.http.get("/status/companies/7/history", headers=node.admin)).json()
        return answer if "frozen" in [e["type"] for e in answer["events"]] else None

    history = await eventually(frozen_logged)
    types = [e["type"] for e in history["events"]]
    ids = [e["id"] for e in history["events"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    lifecycle = ["frozen", "webhook_freeze", "connected", "restart_required", "paired"]
    assert [t for t in types if t in lifecycle] == lifecycle  # the activation worker may add its own
    assert all(0 <= e["age_s"] < 60 for e in history["events"])
    assert history["company"]["integration_status"] == "frozen"


async def test_a_bad_filter_or_page_is_a_422_and_an_unknown_salon_a_404(node: TestNode) -> None:
    for query in ("state=sleepy", "problem=idle", "page=0", "per_page=1000", "state=idle&problem=failed"):
        answer = await node.http.get(f"/status/companies?{query}", headers=node.admin)
        assert answer.status_code == 422, query
        assert answer.json()["error"]["code"] == "invalid_query"
    unknown = await node.http.get("/status/companies/424242/history", headers=node.admin)
    assert unknown.status_code == 404
