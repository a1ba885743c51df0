"""The Quart-trio application: blueprints, the JSON error shape, security headers."""

from __future__ import annotations

import logging
import mimetypes

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actor_admin._resources import web_dir
from actor_admin.actors import OWNER_UNREACHABLE, SessionUnavailable

from . import _admin, _dev, _marketplace, _ops, _pages, _webhook, _ws
from ._connection import KeepConnection
from ._http import ApiError, BodyLimit, content_security_policy, error_response, http_error_response
from ._services import Services

log = logging.getLogger("actor_admin.api")

# The modules of the routes, each exposing ``blueprint(services) -> quart.Blueprint``; the dev
# doubles' only in ``actor-admin dev``.
BLUEPRINTS = (_ops, _marketplace, _ws, _webhook, _admin)
DEV_BLUEPRINTS = (_dev,)

# The connect page imports its QR encoder as an ES module (web/vendor/); a browser refuses a module
# served as anything but JavaScript, and not every system's MIME table knows ``.mjs``.
mimetypes.add_type("text/javascript", ".mjs")


def create_app(services: Services) -> QuartTrio:
    app = QuartTrio("actor_admin", static_folder=str(web_dir()), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = None  # BodyLimit enforces 64 KiB before Quart sees a body
    app.config["JSON_SORT_KEYS"] = False
    for module in BLUEPRINTS + (DEV_BLUEPRINTS if services.settings.mode == "dev" else ()):
        app.register_blueprint(module.blueprint(services))

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return error_response(error.status, error.code, error.message)

    @app.errorhandler(SessionUnavailable)
    async def session_unavailable(error: SessionUnavailable) -> Response:
        # A routed call that found no reachable owner (or a session that could not answer) and
        # that the route did not answer more precisely: 503, never a 500 (docs/http-api.md).
        code = OWNER_UNREACHABLE if error.code == OWNER_UNREACHABLE else "session_unavailable"
        return error_response(503, code, str(error))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return http_error_response(error)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        # Never a bare 500 page: log the details, answer in the documented shape.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "something went wrong on our side; it has been logged")

    @app.after_request
    async def security_headers(response: Response) -> Response:
        response = await _pages.error_page_for_browser(services.settings, response)
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Content-Security-Policy", content_security_policy())
        return response

    # KeepConnection lets a websocket whose peer stopped reading be aborted (docs/websocket.md#limits).
    app.asgi_app = KeepConnection(BodyLimit(app.asgi_app))  # type: ignore[method-assign,assignment,arg-type]
    return app
