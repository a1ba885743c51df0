"""The in-memory ownership model answers exactly as PostgreSQL does, so the simulations that run on it
(tests/concurrency/test_ownership_model.py) test the rules the real store enforces.

Random programs of joins, replacements, heartbeats, draining, leaves, forgets, claims, takeovers and
releases — valid and stale — run step by step against both; every answer and the owner table after
every step must agree. Fence numbers differ between the two (PostgreSQL's sequence is shared by the
whole test run), so each fence is compared by the step and salon that created it.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from actor_admin.store import Claim, Member, NodeRef, Owner, Store, StoreError, Takeover
from tests.cluster._ownership_model import OwnershipModel

from ._ownership_helpers import add_companies

pytestmark = pytest.mark.integration

SALONS = list(range(1, 9))
NOT_A_COMPANY = 99
MEMBERS = [Member("node-a", "a1", "1"), Member("node-a", "a2", "2"), Member("node-b", "b1", "1"),
           Member("node-c", "c1", "1")]

Label = tuple[int, int]


class Side:
    """One implementation, and the labels of the fences it has handed out."""

    def __init__(self, name: str, run: Callable[[str, tuple[Any, ...], dict[str, Any]], Awaitable[Any]]) -> None:
        self.name = name
        self.run = run
        self.label_of: dict[int, Label] = {}
        self.fence_of: dict[Label, int] = {}

    async def nodes(self) -> list[tuple[NodeRef, bool]]:
        return [(n.ref, n.draining) for n in await self.run("nodes", (), {})]

    async def owners(self, step: int) -> dict[int, tuple[str | None, Label]]:
        owners: dict[int, Owner] = await self.run("owners", (), {})
        for salon_id, owner in owners.items():
            if owner.fence not in self.label_of:
                self.label_of[owner.fence] = (step, salon_id)
                self.fence_of[(step, salon_id)] = owner.fence
        return {s: (o.node_id, self.label_of[o.fence]) for s, o in owners.items()}

    def canonical(self, value: Any) -> Any:
        """An answer with fences replaced by their labels (answers are dicts salon → fence, sets, records)."""
        if isinstance(value, dict):
            return {k: self.label_of.get(v, ("unknown", v)) if isinstance(v, int) else v for k, v in value.items()}
        if hasattr(value, "nodes") and hasattr(value, "seq"):  # a Heartbeat
            nodes = [(n.node_id, n.incarnation, n.heartbeat_seq, n.draining) for n in value.nodes]
            return value.seq, nodes, None if value.owned is None else self.canonical(dict(value.owned))
        if hasattr(value, "ref") and hasattr(value, "draining"):  # a NodeRecord
            return value.ref, value.draining
        return value


def _store_side(store: Store) -> Side:
    async def run(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await getattr(store.ownership, op)(*args, **kwargs)

    return Side("postgresql", run)


def _model_side(model: OwnershipModel) -> Side:
    async def run(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        name = {"owners": "owners_now", "nodes": "nodes_list"}.get(op, op)
        return getattr(model, name)(*args, **kwargs)

    return Side("model", run)


async def _answer(side: Side, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The raw answer (fences as numbers: label them only after the owner table was read)."""
    try:
        return await side.run(op, args, kwargs)
    except StoreError as exc:
        occupant = getattr(exc, "occupant", None)
        return type(exc).__name__, None if occupant is None else occupant.ref


def _draw(rng: random.Random, step: int, owners: dict[int, tuple[str | None, Label]], refs: list[NodeRef],
          labels: list[Label]) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """One operation with arguments in label form (fences as labels, translated per side later)."""
    me = rng.choice(MEMBERS)
    stale_refs = [NodeRef(r.node_id, r.incarnation, r.heartbeat_seq - 1) for r in refs]
    some_ref = rng.choice([*refs, *stale_refs, NodeRef("ghost", "g", 1)])
    some_label = rng.choice(labels) if labels else (0, 0)
    kind = rng.choice(["join", "join", "heartbeat", "heartbeat", "draining", "leave", "forget",
                       "claim", "claim", "claim", "release", "release", "owned"])
    if kind == "join":
        return "join", (me,), {"replacing": some_ref if rng.random() < 0.6 else None}
    if kind == "heartbeat":
        return "heartbeat", (me,), {"include_owned": rng.random() < 0.5}
    if kind == "draining":
        return "set_draining", (me, rng.random() < 0.5), {}
    if kind == "leave":
        return "leave", (me,), {}
    if kind == "forget":
        return "forget", (some_ref,), {}
    if kind == "owned":
        return "owned", (rng.choice(MEMBERS).node_id,), {}
    salons = rng.sample([*SALONS, NOT_A_COMPANY], rng.randint(1, 4))
    if kind == "claim":
        claims: list[tuple[str, int, NodeRef | None, Label | None]] = []
        for salon_id in salons:
            owner = owners.get(salon_id)
            if owner is None or owner[0] is None or rng.random() < 0.3:
                claims.append(("released", salon_id, None, None))
            else:
                dead = next((r for r in refs if r.node_id == owner[0]), some_ref)
                dead = rng.choice([dead, dead, some_ref])
                claims.append(("takeover", salon_id, dead, owner[1] if rng.random() < 0.8 else some_label))
        return "claim", (me, claims), {}
    fences = {s: owners[s][1] if s in owners and rng.random() < 0.8 else some_label for s in salons}
    return "release", (me, fences), {"cause": rng.choice(["handed_over", "released"])}


def _for_side(side: Side, op: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Translate label-form arguments into this side's fence numbers."""

    def fence(label: Label) -> int:
        return side.fence_of.get(label, 10**12)  # a fence nobody holds

    if op == "claim":
        me, claims = args
        return me, [Claim(s) if kind == "released" else Claim(s, Takeover(dead, fence(label)))
                    for kind, s, dead, label in claims]
    if op == "release":
        me, fences = args
        return me, {s: fence(label) for s, label in fences.items()}
    return args


@pytest.mark.parametrize("seed", range(6))
async def test_the_model_answers_every_operation_as_postgresql_does(store: Store, pg_dsn: str, seed: int) -> None:
    await add_companies(pg_dsn, SALONS)
    model = OwnershipModel(companies=set(SALONS))
    sides = [_store_side(store), _model_side(model)]
    rng = random.Random(seed)
    owners = await sides[0].owners(0)
    for step in range(1, 151):
        refs = [r.ref for r in await store.ownership.nodes()]
        op, args, kwargs = _draw(rng, step, owners, refs, sorted(sides[0].fence_of))
        raw = [await _answer(side, op, _for_side(side, op, args), kwargs) for side in sides]
        tables = [await side.owners(step) for side in sides]
        answers = [side.canonical(answer) for side, answer in zip(sides, raw, strict=True)]
        assert answers[0] == answers[1], (step, op, args, kwargs)
        assert tables[0] == tables[1], (step, op, args, kwargs)
        assert await sides[0].nodes() == await sides[1].nodes(), (step, op, args, kwargs)
        owners = tables[0]
    assert len(sides[0].fence_of) > 10  # the program really moved salons around
