"""The one error the rest of the program sees from Redis."""

from __future__ import annotations

from typing import final


@final
class RedisUnavailable(Exception):
    """Redis could not be reached or did not answer in time.

    Every connection failure, timeout and "server is loading / read-only / out of memory" reply from
    redis-py is turned into this one type at the ``cluster`` boundary, so callers decide once what an
    outage means for them (the rate limiter fails open, the bus keeps delivering locally, a lease
    renewal counts towards expiry) instead of catching redis-py's own exception tree.
    """
