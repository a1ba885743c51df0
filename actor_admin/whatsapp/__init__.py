"""Talking to WhatsApp: the :class:`Transport` interface and its simulator.

The real adapter (neonize) lives in its own module and is imported only by whoever chooses it, so
importing this package never loads neonize or its native library.
"""

from actor_admin.whatsapp._simulator_client import NetworkSimulatorTransport, link_url
from actor_admin.whatsapp._simulator_core import (
    PAIRING_CODE_ALPHABET,
    PAIRING_CODE_TTL_S,
    SentMessage,
    SimulatorCore,
    SimulatorInputError,
    SimulatorLookupError,
)
from actor_admin.whatsapp._simulator_inprocess import SimulatorTransport
from actor_admin.whatsapp._simulator_server import serve_simulator, simulator_app, simulator_blueprint
from actor_admin.whatsapp._transport import Deliver, Link, Transport, TransportError

__all__ = [
    "PAIRING_CODE_ALPHABET",
    "PAIRING_CODE_TTL_S",
    "Deliver",
    "Link",
    "NetworkSimulatorTransport",
    "SentMessage",
    "SimulatorCore",
    "SimulatorInputError",
    "SimulatorLookupError",
    "SimulatorTransport",
    "Transport",
    "TransportError",
    "link_url",
    "serve_simulator",
    "simulator_app",
    "simulator_blueprint",
]
