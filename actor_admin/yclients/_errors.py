"""What a YClients call can fail with, split by what the caller should do next.

The split is the whole point (docs/architecture.md#original-faults, fault 7): an HTML page, a timeout, a 429 or a
5xx means "try again later" and must never lose the call; a 4xx means YClients refused it and retrying
will not help. Messages carry the endpoint, the status and YClients' own text — never the partner token
or any header.
"""

from __future__ import annotations

from typing import final

from actor_admin.json_types import JSON


class YClientsError(Exception):
    """Base class of everything :class:`~actor_admin.yclients.YClientsClient` raises."""

    def __init__(self, endpoint: str, message: str, *, status: int | None = None) -> None:
        self.endpoint = endpoint
        self.status = status
        self.message = message
        where = f"{endpoint} → {status}" if status is not None else endpoint
        super().__init__(f"YClients {where}: {message}")


@final
class RetryableError(YClientsError):
    """A transient failure: timeout, connection error, non-JSON body, 429 or 5xx.

    ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(
        self,
        endpoint: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(endpoint, message, status=status)
        self.retry_after = retry_after


@final
class FinalError(YClientsError):
    """YClients refused the call (a 4xx other than 429, or ``success: false``); do not retry as is.

    ``message`` is YClients' own text (``meta.message`` or ``errors``); ``errors`` holds the per-field
    validation errors of a 422 when it sent them.
    """

    def __init__(
        self,
        endpoint: str,
        message: str,
        *,
        status: int | None = None,
        errors: JSON | None = None,
    ) -> None:
        super().__init__(endpoint, message, status=status)
        self.errors: JSON = dict(errors or {})
