"""The Quart-trio front end: YClients redirect and webhook, onboarding websocket and REST, admin API,
status and metrics, and (in dev) the doubles."""

from ._app import create_app
from ._http import fail
from ._services import Counters, Services
from ._starting import FrontDoor, Starting

__all__ = [
    "Counters",
    "FrontDoor",
    "Services",
    "Starting",
    "create_app",
    "fail",
]
