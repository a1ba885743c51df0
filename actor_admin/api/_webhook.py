"""``POST /webhook/yclients``: the marketplace's lifecycle webhook (docs/http-api.md#webhook,
docs/yclients.md#lifecycle-webhook).

Body ``{"salon_id", "application_id", "event", "partner_token"}``; the only proof it comes from
YClients is the partner token in the body (no signature header), compared in constant time.

Answers, in the order they are decided:

* not JSON → 400 ``malformed_json``; not an object, or a field of the wrong type → 422
  ``invalid_field`` (``{"error": {"code", "message"}}``, the message names the field);
* wrong ``partner_token`` → **200** ``{"success": false}``: nothing changes, a warning is logged
  (without the token). 200 rather than 401 because YClients' retry behaviour is undocumented and a
  refusal could start a retry flood (the original system made the same choice);
* another ``application_id`` → 200 ``{"skipped": "different_application"}``;
* ``uninstall`` / ``freeze`` → 200 ``{"success": true, "event", "salon_id"}`` once done, or
  ``{"success": true, "duplicate": true, …}`` when there was nothing left to do;
* any other event → recorded as a ``webhook_unknown`` company event, 200 ``{"success": true,
  "recorded": true}``.

Idempotency is by state, not by a de-duplication key: every step is idempotent (stopping an actor
that is not running, marking a salon that is already ``uninstalled``), so a repeat — or a retry
after we crashed half-way — is simply processed again and converges on the same state. A delivery
that finds nothing left to do (the status already set, no actor running here, for ``uninstall`` no
credentials left) is recognised as a duplicate and changes nothing. A de-duplication key in Redis
was rejected: it would have to be written before the work (and then a crash half-way loses the
work) or after it (and then it de-duplicates nothing that idempotency does not already cover), and
a fixed key would swallow a genuine second ``uninstall`` after a re-install within its TTL.

Processing that cannot be lost: the event is recorded and the new status written *first* (so a
crash after that leaves a salon that is not restored at start-up and not activated), then the actor
is stopped (awaited), then the status is written *again*. The second write is what makes uninstall
race-free: until the actor has stopped it may still save credentials it just received (a
``CredsUpdated`` in its mailbox), and only a delete after it is gone is final.

Several nodes: the actor is withdrawn through the router (``Router.withdraw``), which reaches the
salon's owner on whichever node it runs, and the answer is sent only once it has stopped there. An
owner that cannot be reached is 503 ``owner_unreachable`` (docs/http-api.md#webhook): the status
written first already keeps the salon from being restored or activated, and a retry finishes the job.
"""

from __future__ import annotations

import hmac
import logging
from typing import Final

import trio
from quart import Blueprint, request

from actor_admin.json_types import JSON
from actor_admin.session import Freeze, Uninstall
from actor_admin.yclients import WEBHOOK_PATH

from ._http import fail, json_object
from ._services import Services

log = logging.getLogger("actor_admin.api.webhook")

EVENT_MAX_LEN: Final = 64
# The actor gets this long to hear "uninstall"/"freeze" (so open connect pages see the new state)
# and then to stop, each; YClients waits ~15 s for data webhooks, so the whole answer stays well below.
ACTOR_GRACE_S: Final = 5.0

_LIFECYCLE: Final = {"uninstall": "uninstalled", "freeze": "frozen"}


ID_MAX: Final = 2**63 - 1  # PostgreSQL bigint: a larger id would fail in the database, not here


def _positive_int(body: JSON, field: str) -> int:
    value = body.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= ID_MAX:
        fail(422, "invalid_field", f"{field} must be a positive whole number")
    return value


def storable_text(value: object) -> bool:
    """A string PostgreSQL can store: no NUL character, valid UTF-8 (JSON may carry lone surrogates)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string(body: JSON, field: str, *, max_len: int = 4096) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value or len(value) > max_len or not storable_text(value):
        fail(422, "invalid_field", f"{field} must be a non-empty string of at most {max_len} characters")
    return value


class _Lifecycle:
    """``uninstall`` and ``freeze`` for one salon, in the crash-safe order the module describes."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store

    async def nothing_left(self, salon_id: int, status: str) -> bool:
        """True when a delivery would change nothing: the duplicate case."""
        company = await self.store.companies.get(salon_id)
        if company is None or company.integration_status != status or await self.services.router.is_running(salon_id):
            return False
        if status != "uninstalled":
            return True
        try:
            return await self.store.credentials.load(salon_id) is None
        except Exception:  # unreadable credentials are still credentials to delete
            return False

    async def apply(self, salon_id: int, event: str) -> bool:
        """Carry out ``event``; returns whether the salon is known to us."""
        status = _LIFECYCLE[event]
        mark = self.store.companies.mark_uninstalled if event == "uninstall" else self.store.companies.mark_frozen
        known = await mark(salon_id) is not None  # the durable intent, before anything slow
        await self._stop_actor(salon_id, event)
        await mark(salon_id)  # final: anything the actor saved while stopping is undone
        log.info("salon %s %s by YClients", salon_id, status, extra={"salon_id": salon_id})
        return known

    async def _stop_actor(self, salon_id: int, event: str) -> None:
        """Tell the session (it closes the link, open connect pages see the new state), then stop it,
        on whichever node runs it; never starts one."""
        command = Uninstall() if event == "uninstall" else Freeze()
        await self.services.router.withdraw(salon_id, command, grace=ACTOR_GRACE_S)


def blueprint(services: Services) -> Blueprint:
    bp = Blueprint("webhook", __name__)
    settings = services.settings
    store = services.store
    lifecycle = _Lifecycle(services)
    expected_token = settings.yclients_partner_token.encode()

    @bp.post(WEBHOOK_PATH)
    async def yclients_webhook() -> JSON:
        body = await json_object()
        salon_id = _positive_int(body, "salon_id")
        application_id = _positive_int(body, "application_id")
        event = _string(body, "event", max_len=EVENT_MAX_LEN)
        token = _string(body, "partner_token")
        if not hmac.compare_digest(token.encode(), expected_token):
            services.refusals.refused(
                "bad_partner_token",
                f"webhook with a wrong partner_token (salon {salon_id}, application {application_id}, "
                f"event {event!r}, from {request.remote_addr})",
                salon_id=salon_id,
            )
            return {"success": False}
        if application_id != settings.yclients_app_id:
            log.info("webhook for application %s skipped (we are %s)", application_id, settings.yclients_app_id)
            return {"skipped": "different_application"}
        if event not in _LIFECYCLE:
            await store.events.append(salon_id, "webhook_unknown", {"event": event})
            log.warning("unknown webhook event %r for salon %s recorded", event, salon_id, extra={"salon_id": salon_id})
            return {"success": True, "recorded": True}
        if await lifecycle.nothing_left(salon_id, _LIFECYCLE[event]):
            log.info("duplicate %s webhook for salon %s: nothing to do", event, salon_id, extra={"salon_id": salon_id})
            return {"success": True, "duplicate": True, "event": event, "salon_id": salon_id}
        await store.events.append(salon_id, f"webhook_{event}", {"event": event})
        # Shielded: once started, a client hanging up must not leave the salon half-processed. Every
        # step is bounded (the actor's grace periods), the outer bound is a last resort.
        known = False
        with trio.CancelScope(shield=True), trio.move_on_after(6 * ACTOR_GRACE_S):
            known = await lifecycle.apply(salon_id, event)
        answer: JSON = {"success": True, "event": event, "salon_id": salon_id}
        if not known:
            answer["unknown_salon"] = True
        return answer

    return bp
