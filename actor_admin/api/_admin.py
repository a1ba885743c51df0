"""The admin and service API (docs/http-api.md#admin-api), all under ``/admin/``.

Every route needs ``Authorization: Bearer <ADMIN_TOKEN>``, compared in constant time; anything else
— no header, another scheme, a wrong token, an onboarding JWT — is 401 ``unauthorized``. The
original accepted any JWT signed with the app secret here, including a salon's onboarding token
(docs/architecture.md#original-faults, fault 3); this API knows no JWTs at all.

A company is shown as ``{"salon_id", "title", "integration_status", "state", "phone",
"whatsapp_connected", "connected_at", "node", "restarts", "last_error", "since"}``: the first fields
from PostgreSQL, ``state`` / ``node`` / ``restarts`` / ``last_error`` / ``since`` from this node's
supervisor and session registry, as ``/status`` shows them. A company without a session on this node
has ``restarts`` 0 and ``since`` null; owned by a node (``salon_owners``), ``node`` is that owner and
``state`` its stored connection (``connected`` or ``disconnected``), else both are null. Times are ISO
8601 in UTC.

``GET /admin/companies?state=S&page=N&per_page=M``: ``state`` filters on ``integration_status`` when
``S`` is one (``pending_whatsapp activating active activation_failed frozen uninstalled`` — so
``frozen`` and ``uninstalled``, which are both, mean the integration status), otherwise on the session
state (``idle starting qr pairing_code connecting connected reconnecting logged_out conflict
failed``) as ``/status/companies`` filters it: ``connected`` across the cluster, the other states of
this node's sessions; any other value is 422. Pages start at 1, ``per_page`` 1..200 (default 50).

The other routes, each 404 ``unknown_salon`` for a salon we never saw:

* ``POST …/{salon_id}/restart`` — restart the actor (clearing ``failed``) and ``Start`` it, so a salon
  with stored credentials reconnects without a rescan; 409 for a ``frozen``/``uninstalled`` salon.
  Answers the company.
* ``POST …/logout`` — ``Logout`` to the live session (it unlinks the device on the phone), then the
  stored credentials are deleted whatever the session could do; ``{"device_unlinked",
  "credentials_deleted", "had_credentials", "note"}`` says which happened.
* ``POST …/onboarding-link`` → ``{"url": PUBLIC_URL + "/marketplace/onboarding#token=…",
  "expires_in": 3600}``.
* ``POST …/activate`` — re-queue the YClients activation of an ``activation_failed`` salon whose
  WhatsApp is connected (a new outbox row, a fresh 1-hour deadline) → 202; otherwise 409
  ``not_activation_failed`` / ``not_connected``.
* ``POST …/messages`` ``{"to", "text", "idempotency_key"}`` → 202 ``{"id", "status"}``; a known key → 200
  with the first message's id, never a second send; 409 ``not_connected`` without a live connection;
  422 ``invalid_field`` / ``invalid_phone``. The actor paces sends (20 a minute per salon).
* ``GET …/messages?direction=in|out&limit=1..200`` → ``{"messages": [{"id", "wa_id", "direction",
  "peer", "text", "at", "status"}]}``, newest first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Final, cast

from quart import Blueprint, Response, request

from actor_admin.actors import OWNER_UNREACHABLE, SessionUnavailable
from actor_admin.json_types import JSON
from actor_admin.session import INACTIVE_STATES, STATES, Accepted, Logout, Refused, Send, Start, normalise_phone
from actor_admin.store import INTEGRATION_STATUSES, Company, Direction
from actor_admin.yclients import activation_payload

from ._http import fail, json_object
from ._ops import admin_refusal, companies_in_state, company_records, stored_state
from ._services import Services
from ._tokens import LIFETIME_S, mint_onboarding_token
from ._webhook import storable_text

log = logging.getLogger("actor_admin.api.admin")

PER_PAGE_DEFAULT: Final = 50
PER_PAGE_MAX: Final = 200
MESSAGES_LIMIT_MAX: Final = 200
TEXT_MAX_LEN: Final = 4096
KEY_MAX_LEN: Final = 200
SESSION_STATES: Final = frozenset(STATES) - frozenset(INTEGRATION_STATUSES)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _int_arg(raw: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not low <= int(raw) <= high:
        fail(422, "invalid_query", f"{name} must be a whole number from {low} to {high}")
    return int(raw)


SALON_ID_MAX: Final = 2**63 - 1  # PostgreSQL bigint


def _salon_path(salon_id: int) -> int:
    if not 0 < salon_id <= SALON_ID_MAX:
        fail(404, "unknown_salon", "no such salon")
    return salon_id


def blueprint(services: Services) -> Blueprint:
    bp = Blueprint("admin", __name__, url_prefix="/admin")
    settings = services.settings
    store = services.store
    router = services.router
    registry = services.registry

    @bp.before_request
    async def require_admin_token() -> Response | None:
        return admin_refusal(services)

    def live_records() -> dict[int, JSON]:
        return {int(r["salon_id"]): r for r in company_records(services)}

    def company_json(company: Company, live: Mapping[int, JSON], owners: Mapping[int, str]) -> JSON:
        record = live.get(company.salon_id)
        owner = owners.get(company.salon_id)
        elsewhere = None if owner is None else stored_state(company.whatsapp_connected)  # runs on its owner
        return {
            "salon_id": company.salon_id,
            "title": company.title,
            "integration_status": company.integration_status,
            "state": elsewhere if record is None else record["state"],
            "phone": company.whatsapp_phone or (None if record is None else record["phone"]),
            "whatsapp_connected": company.whatsapp_connected,
            "connected_at": _iso(company.connected_at),
            "node": owner if record is None else record["node"],
            "restarts": 0 if record is None else record["restarts"],
            "last_error": None if record is None else record["last_error"],
            "since": None if record is None else record["since"],
        }

    async def company_or_404(salon_id: int) -> Company:
        company = await store.companies.get(_salon_path(salon_id))
        if company is None:
            fail(404, "unknown_salon", f"salon {salon_id} is not known here")
        return company

    async def one(salon_id: int) -> JSON:
        company = await company_or_404(salon_id)
        return company_json(company, live_records(), await store.ownership.owners_of([salon_id]))

    # -- companies ----------------------------------------------------------------------------

    @bp.get("/companies")
    async def list_companies() -> JSON:
        state = request.args.get("state") or None
        page = _int_arg(request.args.get("page"), "page", default=1, low=1, high=10**6)
        per_page = _int_arg(
            request.args.get("per_page"), "per_page", default=PER_PAGE_DEFAULT, low=1, high=PER_PAGE_MAX
        )
        live = live_records()
        if state is None or state in INTEGRATION_STATUSES:
            companies, total = await store.companies.list(integration_status=state, page=page, page_size=per_page)
        elif state in SESSION_STATES:
            companies, total = await companies_in_state(services, live, state, page=page, per_page=per_page)
        else:
            known = ", ".join([*INTEGRATION_STATUSES, *sorted(SESSION_STATES)])
            fail(422, "invalid_query", f"state must be one of: {known}")
        owners = await store.ownership.owners_of(c.salon_id for c in companies)
        return {"companies": [company_json(c, live, owners) for c in companies], "page": page, "total": total}

    @bp.get("/companies/<int:salon_id>")
    async def get_company(salon_id: int) -> JSON:
        return await one(salon_id)

    @bp.post("/companies/<int:salon_id>/restart")
    async def restart(salon_id: int) -> JSON:
        company = await company_or_404(salon_id)
        if company.integration_status in INACTIVE_STATES:
            fail(
                409,
                company.integration_status,
                f"salon {salon_id} is {company.integration_status} in YClients; "
                "it comes back with a new install, not a restart",
            )
        await router.restart(salon_id)  # clears a failed actor's crash history
        try:
            await router.ask(salon_id, Start())  # reconnect at once when credentials are stored
        except SessionUnavailable as exc:
            if exc.code == OWNER_UNREACHABLE:
                raise  # 503 owner_unreachable
            fail(503, "session_unavailable", f"restarted, but the session did not start: {exc}")
        log.info("salon %s restarted by an operator", salon_id, extra={"salon_id": salon_id})
        return await one(salon_id)

    @bp.post("/companies/<int:salon_id>/logout")
    async def logout(salon_id: int) -> JSON:
        await company_or_404(salon_id)
        view = registry.get(salon_id)
        linked_live = view is not None and view.state == "connected"
        note = None
        # On whichever node owns the salon; an unreachable owner is 503 before anything is deleted.
        if await router.is_running(salon_id):
            try:
                outcome = await router.ask(salon_id, Logout())
            except SessionUnavailable as exc:
                if exc.code == OWNER_UNREACHABLE:
                    raise
                linked_live, note = False, f"the session could not be reached ({exc.code})"
            else:
                if isinstance(outcome, Refused):
                    linked_live, note = False, outcome.message
        # Whatever the session could do, the stored credentials go: the device cannot come back here.
        deleted = await store.credentials.delete(salon_id)
        await store.companies.mark_disconnected(salon_id)
        await store.events.append(salon_id, "admin_logout", {"device_unlinked": linked_live})
        if not linked_live and note is None:
            note = (
                "no live WhatsApp connection: the credentials were deleted here, but the phone may "
                "still list the device until it is removed there"
            )
        log.info("salon %s logged out by an operator", salon_id, extra={"salon_id": salon_id})
        return {
            "salon_id": salon_id,
            "device_unlinked": linked_live,
            "credentials_deleted": True,
            "had_credentials": deleted,
            "note": note,
        }

    @bp.post("/companies/<int:salon_id>/onboarding-link")
    async def onboarding_link(salon_id: int) -> JSON:
        company = await company_or_404(salon_id)
        token = mint_onboarding_token(settings.jwt_secret, salon_id, now=services.wall_clock(), title=company.title)
        # The token rides in the fragment, never the query: it stays out of logs and Referer headers.
        return {"url": f"{settings.public_url}/marketplace/onboarding#token={token}", "expires_in": LIFETIME_S}

    @bp.post("/companies/<int:salon_id>/activate")
    async def activate(salon_id: int) -> tuple[JSON, int]:
        await company_or_404(salon_id)
        make = activation_payload(settings)
        record = await store.companies.requeue_activation(salon_id, activation_payload=lambda key: make(salon_id, key))
        if record is None:
            fail(404, "unknown_salon", f"salon {salon_id} is not known here")
        if not record.activation_enqueued:
            company = record.company
            if company.integration_status != "activation_failed":
                fail(
                    409,
                    "not_activation_failed",
                    f"only an activation_failed salon is re-queued; this one is {company.integration_status}",
                )
            fail(409, "not_connected", "WhatsApp is not connected; YClients is told only about a working connection")
        await store.events.append(salon_id, "activation_requeued", {"outbox_id": record.outbox_id})
        worker = getattr(services, "outbox_worker", None)  # wired by node.py when it exposes the worker
        if worker is not None:
            worker.wake()
        log.info("activation of salon %s re-queued by an operator", salon_id, extra={"salon_id": salon_id})
        return {"salon_id": salon_id, "integration_status": "activating", "outbox_id": record.outbox_id}, 202

    # -- messages -----------------------------------------------------------------------------

    @bp.post("/companies/<int:salon_id>/messages")
    async def send_message(salon_id: int) -> tuple[JSON, int]:
        body = await json_object()
        fields = {}
        for name, max_len in (("to", 64), ("text", TEXT_MAX_LEN), ("idempotency_key", KEY_MAX_LEN)):
            value = body.get(name)
            if not isinstance(value, str) or not value.strip() or len(value) > max_len or not storable_text(value):
                fail(422, "invalid_field", f"{name} must be a non-empty string of at most {max_len} characters")
            fields[name] = value
        to, text, key = fields["to"], fields["text"], fields["idempotency_key"]
        await company_or_404(salon_id)
        earlier = await store.messages.get_outbound(salon_id, key)
        if earlier is not None:  # a repeat: never sent twice
            return {"id": earlier.id, "status": earlier.status}, 200
        digits = normalise_phone(to)
        if digits is None:
            fail(422, "invalid_phone", "to must be a phone number with 10 to 15 digits")
        view = registry.get(salon_id)
        owned_here = router.locator.owner_here(salon_id) is not None
        if owned_here and (view is None or view.state != "connected"):
            # Another node's session is not seen here: its own answer below says "not_connected".
            state = "not running here" if view is None else view.state
            fail(409, "not_connected", f"salon {salon_id} has no live WhatsApp connection ({state})")
        message_id, created = await store.messages.insert_outbound(salon_id, key, digits, text)
        if not created:  # the same key raced in from another request
            return {"id": message_id, "status": "queued"}, 200
        try:
            outcome = await router.ask(salon_id, Send(digits, text, key))
        except SessionUnavailable as exc:
            await store.messages.record_send_outcome(salon_id, key, wa_id=None, error=exc.code)
            fail(503, OWNER_UNREACHABLE if exc.code == OWNER_UNREACHABLE else "session_unavailable", str(exc))
        if isinstance(outcome, Accepted):
            return {"id": message_id, "status": "queued"}, 202
        code = outcome.code if isinstance(outcome, Refused) else "refused"
        message = outcome.message if isinstance(outcome, Refused) else str(outcome)
        await store.messages.record_send_outcome(salon_id, key, wa_id=None, error=code)
        fail(422 if code == "invalid_phone" else 409, code, message)

    @bp.get("/companies/<int:salon_id>/messages")
    async def list_messages(salon_id: int) -> JSON:
        direction = request.args.get("direction") or None
        if direction not in (None, "in", "out"):
            fail(422, "invalid_query", "direction must be in or out")
        limit = _int_arg(request.args.get("limit"), "limit", default=50, low=1, high=MESSAGES_LIMIT_MAX)
        await company_or_404(salon_id)
        messages = await store.messages.latest(salon_id, cast("Direction | None", direction), limit=limit)
        return {
            "messages": [
                {
                    "id": m.id,
                    "wa_id": m.wa_id,
                    "direction": m.direction,
                    "peer": m.peer,
                    "text": m.text,
                    "at": _iso(m.at),
                    "status": m.status,
                    **({"peer_lid": m.peer_lid} if m.peer_lid else {}),
                }
                for m in messages
            ]
        }

    return bp
