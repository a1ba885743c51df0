"""The salon's way in: the YClients registration redirect, the connect page and its REST fallbacks
(docs/http-api.md#redirect, docs/http-api.md#onboarding).

The redirect trusts nothing it cannot verify: ``user_data`` must carry a valid HMAC under the
partner token (the original system minted a token for any ``?salon_id=N`` — fault 1), and a
refused request touches nothing. The onboarding JWT it mints travels in the URL *fragment*, which
browsers never send to servers, so it cannot leak into access logs or ``Referer`` headers (fault 10).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Final

import trio
from quart import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from actor_admin.actors import SessionUnavailable
from actor_admin.json_types import JSON
from actor_admin.session import INACTIVE_STATES, Frame, Refused, Start
from actor_admin.store import MarketplaceUser, StoreError
from actor_admin.yclients import SignatureError, user_id_from, verify_user_data

from . import _pages
from ._http import ApiError, error_response, fail, json_object
from ._onboarding import request_pairing_code, request_qr, unavailable, verify_token
from ._services import Services
from ._tokens import OnboardingClaims, mint_onboarding_token

log = logging.getLogger("actor_admin.api")

ONBOARDING_PATH: Final = "/marketplace/onboarding"
# Salon ids stay exact as JSON numbers in every browser (the page reads them from the JWT).
MAX_SALON_ID: Final = 2**53 - 1
# One redirect lists the branches of one salon network; more than this is not a real install.
MAX_SALONS: Final = 100
_INDEXED: Final = re.compile(r"salon_ids\[\d{1,6}\]")
# How long ``POST /marketplace/api/qr`` waits for a just-started session to show its first QR, so
# a polling page gets the QR in the answer instead of on its next poll.
QR_WAIT_S: Final = 5.0

# Where each refusal of the session machine lands in HTTP.
REFUSAL_STATUS: Final[Mapping[str, int]] = {
    "invalid_phone": 422,
    "not_connected": 409,
    "already_linked": 409,
    "pairing_in_progress": 409,
    "conflict": 409,
    "frozen": 409,
    "uninstalled": 409,
    "temporarily_banned": 409,
    "pairing_failed": 502,
    "pairing_unavailable": 503,
    "stopped": 503,
    "busy": 503,
    "unavailable": 503,
    "owner_unreachable": 503,
}


# -- the redirect ----------------------------------------------------------------------------------


def _salon_ids(args: MultiDict[str, str]) -> list[int] | None:
    """Salon ids from ``salon_id``, ``salon_ids[]`` and ``salon_ids[N]`` (in that order, no
    duplicates); ``[]`` when none is given; None when one of them is not a positive whole number."""
    raw: list[str] = []
    for key in args:
        if key in ("salon_id", "salon_ids[]") or _INDEXED.fullmatch(key):
            raw.extend(args.getlist(key))
    ids: list[int] = []
    for value in raw:
        text = value.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 16:
            return None
        salon_id = int(text)
        if not 0 < salon_id <= MAX_SALON_ID:
            return None
        ids.append(salon_id)
    return list(dict.fromkeys(ids))


def _text(value: object, limit: int = 200) -> str | None:
    """A display string from ``user_data`` (numbers accepted), trimmed; None when absent or empty."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] or None


def _marketplace_user(user_data: JSON) -> MarketplaceUser:
    user_id = user_id_from(user_data)
    return MarketplaceUser(
        user_id=None if user_id is None else str(user_id),
        name=_text(user_data.get("name")),
        phone=_text(user_data.get("phone"), 32),
        email=_text(user_data.get("email")),
    )


async def _reactivate(services: Services, salon_id: int) -> None:
    """A salon re-installed while its actor still runs frozen/uninstalled: wake it with ``Start``."""
    view = services.registry.get(salon_id)
    if view is None or view.state not in INACTIVE_STATES or not services.router.running(salon_id):
        return
    try:
        await services.router.ask(salon_id, Start(), timeout=5.0)
    except SessionUnavailable as exc:
        log.warning("could not re-activate the session: %s", exc, extra={"salon_id": salon_id})


# -- REST helpers ------------------------------------------------------------------------------------


def _claims(services: Services) -> OnboardingClaims:
    """The onboarding claims of this request's ``Authorization: Bearer``; 401 otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    claims = verify_token(services, token, where=f"{request.path} from {request.remote_addr}")
    if claims is None:
        fail(401, "unauthorized", "a valid onboarding token is required (open the app again from YClients)")
    return claims


def _refusal(refused: Refused) -> ApiError:
    return ApiError(REFUSAL_STATUS.get(refused.code, 409), refused.code, refused.message)


def _qr_answer(frames: list[Frame]) -> JSON:
    """The polling answer from a session snapshot: state, phone, and the QR when in ``qr``."""
    answer: JSON = {"state": "idle"}
    for frame in frames:
        if frame["type"] == "state":
            answer["state"] = frame["state"]
            if frame.get("phone"):
                answer["phone"] = frame["phone"]
        elif frame["type"] == "qr" and answer["state"] == "qr":
            answer["qr"] = frame["qr"]
            answer["expires_in"] = frame["expires_in"]
    return answer


async def _wait_past_starting(services: Services, salon_id: int) -> None:
    """Wait (at most ``QR_WAIT_S``) until a just-started session shows a QR — or anything else
    than ``starting``, e.g. ``connecting`` with stored credentials, which shows no QR at all."""
    with trio.move_on_after(QR_WAIT_S):
        if services.router.locator.owner_here(salon_id) is not None:
            await services.registry.wait_until(salon_id, lambda view: view.state != "starting")
            return
        # The session runs on another node: its frames come over the bus. Subscribed before the
        # snapshot is taken, so a change in between is not missed.
        async with services.bus.subscribe(salon_id) as frames:
            if any(
                frame != {"type": "state", "state": "starting"} for frame in await services.router.snapshot(salon_id)
            ):
                return
            async for frame in frames:
                if frame != {"type": "state", "state": "starting"}:
                    return


# -- the blueprint -----------------------------------------------------------------------------------


def blueprint(services: Services) -> Blueprint:
    bp = Blueprint("marketplace", __name__)
    settings = services.settings

    @bp.get("/auth/yclients/redirect")
    async def yclients_redirect() -> Response:
        salon_ids = _salon_ids(request.args)
        if salon_ids is None or len(salon_ids) > MAX_SALONS:
            return _pages.error_page(settings, 400, _pages.BAD_SALON)
        if not salon_ids:
            return _pages.error_page(settings, 400, _pages.NO_SALON)
        try:
            user_data = verify_user_data(
                request.args.get("user_data", ""),
                request.args.get("user_data_sign", ""),
                settings.yclients_partner_token,
            )
        except SignatureError as exc:
            # The reason is safe to log (never a secret); the page says only "failed verification".
            where = f"registration redirect from {request.remote_addr}"
            services.refusals.refused("bad_signature", f"{where}: {exc.reason}", salon_id=salon_ids[0])
            return _pages.error_page(settings, 403, _pages.NOT_VERIFIED)

        user = _marketplace_user(user_data)
        # user_data describes one salon admin; its salon_name names a salon only when there is one.
        title = _text(user_data.get("salon_name")) if len(salon_ids) == 1 else None
        links: list[tuple[int, str | None, str]] = []
        try:
            for salon_id in salon_ids:
                company = await services.store.companies.upsert_registration(salon_id, title=title, user=user)
                await services.store.events.append(
                    salon_id,
                    "registration_started",
                    {"user_id": user.user_id, "salon_ids": salon_ids, "integration_status": company.integration_status},
                )
                await _reactivate(services, salon_id)
                token = mint_onboarding_token(
                    settings.jwt_secret, salon_id, now=services.wall_clock(), title=company.title
                )
                links.append((salon_id, company.title, f"{ONBOARDING_PATH}#token={token}"))
        except Exception as exc:
            log.error("registration failed: %s", exc, extra={"salon_id": salon_ids[0]})
            return _pages.error_page(settings, 503, _pages.UNAVAILABLE)
        if len(links) == 1:
            response = Response("", status=302, headers=_pages.page_headers(settings))
            response.headers["Location"] = links[0][2]
            return response
        return _pages.salons_page(settings, links)

    @bp.get(ONBOARDING_PATH)
    async def onboarding() -> Response:
        return _pages.file_page(settings, "onboarding.html")

    @bp.get("/marketplace/test")
    async def smoke_test() -> Response:
        return Response('{"ok": true}', content_type="application/json")

    @bp.post("/marketplace/api/qr")
    async def api_qr() -> JSON:
        claims = _claims(services)
        await json_object(empty_is_object=True)  # the page sends {}; anything else malformed is still refused
        salon_id = claims.salon_id
        outcome = await request_qr(services, salon_id)
        if isinstance(outcome, Refused):
            raise _refusal(outcome)
        if outcome.state == "starting":
            await _wait_past_starting(services, salon_id)
        try:
            frames = await services.router.snapshot(salon_id)
        except SessionUnavailable as exc:
            raise _refusal(unavailable(exc)) from None
        return _qr_answer(frames)

    @bp.get("/marketplace/api/status")
    async def api_status() -> JSON:
        claims = _claims(services)
        salon_id = claims.salon_id
        view = services.registry.get(salon_id)
        if view is not None:
            return {"salon_id": salon_id, "state": view.state, "phone": view.phone}
        # No session runs here: the stored record is the truth (side-effect free — this route
        # never starts a session; a session on another node keeps the record up to date).
        company = await services.store.companies.get(salon_id)
        if company is None:
            return {"salon_id": salon_id, "state": "idle", "phone": None}
        if company.integration_status in INACTIVE_STATES:
            return {"salon_id": salon_id, "state": company.integration_status, "phone": None}
        if company.whatsapp_connected:
            return {"salon_id": salon_id, "state": "connected", "phone": company.whatsapp_phone}
        return {"salon_id": salon_id, "state": "idle", "phone": None}

    @bp.post("/marketplace/api/pairing-code")
    async def api_pairing_code() -> JSON:
        claims = _claims(services)
        body = await json_object(empty_is_object=True)
        phone_raw = body.get("phone")
        if not isinstance(phone_raw, str):
            fail(422, "invalid_phone", 'give the phone number as a string, e.g. "+7 900 123-45-67"')
        outcome = await request_pairing_code(services, claims.salon_id, phone_raw)
        if isinstance(outcome, Refused):
            raise _refusal(outcome)
        return {"code": outcome.code, "expires_in": outcome.expires_in}

    @bp.errorhandler(StoreError)
    async def store_error(error: StoreError) -> Response:
        log.warning("store unavailable: %s", error)
        return await api_error(ApiError(503, "unavailable", "the service is temporarily unavailable; try again"))

    @bp.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        response = error_response(error.status, error.code, error.message)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="onboarding"'
        response.headers["Cache-Control"] = "no-store"
        return response

    return bp
