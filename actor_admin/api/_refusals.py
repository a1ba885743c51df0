"""Requests turned away, counted by cause and logged without letting a flood flood the log.

A hostile client (or a misconfigured proxy) can make thousands of refusals a minute; a line each
would bury everything else in the journal. So each cause logs at most one line per
``log_every_s`` (trio's clock), and the next line says how many were left out in between;
``/metrics`` counts every one (``actor_admin_refusals_total{cause}``, docs/http-api.md#metrics).
"""

from __future__ import annotations

import logging
from typing import Final, Literal, final, get_args

import trio

log = logging.getLogger("actor_admin.api")

RefusalCause = Literal["origin", "rate_limit", "bad_token", "bad_admin_token", "bad_partner_token", "bad_signature"]
#: Every cause, each exported from 0: ``origin`` (websocket Origin not allowed), ``rate_limit``
#: (too many new websockets from one address), ``bad_token`` (onboarding token missing, malformed,
#: expired or badly signed), ``bad_admin_token`` (admin API or detailed /status), ``bad_partner_token``
#: (a webhook), ``bad_signature`` (a marketplace redirect whose user_data signature fails).
REFUSAL_CAUSES: Final[tuple[RefusalCause, ...]] = get_args(RefusalCause)
#: At most one log line per cause this often.
LOG_EVERY_S: Final = 60.0


@final
class Refusals:
    """``refusals.refused("origin", "https://evil.example from 203.0.113.7")`` — count it, maybe log it."""

    def __init__(self, *, log_every_s: float = LOG_EVERY_S) -> None:
        self._log_every_s = log_every_s
        self._counts: dict[RefusalCause, int] = dict.fromkeys(REFUSAL_CAUSES, 0)
        self._logged_at: dict[RefusalCause, float] = {}
        self._left_out: dict[RefusalCause, int] = dict.fromkeys(REFUSAL_CAUSES, 0)

    def refused(self, cause: RefusalCause, detail: str, *, salon_id: int | None = None) -> None:
        """Count one refusal; log it unless this cause already logged within ``log_every_s``."""
        self._counts[cause] += 1
        now = trio.current_time()
        last = self._logged_at.get(cause)
        if last is not None and now - last < self._log_every_s:
            self._left_out[cause] += 1
            return
        left_out, self._left_out[cause] = self._left_out[cause], 0
        self._logged_at[cause] = now
        more = ""
        if left_out and last is not None:
            more = f" ({left_out} more refused for this cause in the last {now - last:.0f} s)"
        extra: dict[str, object] = {"cause": cause}
        if salon_id is not None:
            extra["salon_id"] = salon_id
        log.warning("refused (%s): %s%s", cause, detail, more, extra=extra)

    def statistics(self) -> dict[RefusalCause, int]:
        """Refusals since start by cause, every cause present."""
        return dict(self._counts)
