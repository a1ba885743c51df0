"""JSON over HTTP, the same on every face actor-admin serves: the node's routes and the doubles'
control APIs (docs/http-api.md#conventions, docs/doubles.md).

An error leaves as ``{"error": {"code": "snake_case", "message": "…"}}`` with its status; a handler
raises :class:`ApiError` (or calls :func:`fail`) and the app or blueprint renders it. A request
body is read as one JSON object (:func:`actor_admin.json_types.loads_untrusted`), or refused with 400
``malformed_json`` (or the more precise ``duplicate_key``, ``number_out_of_range``, ``too_deep``) / 422
``invalid_body``.
"""

from __future__ import annotations

import json
from typing import NoReturn

from quart import Response, request
from werkzeug.exceptions import HTTPException

from actor_admin.json_types import JSON, JsonRejected, loads_untrusted


class ApiError(Exception):
    """Raised by handlers; rendered as the documented JSON error with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def fail(status: int, code: str, message: str) -> NoReturn:
    raise ApiError(status, code, message)


async def json_object(*, empty_is_object: bool = False) -> JSON:
    """The request body as a JSON object: 400 with the decoder's code if it is not acceptable JSON
    (docs/http-api.md#conventions), 422 ``invalid_body`` if it is not an object. ``empty_is_object``
    lets an empty body stand for ``{}``."""
    raw = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    if empty_is_object and not raw.strip():
        return {}
    try:
        body = loads_untrusted(raw)
    except JsonRejected as exc:
        fail(400, exc.code, f"the request body is not acceptable JSON: {exc.message}")
    if not isinstance(body, dict):
        fail(422, "invalid_body", "the request body must be a JSON object")
    return body


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_response(status: int, code: str, message: str) -> Response:
    return Response(error_body(code, message), status=status, content_type="application/json")


def http_error_response(error: HTTPException) -> Response:
    """Werkzeug's own errors (404 for an unknown path, 405, …) in the same shape: ``not_found``."""
    code = (error.name or "error").lower().replace(" ", "_").replace("-", "_")
    return error_response(error.code or 500, code, error.description or error.name or "error")
