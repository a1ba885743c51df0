"""Placement by rendezvous hashing: deterministic everywhere, even, and minimal movement on joins and leaves."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actor_admin.cluster import place, placement_weight

node_ids = st.text(min_size=1, max_size=30)
members = st.lists(node_ids, min_size=1, max_size=8, unique=True)
salon_ids = st.integers(min_value=1, max_value=2**63 - 1)

SALONS = range(1, 10_001)


def _nodes(n: int) -> list[str]:
    return [f"host-{i}:{1000 + i}" for i in range(n)]


@given(salon_ids, members, st.randoms(use_true_random=False))
def test_placement_is_a_member_and_ignores_the_order_members_are_given_in(
    salon_id: int, nodes: list[str], rng: object
) -> None:
    chosen = place(salon_id, nodes)
    shuffled = list(nodes)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert chosen in nodes
    assert place(salon_id, shuffled) == chosen
    assert place(salon_id, iter(nodes)) == chosen


def test_no_members_no_placement() -> None:
    assert place(1, []) is None


@given(salon_ids, members, node_ids)
def test_a_joining_node_takes_salons_only_for_itself(salon_id: int, nodes: list[str], newcomer: str) -> None:
    if newcomer in nodes:
        return
    after = place(salon_id, [*nodes, newcomer])
    assert after in (place(salon_id, nodes), newcomer)


@given(salon_ids, members.filter(lambda ns: len(ns) >= 2), st.data())
def test_a_leaving_node_gives_up_only_its_own_salons(salon_id: int, nodes: list[str], data: st.DataObject) -> None:
    leaving = data.draw(st.sampled_from(nodes))
    before = place(salon_id, nodes)
    after = place(salon_id, [n for n in nodes if n != leaving])
    if before != leaving:
        assert after == before


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_adding_a_node_moves_about_one_in_n_plus_one(n: int) -> None:
    before = {s: place(s, _nodes(n)) for s in SALONS}
    after = {s: place(s, _nodes(n + 1)) for s in SALONS}
    moved = [s for s in SALONS if before[s] != after[s]]
    expected = len(SALONS) / (n + 1)
    assert abs(len(moved) - expected) < 0.1 * expected, (len(moved), expected)
    assert {after[s] for s in moved} == {_nodes(n + 1)[-1]}


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=2, max_value=6), st.integers(min_value=0, max_value=10**6))
def test_salons_spread_evenly(n: int, salt: int) -> None:
    nodes = [f"node-{salt}-{i}" for i in range(n)]
    counts = Counter(place(s, nodes) for s in SALONS)
    fair = len(SALONS) / n
    assert set(counts) == set(nodes)
    assert all(abs(c - fair) < 0.1 * fair for c in counts.values()), counts


_CHILD = (
    "import json, sys; from actor_admin.cluster import placement_weight; "
    "print(json.dumps([placement_weight(n, s) for n in ('a', 'node-b:12', 'узел') for s in (1, 42, 2**62)]))"
)


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_weights_are_the_same_in_every_process(hash_seed: str) -> None:
    # Python's own hash() changes with PYTHONHASHSEED; placement must not, or nodes would disagree.
    child = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": hash_seed, "PATH": ""},
    )
    here = [placement_weight(n, s) for n in ("a", "node-b:12", "узел") for s in (1, 42, 2**62)]
    assert json.loads(child.stdout) == here
    assert len(set(here)) == len(here)
