"""The ownership planner, one rule per test: pure inputs in, actions out."""

from __future__ import annotations

from collections.abc import Mapping

from actor_admin.cluster import (
    ClusterView,
    HandOver,
    Membership,
    Placement,
    Plan,
    Release,
    Start,
    Stop,
    place,
    placement_for,
    plan,
)
from actor_admin.store import Claim, NodeRef, Owner, Takeover

NODES = ("a", "b", "c")
SALONS = range(1, 61)


def _placed(node: str, nodes: tuple[str, ...] = NODES) -> list[int]:
    return [s for s in SALONS if place(s, nodes) == node]


def _view(
    me: str = "a",
    *,
    owners: Mapping[int, Owner] | None = None,
    wanted: set[int] | None = None,
    live: Mapping[str, bool] | None = None,
    dead: Mapping[str, NodeRef] | None = None,
    forgettable: frozenset[str] = frozenset(),
) -> ClusterView:
    return ClusterView(
        me=me,
        membership=Membership(
            live=dict.fromkeys(NODES, False) if live is None else live, dead=dead or {}, forgettable=forgettable
        ),
        owners=owners or {},
        wanted=set(SALONS) if wanted is None else wanted,
    )


def _plan(view: ClusterView, local: Mapping[int, int] | None = None, max_handovers: int = 100) -> Plan:
    return plan(view, local or {}, max_handovers=max_handovers)


def test_released_and_never_owned_salons_placed_here_are_claimed() -> None:
    mine = _placed("a")
    owners = {mine[0]: Owner(None, 7)}
    assert _plan(_view(owners=owners)).claims == tuple(Claim(s) for s in mine)


def test_salons_placed_elsewhere_are_not_claimed() -> None:
    claimed = {c.salon_id for c in _plan(_view()).claims}
    assert claimed.isdisjoint(_placed("b") + _placed("c"))


def test_a_released_salon_that_need_not_run_is_not_claimed() -> None:
    mine = _placed("a")
    assert _plan(_view(wanted=set(mine[1:]))).claims == tuple(Claim(s) for s in mine[1:])


def test_a_dead_owners_salons_placed_here_are_taken_over_with_the_observed_heartbeat() -> None:
    # c is dead: placement is over a and b only, and c's salons placed on a are taken over.
    dead = NodeRef("c", "inc", 41)
    ab = ("a", "b")
    owners = {s: Owner("c", 100 + s) for s in SALONS}
    view = _view(owners=owners, live={"a": False, "b": False}, dead={"c": dead})
    expected = tuple(Claim(s, Takeover(dead, 100 + s)) for s in _placed("a", ab))
    assert _plan(view).claims == expected


def test_a_dead_owners_salon_is_taken_over_even_if_it_need_not_run_then_released() -> None:
    dead = NodeRef("c", "inc", 41)
    (salon, *_) = _placed("a", ("a", "b"))
    view = _view(owners={salon: Owner("c", 5)}, wanted=set(), live={"a": False, "b": False}, dead={"c": dead})
    assert _plan(view).claims == (Claim(salon, Takeover(dead, 5)),)
    after = _view(owners={salon: Owner("a", 6)}, wanted=set(), live={"a": False, "b": False})
    assert _plan(after).releases == (Release(salon, 6, "released"),)


def test_a_live_owner_is_never_claimed_from_even_while_draining() -> None:
    owners = {s: Owner("c", s) for s in SALONS}
    assert _plan(_view(owners=owners)).claims == ()
    draining = _view(owners=owners, live={"a": False, "b": False, "c": True})
    assert _plan(draining).claims == ()


def test_owned_salons_placed_here_that_do_not_run_are_started() -> None:
    mine = _placed("a")
    owners = {s: Owner("a", 1000 + s) for s in mine}
    local = {mine[0]: 1000 + mine[0]}
    assert _plan(_view(owners=owners), local).starts == tuple(Start(s, 1000 + s) for s in mine[1:])


def test_a_local_actor_whose_salon_moved_on_is_stopped() -> None:
    theirs, released, refenced, mine = _placed("a")[:4]
    owners = {theirs: Owner("b", 9), released: Owner(None, 10), refenced: Owner("a", 12), mine: Owner("a", 13)}
    local = {theirs: 1, released: 2, refenced: 11, mine: 13, 999: 3}
    stops = _plan(_view(owners=owners), local).stops
    assert stops == (Stop(theirs, 1), Stop(released, 2), Stop(refenced, 11), Stop(999, 3))


def test_running_salons_placed_elsewhere_are_handed_over_a_few_per_round() -> None:
    elsewhere = _placed("b") + _placed("c")
    owners = {s: Owner("a", s) for s in SALONS}
    local = {s: s for s in SALONS}
    result = _plan(_view(owners=owners), local, max_handovers=3)
    expected = sorted(elsewhere)[:3]
    assert result.handovers == tuple(HandOver(s, s, place(s, NODES) or "") for s in expected)
    assert result.stops == () and result.claims == () and result.starts == ()


def test_owned_salons_that_do_not_run_and_belong_elsewhere_are_released_at_once() -> None:
    elsewhere = sorted(_placed("b") + _placed("c"))
    owners = {s: Owner("a", s) for s in elsewhere}
    assert _plan(_view(owners=owners), max_handovers=1).releases == tuple(
        Release(s, s, "handed_over") for s in elsewhere
    )


def test_a_draining_node_claims_nothing_and_hands_everything_over() -> None:
    owners = {s: Owner("a", s) for s in _placed("a")}
    view = _view(owners=owners, live={"a": True, "b": False, "c": False})
    result = _plan(view, {s: s for s in owners})
    assert result.claims == ()
    assert {h.salon_id for h in result.handovers} == set(owners)
    assert {h.to for h in result.handovers} <= {"b", "c"}


def test_the_last_node_draining_keeps_its_salons_until_it_leaves() -> None:
    owners = {s: Owner("a", s) for s in SALONS}
    view = _view(owners=owners, live={"a": True})
    assert _plan(view, {s: s for s in SALONS}).settled
    assert _plan(view, {}).settled  # owned, not running: nobody to hand them to either


def test_a_dead_node_that_owns_nothing_is_forgotten_once_forgettable() -> None:
    gone, owning = NodeRef("x", "i", 3), NodeRef("y", "i", 4)
    owners = {1: Owner("y", 1)}
    view = _view(owners=owners, dead={"x": gone, "y": owning}, forgettable=frozenset({"x", "y"}))
    assert _plan(view).forgets == (gone,)
    assert _plan(_view(dead={"x": gone})).forgets == ()


def test_a_converged_cluster_plans_nothing_on_any_node() -> None:
    owners = {s: Owner(place(s, NODES), s) for s in SALONS}
    for me in NODES:
        local = {s: o.fence for s, o in owners.items() if o.node_id == me}
        assert _plan(_view(me, owners=owners), local).settled


def test_a_remembered_placement_is_reused_only_for_the_same_nodes() -> None:
    membership = Membership(live={"a": False, "b": False}, dead={})
    kept = Placement(["a", "b"])
    assert placement_for(membership, kept) is kept
    assert placement_for(membership, Placement(["a"])).nodes == {"a", "b"}
    result = plan(_view(live={"a": False, "b": False}), {}, max_handovers=1, placement=kept)
    assert result == plan(_view(live={"a": False, "b": False}), {}, max_handovers=1)
