"""The dev doubles (docs/doubles.md), mounted only by ``actor-admin dev`` (``create_app`` leaves this
blueprint out in serve, so every route here is a 404 there).

* ``GET /`` — the landing page that walks a person through install → QR → scan → activation.
* ``/_dev/whatsapp/…`` — the WhatsApp simulator's control API: the in-process simulator's own
  blueprint, or, when ``WHATSAPP_SIMULATOR_URL`` names a standalone one, a forwarder to it.
* ``GET /_dev/whatsapp/qr?salon_id=N`` → ``{"qr": raw}`` (404 when that salon shows none): the
  landing page has no onboarding token, so it cannot ask ``/marketplace/api/qr``.
* ``GET /_dev/salon?salon_id=N`` → what the landing page shows for the chosen salon only: its company
  and session, its own linked device, and the fake marketplace's calls about it (activation first)
  with their age in seconds (the fake's clock is trio's, meaningless to a person).
* ``/_dev/yclients/api/…`` and ``/_dev/yclients/…`` — the fake marketplace and its control API.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import httpx
from quart import Blueprint, Response, request

from actor_admin.doubles.whatsapp import simulator_blueprint
from actor_admin.doubles.yclients import make_blueprints
from actor_admin.json_types import JSON

from . import _pages
from ._http import error_response, fail
from ._services import Services

log = logging.getLogger("actor_admin.api")

SIMULATOR_PREFIX: Final = "/_dev/whatsapp"
FORWARD_TIMEOUT_S: Final = 10.0
_FORWARDED_HEADERS: Final = ("content-type", "accept")


def _salon_id_arg() -> int:
    raw = request.args.get("salon_id", "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16 or int(raw) <= 0:
        fail(422, "invalid_salon_id", "give salon_id=N, a positive whole number")
    return int(raw)


def _simulator_forwarder(base_url: str) -> Blueprint:
    """``/_dev/whatsapp/<path>`` → the standalone simulator at ``base_url`` (HTTP only; its link
    websocket is reached directly by the transport)."""
    bp = Blueprint("whatsapp_simulator_forward", __name__)
    base = base_url.rstrip("/")

    async def forward(rest: str = "") -> Response:
        body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS}
        try:
            async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S) as client:
                answer = await client.request(
                    request.method,
                    f"{base}/{rest}",
                    params=list(request.args.items(multi=True)),
                    content=body,
                    headers=headers,
                )
        except httpx.HTTPError as exc:
            return error_response(502, "simulator_unreachable", f"{base} did not answer: {type(exc).__name__}")
        content_type = answer.headers.get("content-type", "application/json")
        return Response(answer.content, status=answer.status_code, content_type=content_type)

    bp.add_url_rule("/", "root", forward, methods=["GET", "POST"])
    bp.add_url_rule("/<path:rest>", "any", forward, methods=["GET", "POST"])
    return bp


async def _networked_qr(base_url: str, salon_id: int) -> str | None:
    try:
        async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S) as client:
            answer = await client.get(f"{base_url.rstrip('/')}/salons/{salon_id}")
        body: Any = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        fail(502, "simulator_unreachable", f"the simulator did not answer: {type(exc).__name__}")
    qr = body.get("qr") if isinstance(body, dict) else None
    return qr if isinstance(qr, str) else None


ACTIVATION_PATH: Final = "/marketplace/partner/callback"


def _calls_about(fake: Any, salon_id: int, now: float) -> list[JSON]:
    """The fake marketplace's calls about ``salon_id``, newest first, with their age instead of its clock."""
    calls = []
    for call in reversed(fake.calls):
        body = call.get("json")
        if not (isinstance(body, dict) and body.get("salon_id") == salon_id) and f"/{salon_id}/" not in call["path"]:
            continue
        calls.append(
            {
                "method": call["method"],
                "path": call["path"],
                "status": call["status"],
                "age_s": round(max(0.0, now - float(call["at"])), 1),
                "activation": call["path"] == ACTIVATION_PATH,
                "json": body,
            }
        )
    return calls


def blueprint(services: Services) -> Blueprint:
    bp = Blueprint("dev", __name__)
    settings = services.settings
    simulator = services.simulator

    @bp.get("/")
    async def landing() -> Response:
        return _pages.file_page(settings, "landing.html")

    @bp.get(SIMULATOR_PREFIX + "/qr")
    async def current_qr() -> Response | JSON:
        salon_id = _salon_id_arg()
        if simulator is not None:
            qr = simulator.qr_for(salon_id)
        elif settings.whatsapp_simulator_url:
            qr = await _networked_qr(settings.whatsapp_simulator_url, salon_id)
        else:
            fail(404, "no_simulator", "this node does not use the WhatsApp simulator")
        if qr is None:
            fail(404, "no_qr", f"salon {salon_id} shows no QR code right now")
        return {"qr": qr}

    @bp.get("/_dev/salon")
    async def salon_truth() -> JSON:
        salon_id = _salon_id_arg()
        company = await services.store.companies.get(salon_id)
        view = services.registry.get(salon_id)
        phone = company.whatsapp_phone if company is not None else None
        device = None
        if company is not None and company.whatsapp_connected and phone is not None:
            live = phone in simulator.live_phones() if simulator is not None else None
            since = company.whatsapp_connected_at
            age = round(max(0.0, services.wall_clock() - since.timestamp()), 1) if since else None
            device = {"phone": phone, "live": live, "linked_age_s": age}
        fake = services.fake_yclients
        calls = _calls_about(fake, salon_id, fake.clock()) if fake is not None else []
        activation = next((c for c in calls if c["activation"]), None)
        return {
            "salon_id": salon_id,
            "known": company is not None,
            "title": company.title if company is not None else None,
            "integration_status": company.integration_status if company is not None else None,
            "state": view.state if view is not None else None,
            "device": device,
            "activation": activation,
            "calls": calls,
        }

    if simulator is not None:
        bp.register_blueprint(simulator_blueprint(simulator), url_prefix=SIMULATOR_PREFIX)
    elif settings.whatsapp_simulator_url:
        bp.register_blueprint(_simulator_forwarder(settings.whatsapp_simulator_url), url_prefix=SIMULATOR_PREFIX)
    if services.fake_yclients is not None:
        for child in make_blueprints(services.fake_yclients):
            bp.register_blueprint(child)
    return bp
