"""The generic actor model: bounded mailboxes, request/reply, and a supervisor that keeps one
actor per key alive with exponential back-off, restart intensity and graceful stops.

Nothing here knows what the actors do; time is trio's clock only, so all of it runs under
``trio.testing.MockClock``.
"""

from actor_admin.backoff import Backoff

from ._errors import ActorFailed, AskTimeout, MailboxClosed, MailboxFull, SupervisorClosed, sole_exception
from ._group_commit import GroupCommit, GroupCommitOptions, GroupCommitStatistics, WriteMany, open_group_commit
from ._mailbox import Inbox, Mailbox, MailboxStatistics, Request
from ._policy import Restart, SupervisorPolicy
from ._supervisor import (
    Actor,
    ActorContext,
    ActorRef,
    ActorState,
    ActorStatistics,
    ErrorInfo,
    Supervisor,
    SupervisorStatistics,
    open_supervisor,
)
from ._timers import TimerHandle, TimerWheel

__all__ = [
    "Actor",
    "ActorContext",
    "ActorFailed",
    "ActorRef",
    "ActorState",
    "ActorStatistics",
    "AskTimeout",
    "Backoff",
    "ErrorInfo",
    "GroupCommit",
    "GroupCommitOptions",
    "GroupCommitStatistics",
    "Inbox",
    "Mailbox",
    "MailboxClosed",
    "MailboxFull",
    "MailboxStatistics",
    "Request",
    "Restart",
    "Supervisor",
    "SupervisorClosed",
    "SupervisorPolicy",
    "SupervisorStatistics",
    "TimerHandle",
    "TimerWheel",
    "WriteMany",
    "open_group_commit",
    "open_supervisor",
    "sole_exception",
]
