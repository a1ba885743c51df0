"""The outbox worker: delivers the YClients calls that state changes wrote into the ``outbox`` table.

Why an outbox (docs/architecture.md#original-faults, fault 7): the activation callback must reach YClients
within one hour of the salon granting access, and YClients sometimes answers 5xx, 429 or an HTML page.
The original called YClients inline, crashed on the HTML, and lost the call. Here the call is a row,
written in the same transaction as "WhatsApp is connected" (``Companies.record_connection``), and
this worker keeps trying until YClients takes it, refuses it, or the window closes.

Delivery guarantees, and why they hold:

* **Never lost.** A row leaves the pending set only through ``mark_delivered`` / ``mark_failed``,
  each after YClients' verdict (or the deadline). Claiming a row pushes its ``next_attempt_at`` one
  lease ahead, so a worker killed at any point — mid-call, or between the answer and the commit —
  leaves the row to become due again once the lease passes, and another claim retries it.
* **Never two effective activations.** ``claim_due`` uses ``FOR UPDATE SKIP LOCKED`` and the lease,
  so two workers (on one node or several) never hold one row at once. A worker whose lease lapsed
  mid-call (a paused process) cannot cut the next claim short: its retry is fenced by the attempt
  number its claim returned, so only the claim it belongs to is rescheduled. A repeat after a crash is an
  at-least-once *send*, but YClients answers a repeated activation with 403 "already installed",
  which :meth:`~actor_admin.yclients.YClientsClient.activate` reports as success: the outcome is
  idempotent.
* **The window.** Every pass first fails the rows whose deadline has passed (by the database's
  clock, so every node agrees), moving their company to ``activation_failed`` with the reason
  ``deadline_passed``; an operator can re-queue it from the admin API.

One worker runs per node; it polls every ``poll_interval_s`` (1 s) and can be nudged with
:meth:`OutboxWorker.wake` so an in-process enqueuer need not wait for the next poll.
"""

from __future__ import annotations

import logging
import random as _random
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Protocol, final

import attrs
import trio

from actor_admin.backoff import Backoff
from actor_admin.json_types import JSON
from actor_admin.logs import for_salon
from actor_admin.session import INACTIVE_STATES
from actor_admin.store import ACTIVATION, Company, IntegrationStatus, OutboxItem

from ._activation import ActivationRequest
from ._errors import FinalError, RetryableError

if TYPE_CHECKING:
    from actor_admin.config import Settings

    from ._client import YClientsClient

log = logging.getLogger("actor_admin.yclients.outbox")

# Failure reasons, as they appear in ``outbox.last_error``, events and metrics.
DEADLINE_PASSED: Final = "deadline_passed"
REFUSED: Final = "refused"
BAD_PAYLOAD: Final = "bad_payload"
UNKNOWN_KIND: Final = "unknown_kind"
UNKNOWN_COMPANY: Final = "unknown_company"
COMPANY_GONE: Final = "company_gone"


# Retries of a failed call: 1 s doubling to 60 s, ±20 %, so many activations failing together
# (a YClients outage) do not all come back in the same instant.
DEFAULT_BACKOFF: Final = Backoff()


class OutboxRows(Protocol):
    """The ``outbox`` table as the worker drives it (docs/architecture.md#activation-outbox)."""

    async def fail_overdue(self, *, error: str) -> list[OutboxItem]: ...

    async def claim_due(self, limit: int, *, lease_s: float) -> list[OutboxItem]: ...

    async def mark_delivered(self, item_id: int, *, integration_status: IntegrationStatus | None) -> bool: ...

    async def mark_retry(self, item_id: int, *, delay_s: float, error: str, attempt: int | None = None) -> bool: ...

    async def mark_failed(
        self, item_id: int, error: str, *, integration_status: IntegrationStatus | None
    ) -> bool: ...


class OutboxCompanies(Protocol):
    async def get(self, salon_id: int) -> Company | None: ...


class OutboxEvents(Protocol):
    async def append(self, salon_id: int, type: str, data: JSON | None = None) -> object: ...


class OutboxStore(Protocol):
    """What the outbox worker needs of the store: the rows, the company each is for, the audit trail."""

    @property
    def outbox(self) -> OutboxRows: ...

    @property
    def companies(self) -> OutboxCompanies: ...

    @property
    def events(self) -> OutboxEvents: ...


@final
@attrs.frozen
class OutboxWorkerStatistics:
    """Counters since the worker started, for /metrics.

    Attributes:
        delivered: rows YClients accepted (including "already installed").
        already_installed: of those, the ones YClients said were done before (a repeat after a crash).
        retried: failed attempts scheduled again (5xx, 429, HTML, timeouts).
        failed: rows given up, by reason (``deadline_passed``, ``refused``, ``bad_payload``, …).
        passes: polling passes run; ``errors``: passes that hit a store failure.
        in_flight: calls running right now.
    """

    delivered: int
    already_installed: int
    retried: int
    failed: Mapping[str, int]
    passes: int
    errors: int
    in_flight: int


@final
class OutboxWorker:
    """Delivers due outbox rows; run exactly one per node with :meth:`run`.

    Args:
        store: the :class:`~actor_admin.store.Store` (what the worker uses of it: :class:`OutboxStore`).
        client: the shared :class:`~actor_admin.yclients.YClientsClient` (it throttles to 5 rps).
        settings: the node's settings (the node id for log lines; the application id rows must name).
        poll_interval_s: how often to look for due rows when idle.
        batch: rows claimed per pass; they are delivered concurrently.
        lease_s: how long a claimed row is ours; must exceed one call (the client's timeout plus
            throttling). After it a crashed worker's row is due again.
        backoff: the delays between attempts of one row (never sooner than YClients'
            ``Retry-After``).
        random: the jitter source (a seeded ``random.Random`` in tests).
    """

    def __init__(
        self,
        store: OutboxStore,
        client: YClientsClient,
        settings: Settings | None = None,
        *,
        poll_interval_s: float = 1.0,
        batch: int = 10,
        lease_s: float = 60.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        random: _random.Random | None = None,
    ) -> None:
        if batch < 1 or poll_interval_s <= 0 or lease_s <= 0:
            raise ValueError("batch, poll_interval_s and lease_s must be positive")
        self.store = store
        self.client = client
        self.settings = settings
        self.poll_interval_s = poll_interval_s
        self.batch = batch
        self.lease_s = lease_s
        self.backoff = backoff
        self._random = random if random is not None else _random.Random()
        self._wake = trio.Event()
        self._delivered = 0
        self._already_installed = 0
        self._retried = 0
        self._failed: Counter[str] = Counter()
        self._passes = 0
        self._errors = 0
        self._in_flight = 0
        self._pass_done = trio.Event()

    def __repr__(self) -> str:
        return f"OutboxWorker(batch={self.batch}, lease_s={self.lease_s}, poll_interval_s={self.poll_interval_s})"

    def statistics(self) -> OutboxWorkerStatistics:
        return OutboxWorkerStatistics(
            delivered=self._delivered,
            already_installed=self._already_installed,
            retried=self._retried,
            failed=MappingProxyType(dict(self._failed)),
            passes=self._passes,
            errors=self._errors,
            in_flight=self._in_flight,
        )

    def wake(self) -> None:
        """Look for due rows now instead of at the next poll (a row was just enqueued)."""
        self._wake.set()

    async def wait_pass(self) -> None:
        """Wait until the next polling pass has finished (tests and ``doctor`` use it)."""
        await self._pass_done.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver due rows until cancelled. A store outage is logged and waited out, never fatal."""
        log.info("outbox worker started", extra={"node": self._node_id()})
        task_status.started()
        while True:
            try:
                handled = await self.run_once()
            except Exception as exc:  # StoreUnavailable and friends: the rows are safe in the table
                self._errors += 1
                handled = 0
                log.warning("outbox pass failed, will retry: %s", exc)
            self._passes += 1
            done, self._pass_done = self._pass_done, trio.Event()
            done.set()
            if handled >= self.batch:
                await trio.lowlevel.checkpoint()
                continue  # a full batch: there may be more due right now
            with trio.move_on_after(self.poll_interval_s):
                await self._wake.wait()
            self._wake = trio.Event()

    async def run_once(self) -> int:
        """One pass: fail overdue rows, claim due ones, deliver them. Returns how many rows it handled."""
        overdue = await self.store.outbox.fail_overdue(error=DEADLINE_PASSED)
        for item in overdue:
            await self._report_failure(item, DEADLINE_PASSED, "the 1-hour activation window passed")
        items = await self.store.outbox.claim_due(self.batch, lease_s=self.lease_s)
        if items:
            async with trio.open_nursery() as nursery:
                for item in items:
                    nursery.start_soon(self._deliver, item)
        return len(overdue) + len(items)

    # -- one row ---------------------------------------------------------------------------------

    async def _deliver(self, item: OutboxItem) -> None:
        salon_id = int(item.salon_id)
        for_salon(salon_id)  # this task delivers one salon's row: httpx's lines name the salon too
        if item.kind != ACTIVATION:
            await self._fail(item, UNKNOWN_KIND, f"no handler for outbox kind {item.kind!r}", status=None)
            return
        company = await self.store.companies.get(salon_id)
        if company is None:
            await self._fail(item, UNKNOWN_COMPANY, "no such company", status=None)
            return
        # After ``uninstall`` API access stops, and a ``frozen`` salon did not pay: a pending
        # activation of such a salon is dropped, not sent.
        if company.integration_status in INACTIVE_STATES:
            reason = f"company is {company.integration_status}"
            await self._fail(item, COMPANY_GONE, reason, status=None)
            return
        call = ActivationRequest.from_json(salon_id, item.payload)
        if isinstance(call, str):
            await self._fail(item, BAD_PAYLOAD, call, status="activation_failed")
            return
        self._in_flight += 1
        try:
            result = await self.client.activate(
                salon_id, api_key=call.api_key, webhook_urls=call.webhook_urls, channels=call.channels
            )
        except RetryableError as exc:
            await self._retry(
                item, exc.message if exc.status is None else f"{exc.status}: {exc.message}", retry_after=exc.retry_after
            )
            return
        except FinalError as exc:
            await self._fail(
                item,
                REFUSED,
                f"YClients refused ({exc.status}): {exc.message}",
                status="activation_failed",
                http_status=exc.status,
            )
            return
        except Exception as exc:
            # Not YClients' verdict (a bug, an unexpected httpx error): keep the row and try again.
            log.exception("activation of salon %s raised unexpectedly", salon_id, extra={"salon_id": salon_id})
            await self._retry(item, f"{type(exc).__name__}: {exc}", retry_after=None)
            return
        finally:
            self._in_flight -= 1
        if await self.store.outbox.mark_delivered(item.id, integration_status="active"):
            self._delivered += 1
            self._already_installed += int(result.already_installed)
            log.info(
                "activation delivered for salon %s (attempt %d%s)",
                salon_id,
                item.attempts,
                ", already installed" if result.already_installed else "",
                extra={"salon_id": salon_id},
            )
            await self._event(
                salon_id,
                "activation_delivered",
                {"outbox_id": item.id, "attempts": item.attempts, "already_installed": result.already_installed},
            )

    async def _retry(self, item: OutboxItem, error: str, *, retry_after: float | None) -> None:
        # ``attempts`` counts this row's calls so far, the failed one included (claiming counts it).
        delay = self.backoff.delay(max(0, int(item.attempts) - 1), self._random.random())
        if retry_after is not None:
            delay = max(delay, retry_after)  # never sooner than YClients asked
        # Fenced by this claim's attempt number: if our lease lapsed and another worker holds the row
        # now, rescheduling it would cut that claim short and let a third one send the call again.
        if await self.store.outbox.mark_retry(item.id, delay_s=delay, error=error, attempt=int(item.attempts)):
            self._retried += 1
            log.info(
                "activation for salon %s failed (attempt %d: %s); retrying in %.1fs",
                item.salon_id,
                item.attempts,
                error,
                delay,
                extra={"salon_id": item.salon_id},
            )
        else:
            log.info(
                "activation for salon %s failed (attempt %d: %s); the row is no longer this claim's, not rescheduled",
                item.salon_id,
                item.attempts,
                error,
                extra={"salon_id": item.salon_id},
            )

    async def _fail(
        self,
        item: OutboxItem,
        reason: str,
        detail: str,
        *,
        status: IntegrationStatus | None,
        http_status: int | None = None,
    ) -> None:
        error = f"{reason}: {detail}"
        if await self.store.outbox.mark_failed(item.id, error, integration_status=status):
            await self._report_failure(item, reason, detail, http_status=http_status)

    async def _report_failure(
        self, item: OutboxItem, reason: str, detail: str, *, http_status: int | None = None
    ) -> None:
        self._failed[reason] += 1
        salon_id = int(item.salon_id)
        log.warning(
            "activation for salon %s given up: %s (%s) after %d attempt(s)",
            salon_id,
            reason,
            detail,
            item.attempts,
            extra={"salon_id": salon_id},
        )
        data: JSON = {"outbox_id": item.id, "reason": reason, "detail": detail, "attempts": item.attempts}
        if http_status is not None:
            data["status"] = http_status
        await self._event(salon_id, "activation_failed", data)

    async def _event(self, salon_id: int, type_: str, data: JSON) -> None:
        # The event is the audit trail, not the state: the outbox row is already final, so a
        # failure here is logged and not retried.
        try:
            await self.store.events.append(salon_id, type_, dict(data))
        except Exception as exc:
            log.warning("could not record %s for salon %s: %s", type_, salon_id, exc)

    def _node_id(self) -> str | None:
        return None if self.settings is None else self.settings.node_id


async def run_outbox_worker(
    store: OutboxStore,
    client: YClientsClient,
    settings: Settings | None = None,
    *,
    worker: OutboxWorker | None = None,
    poll_interval_s: float = 1.0,
    random: _random.Random | None = None,
    task_status: trio.TaskStatus[OutboxWorker] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the node's outbox worker until cancelled; ``task_status.started`` gets the worker.

    Pass ``worker`` to run one built beforehand (so the composition root can hand its
    :meth:`~OutboxWorker.statistics` to /metrics); otherwise one is made from the other arguments.
    """
    if worker is None:
        worker = OutboxWorker(store, client, settings, poll_interval_s=poll_interval_s, random=random)
    task_status.started(worker)
    await worker.run()
