"""The fake YClients marketplace's HTTP face: thin Quart adapters over :class:`~._core.FakeYClients`.

Two route groups (docs/doubles.md#fake-yclients):

* the **API**, mounted at ``/_dev/yclients/api`` by ``actor-admin dev`` (so that ``YCLIENTS_API_URL =
  PUBLIC_URL + "/_dev/yclients/api"``) and at ``/`` of ``actor-admin fake-yclients``; every request is
  handed to :meth:`FakeYClients.handle_api` as is;
* the **control API**, at ``/_dev/yclients/`` in dev and ``/_fake/`` standalone: ``GET install``,
  ``GET calls``, ``POST faults``, ``POST webhook`` (and ``GET state``, ``GET/DELETE faults``,
  ``POST reset`` for tests). Control errors are JSON ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Awaitable, Callable
from typing import Final

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart import Blueprint, Response, redirect, request
from quart_trio import QuartTrio
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers.response import Response as WerkzeugResponse

from actor_admin.config import Settings
from actor_admin.http_json import ApiError, error_response, json_object

from ._core import JSON_TYPE, FakeYClients, create_fake_yclients, dump_json, fault_from_json, is_int

API_METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _json_response(value: object, status: int = 200) -> Response:
    return Response(dump_json(value), status=status, content_type=JSON_TYPE)


def _salon_ids_from(args: MultiDict[str, str]) -> list[int] | None:
    """``salon_id`` (repeatable), ``salon_ids``, ``salon_ids[]`` or ``salon_ids[N]`` → ids, or None if bad."""
    raw: list[str] = []
    for key in args:
        if key in ("salon_id", "salon_ids", "salon_ids[]") or re.fullmatch(r"salon_ids\[\d+\]", key):
            raw.extend(args.getlist(key))
    ids: list[int] = []
    for value in raw:
        for part in value.split(","):
            part = part.strip()
            if not part.isascii() or not part.isdigit() or int(part) <= 0:
                return None
            ids.append(int(part))
    return list(dict.fromkeys(ids))


def make_blueprints(
    fake: FakeYClients,
    *,
    api_prefix: str | None = "/_dev/yclients/api",
    control_prefix: str = "/_dev/yclients",
) -> tuple[Blueprint, Blueprint]:
    """The fake's two route groups as Quart blueprints: ``(api, control)``.

    ``api_prefix=None`` (or ``""``) mounts the API at the root, as the standalone server does.
    """
    api = Blueprint("fake_yclients_api", __name__, url_prefix=api_prefix or None)
    control = Blueprint("fake_yclients_control", __name__, url_prefix=control_prefix.rstrip("/") or None)

    async def api_view(rest: str = "") -> Response:
        body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
        answer = await fake.handle_api(
            request.method,
            "/" + rest,
            request.args.to_dict(flat=False),
            request.headers.get("Authorization"),
            body,
        )
        return Response(
            answer.body, status=answer.status, content_type=answer.content_type, headers=dict(answer.headers)
        )

    @control.errorhandler(ApiError)
    async def control_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message)

    api.add_url_rule("/", "root", api_view, methods=API_METHODS)
    api.add_url_rule("/<path:rest>", "any", api_view, methods=API_METHODS)

    @control.get("/install")
    async def install() -> Response | WerkzeugResponse:
        salon_ids = _salon_ids_from(request.args)
        if not salon_ids:
            return error_response(400, "no_salon_id", "give salon_id=N (repeat it for several salons)")
        encoding = request.args.get("encoding", "urlsafe")
        if encoding not in ("urlsafe", "standard", "unpadded", "standard_raw"):
            return error_response(422, "bad_encoding", "encoding: urlsafe, standard, unpadded or standard_raw")
        multi = request.args.get("multi", "brackets")
        if multi not in ("brackets", "indexed"):
            return error_response(422, "bad_multi", "multi: brackets or indexed")
        user_id_raw = request.args.get("user_id")
        if user_id_raw is not None and not (user_id_raw.isascii() and user_id_raw.isdigit()):
            return error_response(422, "bad_user_id", "user_id must be a whole number")
        salon_name = request.args.get("salon_name")
        if salon_name:
            fake.salon_names[salon_ids[0]] = salon_name
        payload = fake.user_data_payload(
            salon_ids,
            user_id=None if user_id_raw is None else int(user_id_raw),
            name=request.args.get("name", "Анна Иванова"),
            phone=request.args.get("phone", "79001234567"),
            email=request.args.get("email"),
        )
        return redirect(fake.install_url(salon_ids, encoding=encoding, multi=multi, payload=payload), 302)

    @control.get("/calls")
    async def calls() -> Response:
        path = request.args.get("path")
        listed = [c for c in fake.calls if path is None or fnmatch.fnmatchcase(c["path"], path)]
        return _json_response(listed)

    @control.get("/faults")
    async def list_faults() -> Response:
        return _json_response([f.as_json() for f in fake.faults if f.times > 0])

    @control.post("/faults")
    async def add_fault() -> Response:
        body = await json_object(empty_is_object=True)
        fault = fault_from_json(body)
        if isinstance(fault, str):
            return error_response(422, "bad_fault", fault)
        return _json_response(fake.add_fault(fault).as_json(), 201)

    @control.delete("/faults")
    async def clear_faults() -> Response:
        fake.faults.clear()
        return _json_response({"ok": True})

    @control.get("/state")
    async def state() -> Response:
        return _json_response(fake.state())

    @control.post("/reset")
    async def reset() -> Response:
        fake.reset()
        return _json_response({"ok": True})

    @control.post("/webhook")
    async def webhook() -> Response:
        body = await json_object(empty_is_object=True)
        salon_id, event = body.get("salon_id"), body.get("event")
        if not is_int(salon_id) or salon_id <= 0:
            return error_response(422, "bad_salon_id", "salon_id must be a positive whole number")
        if not isinstance(event, str) or not event:
            return error_response(422, "bad_event", "event must be a non-empty string")
        token = body.get("partner_token")
        app_id = body.get("application_id")
        if (token is not None and not isinstance(token, str)) or (app_id is not None and not is_int(app_id)):
            return error_response(422, "bad_override", "partner_token: string, application_id: number")
        try:
            status, answer = await fake.send_webhook(salon_id, event, partner_token=token, application_id=app_id)
        except httpx.HTTPError as exc:
            return error_response(502, "webhook_failed", f"could not reach {fake.our_public_url}: {type(exc).__name__}")
        return _json_response({"status": status, "body": answer})

    return api, control


def create_standalone_app(fake: FakeYClients) -> QuartTrio:
    """The app of ``actor-admin fake-yclients``: the API at ``/``, the control API at ``/_fake/``."""
    app = QuartTrio("actor_admin.fake_yclients")
    api, control = make_blueprints(fake, api_prefix=None, control_prefix="/_fake")
    app.register_blueprint(control)
    app.register_blueprint(api)
    return app


async def serve_fake_yclients(
    host: str,
    port: int,
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a standalone fake marketplace on ``host:port`` until cancelled or ``shutdown_trigger`` returns.

    It trusts ``settings.yclients_partner_token`` and ``settings.yclients_app_id`` and sends installs and
    webhooks to ``settings.public_url``. ``task_status.started`` gets the bound addresses (port 0 works).
    """
    fake = create_fake_yclients(settings.yclients_partner_token, settings.yclients_app_id, settings.public_url)
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    await hypercorn_serve(
        create_standalone_app(fake),
        config,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )
