"""How a supervisor treats its actors: restart type (OTP) and the numeric policy."""

from __future__ import annotations

import enum
from typing import final

import attrs

from actor_admin.backoff import Backoff


@final
class Restart(enum.Enum):
    """When an actor that ended is started again (Erlang/OTP restart types)."""

    #: Always restarted, whether it crashed or returned.
    PERMANENT = "permanent"
    #: Restarted only after a crash; returning normally ends it for good.
    TRANSIENT = "transient"
    #: Never restarted; a crash or a return removes its key.
    TEMPORARY = "temporary"


@final
@attrs.frozen(kw_only=True)
class SupervisorPolicy:
    """The supervisor's numbers; the defaults are those of docs/architecture.md#supervision.

    Attributes:
        backoff: delays between restarts after crashes.
        backoff_reset_after_s: a run at least this long before its crash restarts the back-off
            at its first delay (the actor was healthy; this crash is a new incident).
        intensity_max_restarts: more crash-restarts than this within ``intensity_window_s``
            put the key into ``failed`` (no more restarts until ``Supervisor.restart``).
        intensity_window_s: the sliding window for ``intensity_max_restarts``.
        mailbox_capacity: messages a key's mailbox holds before ``send`` waits and
            ``send_nowait`` raises; it also bounds what is kept while the actor backs off.
        stop_grace_s: how long a polite stop may take before the actor is cancelled, when
            ``stop``/``restart``/``aclose`` are not given a ``grace``.
    """

    backoff: Backoff = attrs.field(factory=Backoff)
    backoff_reset_after_s: float = attrs.field(default=60.0, validator=attrs.validators.gt(0.0))
    intensity_max_restarts: int = attrs.field(default=10, validator=attrs.validators.ge(0))
    intensity_window_s: float = attrs.field(default=600.0, validator=attrs.validators.gt(0.0))
    mailbox_capacity: int = attrs.field(default=64, validator=attrs.validators.ge(0))
    stop_grace_s: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))
