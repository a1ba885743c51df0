"""Exponential back-off with jitter, as a pure value: no clock, no global random state."""

from __future__ import annotations

from collections.abc import Callable
from typing import final

import attrs


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@final
@attrs.frozen(kw_only=True)
class Backoff:
    """Delays between restarts: ``min(max_s, initial_s * factor**attempt)``, then ±``jitter``.

    ``attempt`` counts consecutive restarts from 0, so with the defaults the delays are about
    1, 2, 4, … 32, 60, 60 s. The jitter spreads restarts of many actors that crashed together
    (a network blip) so they do not all reconnect in the same instant.
    """

    initial_s: float = attrs.field(default=1.0, validator=_non_negative)
    factor: float = attrs.field(default=2.0, validator=_non_negative)
    max_s: float = attrs.field(default=60.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.2, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.jitter > 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter!r}")

    def base_delay(self, attempt: int) -> float:
        """The delay for ``attempt`` before jitter."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt!r}")
        try:
            delay = self.initial_s * self.factor**attempt
        except OverflowError:  # a key that has crashed a thousand times is simply at the cap
            return self.max_s
        return min(self.max_s, delay)

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        """The jittered delay for ``attempt``; ``random()`` must return a float in [0, 1)."""
        spread = self.jitter * (2.0 * random() - 1.0)
        return self.base_delay(attempt) * (1.0 + spread)

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay ``delay(attempt, ...)`` can return."""
        base = self.base_delay(attempt)
        return base * (1.0 - self.jitter), base * (1.0 + self.jitter)
