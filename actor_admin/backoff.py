"""Exponential back-off with jitter, as a pure value: no clock, no random state of its own.

The one back-off rule of the project: the supervisor's restarts (``actor_admin.runtime``), the
WhatsApp session's reconnects (``actor_admin.session``) and the YClients activation retries
(``actor_admin.yclients``) each hold a :class:`Backoff` with their own numbers. It lives outside
those packages because the session machine imports nothing but attrs (no trio), and the runtime
no domain code; this module imports only attrs, so every layer may use it.
"""

from __future__ import annotations

from typing import final

import attrs


@final
@attrs.frozen(kw_only=True)
class Backoff:
    """Delays between attempts: ``min(max_s, initial_s * factor**attempt)``, then ±``jitter``.

    ``attempt`` counts consecutive failures from 0, so with the defaults the delays are about
    1, 2, 4, … 32, 60, 60 s. The jitter spreads the retries of many callers that failed together
    (a network blip) so they do not all come back in the same instant.
    """

    initial_s: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
    max_s: float = attrs.field(default=60.0, validator=attrs.validators.ge(0.0))
    jitter: float = attrs.field(default=0.2, validator=attrs.validators.ge(0.0))

    def __attrs_post_init__(self) -> None:
        if self.jitter > 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter!r}")

    def base_delay(self, attempt: int) -> float:
        """The delay for ``attempt`` before jitter."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt!r}")
        try:
            delay = self.initial_s * self.factor**attempt
        except OverflowError:  # a key that has failed a thousand times is simply at the cap
            return self.max_s
        return min(self.max_s, delay)

    def delay(self, attempt: int, fraction: float) -> float:
        """The jittered delay for ``attempt``: ``base × (1 ± jitter)``, ``fraction`` in [0, 1)
        choosing where (0.5 gives the base delay exactly). The caller draws ``fraction``: a seeded
        ``random.Random`` in tests, a value fixed by the session's seed in the session machine."""
        spread = self.jitter * (2.0 * fraction - 1.0)
        return self.base_delay(attempt) * (1.0 + spread)

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay :meth:`delay` can return for ``attempt``."""
        base = self.base_delay(attempt)
        return base * (1.0 - self.jitter), base * (1.0 + self.jitter)
