"""The Quart-trio front end: YClients redirect and webhook, onboarding websocket and REST, admin API,
status and metrics, and (in dev) the doubles."""

from ._app import create_app
from ._http import fail
from ._services import Counters, Services

__all__ = [
    "Counters",
    "Services",
    "create_app",
    "fail",
]
