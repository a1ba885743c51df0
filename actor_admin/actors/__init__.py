"""Company actors: the ``CompanySession`` that drives one salon's WhatsApp session machine, the
``Router`` through which everything else reaches it, and the node's ``Registry`` of what each
session is doing."""

from ._company import CompanySession, SessionDeps, company_actor_factory
from ._qr import render_qr_svg
from ._registry import MessageCounts, Registry, SessionView
from ._router import (
    OWNER_UNREACHABLE,
    ROUTED_LATENCY_BUCKETS,
    RemoteNodes,
    Router,
    RoutingStatistics,
    SessionUnavailable,
)

__all__ = [
    "OWNER_UNREACHABLE",
    "ROUTED_LATENCY_BUCKETS",
    "CompanySession",
    "MessageCounts",
    "Registry",
    "RemoteNodes",
    "Router",
    "RoutingStatistics",
    "SessionDeps",
    "SessionUnavailable",
    "SessionView",
    "company_actor_factory",
    "render_qr_svg",
]
