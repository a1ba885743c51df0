"""A worker whose claim lapsed must not reschedule the row another worker now holds.

Found while proving activations under chaos (docs/architecture.md#activation-outbox): a worker whose
call outlives its claim lease (a paused process, a slow YClients) used to answer its failure with
``mark_retry``, which moved the row's ``next_attempt_at`` to "soon" — over the lease of the worker that
had claimed the row since. A third claim then sent the activation while that one was still in
flight: two activations YClients took (201, then 403 "already installed"). Claims are fenced by
their attempt number now: a retry only reschedules the claim it belongs to.
"""

from __future__ import annotations

import trio

from actor_admin.doubles.yclients import Fault
from actor_admin.store import Store
from tests._fake_yclients import FakeServer
from tests.yclients.test_outbox import (
    CALLBACK,
    callback_statuses,
    connected,
    quick_worker,
    running,
    until_status,
    yclients,
)


async def test_a_lapsed_claims_retry_does_not_cut_the_current_claim_short(
    store: Store, fake_server: FakeServer
) -> None:
    # The first call: 503 after 1 s (past the first worker's 0.3-s lease). The second: installed at
    # once, answered after 1 s.
    fake_server.fake.add_fault(Fault(path=CALLBACK, status=503, delay_s=1.0, times=1))
    fake_server.fake.add_fault(Fault(path=CALLBACK, delay_s=1.0, times=1))
    item_id = await connected(store, 7)
    async with yclients(fake_server, timeout_s=5) as client:
        lapsing = quick_worker(store, client, lease_s=0.3)
        holding = quick_worker(store, client, lease_s=10.0)
        async with running(lapsing):
            with trio.fail_after(5):
                # The fake records a call before it delays the answer; it has no event to wait on.
                while not fake_server.fake.calls:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            async with running(holding):  # claims the row once the first lease has lapsed
                await until_status(store, holding, 7, "active")
    assert callback_statuses(fake_server) == [503, 201]
    assert (await store.outbox.get(item_id)).attempts == 2  # type: ignore[union-attr]
    assert lapsing.statistics().retried == 0  # its retry was refused: the row was no longer its claim
    assert holding.statistics().delivered == 1
