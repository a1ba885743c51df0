"""Company actors: the ``CompanySession`` that drives one salon's WhatsApp session machine, the
``Router`` through which everything else reaches it, the node's ``Registry`` of what each session
is doing, the node's ``UpstreamWatch`` (one probe while WhatsApp is down), and the ports the actor
needs of the store, the bus and the inbound stream."""

from ._company import CompanyMessage, CompanySession, SessionDeps, company_actor_factory
from ._ports import (
    ActivationPayload,
    FramePublisher,
    InboundSink,
    SessionCompanies,
    SessionCredentials,
    SessionEvents,
    SessionMessages,
    SessionStore,
)
from ._registry import MessageCounts, Registry, SessionView
from ._router import (
    OWNER_UNREACHABLE,
    ROUTED_LATENCY_BUCKETS,
    RemoteNodes,
    Router,
    RoutingStatistics,
    SessionUnavailable,
)
from ._upstream import OutageDetector, OutagePolicy, UpstreamView, UpstreamWatch

__all__ = [
    "OWNER_UNREACHABLE",
    "ROUTED_LATENCY_BUCKETS",
    "ActivationPayload",
    "CompanyMessage",
    "CompanySession",
    "FramePublisher",
    "InboundSink",
    "MessageCounts",
    "OutageDetector",
    "OutagePolicy",
    "Registry",
    "RemoteNodes",
    "Router",
    "RoutingStatistics",
    "SessionCompanies",
    "SessionCredentials",
    "SessionDeps",
    "SessionEvents",
    "SessionMessages",
    "SessionStore",
    "SessionUnavailable",
    "SessionView",
    "UpstreamView",
    "UpstreamWatch",
    "company_actor_factory",
]
