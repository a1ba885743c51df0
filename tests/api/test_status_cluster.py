"""``/status`` answers for the whole cluster (docs/http-api.md#status): node rows and owners come from
``cluster_nodes``/``salon_owners`` in a real PostgreSQL, written here as other nodes would."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from actor_admin import __version__
from actor_admin.session import RequestQr
from actor_admin.store import Claim, Member
from tests.store._ownership_helpers import add_companies, sql

from .conftest import TestNode
from .test_routing import keeper_cluster, placed_on  # noqa: F401 - the two-node fixture
from .test_webhook import eventually

pytestmark = pytest.mark.integration

B = Member("node-b", "inc-b", "9.9.9")


async def _status(node: TestNode, *, admin: bool = True) -> dict[str, Any]:
    headers = node.admin if admin else {}
    response = await node.http.get("/status", headers={**headers, "Accept": "application/json"})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def _store_credentials(pg_dsn: str, salon_ids: list[int]) -> None:
    await sql(
        pg_dsn,
        "INSERT INTO whatsapp_credentials (salon_id, blob, key_id) SELECT unnest($1::bigint[]), '\\x00', 'k'",
        salon_ids,
    )


async def test_a_node_outside_the_cluster_tables_is_listed_alone_owning_what_it_runs(node: TestNode) -> None:
    await node.register(701)
    await node.services.router.supervisor.ensure(701)
    body = await _status(node, admin=False)
    (only,) = body["cluster"]["nodes"]
    assert only == {
        "id": node.settings.node_id, "version": __version__, "heartbeat_age_s": 0.0, "owned": 1, "draining": False
    }
    assert body["cluster"]["owned_here"] == 1


async def test_every_node_row_is_listed_with_its_version_heartbeat_age_owned_count_and_draining(
    node: TestNode, pg_dsn: str
) -> None:
    ownership = node.services.store.ownership
    me = Member(node.settings.node_id, "inc-me", __version__)
    await add_companies(pg_dsn, [711, 712, 713])
    await ownership.join(me)
    await ownership.join(B)
    assert await ownership.claim(B, [Claim(711), Claim(712)])
    assert await ownership.claim(me, [Claim(713)])
    await ownership.set_draining(B)
    await sql(pg_dsn, "UPDATE cluster_nodes SET heartbeat_at = now() - interval '42 seconds' WHERE node_id = 'node-b'")

    body = await _status(node, admin=False)
    nodes = {n["id"]: n for n in body["cluster"]["nodes"]}
    assert set(nodes) == {node.settings.node_id, "node-b"}
    assert nodes["node-b"]["version"] == "9.9.9" and nodes["node-b"]["owned"] == 2
    assert nodes["node-b"]["draining"] is True and 41.0 <= nodes["node-b"]["heartbeat_age_s"] < 60.0
    assert nodes[node.settings.node_id]["owned"] == 1 and nodes[node.settings.node_id]["draining"] is False
    assert body["cluster"]["owned_here"] == 1  # from salon_owners, not from the actors running here


async def test_with_the_admin_token_salons_owned_elsewhere_show_their_owner_and_stored_connection(
    node: TestNode, pg_dsn: str
) -> None:
    ownership = node.services.store.ownership
    await node.register(721)  # runs here, shown from memory
    await node.services.router.supervisor.ensure(721)
    with trio.fail_after(5):
        await node.services.registry.wait_state(721, "idle")
    await add_companies(pg_dsn, [722, 723, 724, 725])
    await sql(
        pg_dsn,
        "UPDATE companies SET whatsapp_connected = true, whatsapp_phone = '79001230722' WHERE salon_id = 722",
    )
    await _store_credentials(pg_dsn, [722, 723, 724])
    await sql(pg_dsn, "UPDATE companies SET integration_status = 'frozen' WHERE salon_id = 724")
    await ownership.join(B)
    assert await ownership.claim(B, [Claim(722)])

    companies = {c["salon_id"]: c for c in (await _status(node))["companies"]}
    assert set(companies) == {721, 722, 723}  # 724 is frozen and 725 has no credentials: neither should run
    assert companies[721]["node"] == node.settings.node_id
    assert companies[721]["state"] == node.services.registry.get(721).state
    assert companies[722] == {
        "salon_id": 722, "state": "connected", "phone": "79001230722", "node": "node-b",
        "restarts": 0, "last_error": None, "since": companies[722]["since"],
    }
    assert companies[722]["since"].endswith("Z")
    assert companies[723]["node"] is None and companies[723]["state"] == "disconnected"  # should run, no owner


async def test_without_the_admin_token_no_salon_owned_elsewhere_is_shown(node: TestNode, pg_dsn: str) -> None:
    await add_companies(pg_dsn, [731])
    await node.services.store.ownership.join(B)
    assert await node.services.store.ownership.claim(B, [Claim(731)])
    body = await _status(node, admin=False)
    assert "companies" not in body


async def test_10000_salons_owned_by_another_node_are_all_listed_with_their_owner(node: TestNode, pg_dsn: str) -> None:
    # One query for all of them; how fast it answers is for `make bench`, never asserted here.
    salon_ids = list(range(100_001, 110_001))
    await add_companies(pg_dsn, salon_ids)
    ownership = node.services.store.ownership
    await ownership.join(B)
    assert len(await ownership.claim(B, [Claim(s) for s in salon_ids])) == 10_000
    body = await _status(node)
    assert [c["salon_id"] for c in body["companies"]] == salon_ids
    assert {c["node"] for c in body["companies"]} == {"node-b"}
    assert {n["id"]: n["owned"] for n in body["cluster"]["nodes"]}["node-b"] == 10_000


async def test_the_status_page_listing_names_each_salons_owner_wherever_it_runs(node: TestNode, pg_dsn: str) -> None:
    await add_companies(pg_dsn, [741, 742])
    await node.services.store.ownership.join(B)
    assert await node.services.store.ownership.claim(B, [Claim(741)])

    response = await node.http.get("/status/companies", headers={**node.admin, "Accept": "application/json"})
    assert response.status_code == 200
    rows = {c["salon_id"]: c for c in response.json()["companies"]}
    assert rows[741]["node"] == "node-b" and rows[741]["state"] == "disconnected"  # owned elsewhere: as stored
    assert rows[742]["node"] is None  # nobody owns it
    history = await node.http.get("/status/companies/741/history", headers={**node.admin, "Accept": "application/json"})
    assert history.json()["company"]["node"] == "node-b"


@pytest.mark.parametrize("listing", ["/status/companies", "/admin/companies"])
async def test_the_connected_filter_lists_the_salons_connected_on_every_node_from_either_node(
    keeper_cluster: tuple[TestNode, TestNode],  # noqa: F811 - the imported fixture
    listing: str,
) -> None:
    """The supervisor's list and the admin API filter with one function (companies_in_state)."""
    a, b = keeper_cluster
    on_a = placed_on("node-a", range(9400, 9500))[0]
    on_b, idle_on_b = placed_on("node-b", range(9400, 9500))[:2]
    for salon, owner, phone in ((on_a, a, "79001110001"), (on_b, b, "79001110002")):
        await a.register(salon, title=f"Salon {salon}")
        await a.services.router.ask(salon, RequestQr())  # on_b: routed to b, which claims it on demand
        owner.core.scan(await owner.core.wait_qr(salon), phone)
        with trio.fail_after(5):
            await owner.services.registry.wait_state(salon, "connected")
    await a.register(idle_on_b)
    await a.services.router.ask(idle_on_b, RequestQr())  # runs on b, showing QRs: not connected

    async def stored_connected() -> bool:
        return {on_a, on_b} <= (await a.services.store.ownership.connected_salons()).keys()

    await eventually(stored_connected)
    for asked in (a, b):
        answer = await asked.http.get(f"{listing}?state=connected", headers=asked.admin)
        assert answer.status_code == 200
        body = answer.json()
        rows = [(c["salon_id"], c["state"], c["node"], c["phone"]) for c in body["companies"]]
        expected = [(on_a, "connected", "node-a", "79001110001"), (on_b, "connected", "node-b", "79001110002")]
        assert rows == sorted(expected)
        assert body["total"] == 2
    everything = (await a.http.get(listing, headers=a.admin)).json()["companies"]
    assert {c["salon_id"]: (c["state"], c["node"]) for c in everything}[idle_on_b] == ("disconnected", "node-b")
