"""Doubles: stand-ins for the two outside services, WhatsApp and the YClients marketplace.

They are part of the product — ``actor-admin dev`` runs them in-process so a person can install,
scan and activate without a phone or a YClients account, and ``actor-admin simulator`` /
``actor-admin fake-yclients`` serve them on their own — but they are never the real thing, so they
live here, apart from the real clients in :mod:`actor_admin.whatsapp` and :mod:`actor_admin.yclients`.

The dependency points one way: a double may import the real package it stands in for (to speak its
interface, e.g. :class:`~actor_admin.whatsapp.TransportError`), a real package never imports a
double. Only the composition root (:mod:`actor_admin.node`), the commands and the dev routes
(``api/_dev.py``) wire them in, through the record that carries them from the one to the other
(``api/_services.py``).

* :mod:`actor_admin.doubles.whatsapp` — the WhatsApp simulator: WhatsApp's servers and the salon
  owners' phones (docs/simulator-protocol.md).
* :mod:`actor_admin.doubles.yclients` — the fake YClients marketplace: its partner API and a
  control API for faults, installs and webhooks.
"""
