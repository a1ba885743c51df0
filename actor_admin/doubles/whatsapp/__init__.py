"""The WhatsApp simulator: a fake of WhatsApp's servers and of the salon owners' phones.

One :class:`SimulatorCore` holds the state and the rules; two fronts reach it:

* :class:`SimulatorTransport` — in-process, direct calls (tests under ``MockClock``, ``actor-admin
  dev`` without a standalone simulator);
* :func:`simulator_blueprint` / :func:`serve_simulator` — the websocket link endpoint and the HTTP
  control API, reached by :class:`actor_admin.whatsapp.NetworkSimulatorTransport`.

Behaviour, link protocol and control API: docs/simulator-protocol.md.
"""

from ._core import (
    PAIRING_CODE_ALPHABET,
    PAIRING_CODE_TTL_S,
    SentMessage,
    SimulatorCore,
    SimulatorInputError,
    SimulatorLookupError,
)
from ._devices_file import DevicesFileError, simulator_devices_file
from ._inprocess import SimulatorTransport
from ._server import serve_simulator, simulator_app, simulator_blueprint

__all__ = [
    "PAIRING_CODE_ALPHABET",
    "PAIRING_CODE_TTL_S",
    "DevicesFileError",
    "SentMessage",
    "SimulatorCore",
    "SimulatorInputError",
    "SimulatorLookupError",
    "SimulatorTransport",
    "serve_simulator",
    "simulator_app",
    "simulator_blueprint",
    "simulator_devices_file",
]
