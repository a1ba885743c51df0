"""Talking to WhatsApp: the :class:`Transport` interface and the two real implementations of it.

* :class:`NeonizeTransport` — real WhatsApp through neonize, an optional extra. Its module imports
  neonize only when a client is made, so importing this package never loads neonize or its native
  library; :func:`require_neonize` says up front whether it is usable.
* :class:`NetworkSimulatorTransport` — real links over the network to a standalone WhatsApp
  simulator (``WHATSAPP_SIMULATOR_URL``). The simulator itself is a double and lives in
  :mod:`actor_admin.doubles.whatsapp`; both ends speak :mod:`actor_admin.whatsapp.simulator_protocol`.
"""

from actor_admin.whatsapp._neonize import NeonizeMissing, NeonizeTransport, neonize_available, require_neonize
from actor_admin.whatsapp._neonize_store import ram_store_root
from actor_admin.whatsapp._simulator_client import NetworkSimulatorTransport, link_url
from actor_admin.whatsapp._transport import Deliver, Link, LinkSpec, Transport, TransportError, TransportKind

__all__ = [
    "Deliver",
    "Link",
    "LinkSpec",
    "NeonizeMissing",
    "NeonizeTransport",
    "NetworkSimulatorTransport",
    "Transport",
    "TransportError",
    "TransportKind",
    "link_url",
    "neonize_available",
    "ram_store_root",
    "require_neonize",
]
