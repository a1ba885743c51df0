"""The fake YClients marketplace: its partner API and a control API, for ``actor-admin dev`` and tests.

:class:`FakeYClients` (``_core``) is the marketplace — state, rules, injected :class:`Fault` s and the
calls log — with no web framework; :func:`make_blueprints`, :func:`create_standalone_app` and
:func:`serve_fake_yclients` (``_server``) put it on HTTP.
"""

from ._core import FakeAnswer, FakeYClients, Fault, create_fake_yclients
from ._server import create_standalone_app, make_blueprints, serve_fake_yclients

__all__ = [
    "FakeAnswer",
    "FakeYClients",
    "Fault",
    "create_fake_yclients",
    "create_standalone_app",
    "make_blueprints",
    "serve_fake_yclients",
]
