"""The YClients marketplace partner API, as typed methods over one ``httpx.AsyncClient``.

Every endpoint of docs/yclients.md#partner-api is one method. Each call is paced by a
:class:`~actor_admin.yclients.Throttle`, counted per endpoint and outcome, and its answer is judged in
this order: HTTP status, then ``success``, then ``errors`` / ``meta.message``. The result is either a
typed value or one of two errors: :class:`RetryableError` (timeout, connection error, non-JSON body,
429, 5xx) or :class:`FinalError` (any other 4xx, ``success: false``). An HTML answer — seen in
production — is therefore a retry, not a crash (docs/architecture.md#original-faults, fault 7).

The partner token lives only in the ``Authorization`` header of the underlying client: it is not kept
in any attribute that ``repr`` shows, and no message or log line built here contains headers.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, final

import attrs
import httpx
import trio

from actor_admin.json_types import JSON

from ._activation import ActivationRequest
from ._errors import FinalError, RetryableError
from ._throttle import Throttle, TokenBucket

if TYPE_CHECKING:
    from actor_admin.config import Settings

logger = logging.getLogger(__name__)

ACCEPT: Final = "application/vnd.yclients.v2+json"
# What YClients answers (403) when the activation callback repeats for an installed salon. It means
# the job is done, so activation treats it as success (docs/yclients.md#activation-call).
ALREADY_INSTALLED_MESSAGE: Final = "Пользователь уже установил это приложение."
_ALREADY_INSTALLED_MARK: Final = "уже установил"

# Outcome labels that are not an HTTP status.
TIMEOUT: Final = "timeout"
CONNECTION_ERROR: Final = "connection_error"
NOT_JSON: Final = "not_json"

PAYMENT_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


@final
@attrs.frozen
class Outcome:
    """One finished call, for metrics: ``status`` is the HTTP status as text, or ``timeout``,
    ``connection_error``, ``not_json``; ``result`` is ``ok``, ``retryable`` or ``final``."""

    endpoint: str
    status: str
    result: str
    duration_s: float


@final
@attrs.frozen
class ClientStatistics:
    """Call counts so far, keyed by ``(endpoint, status)`` with the labels of :class:`Outcome`."""

    outcomes: Mapping[tuple[str, str], int]
    calls_total: int


@final
@attrs.frozen
class ActivationResult:
    """The activation callback succeeded; ``already_installed`` if YClients said it had been done."""

    already_installed: bool


@final
@attrs.frozen
class PaymentReceipt:
    """A reported payment; keep ``payment_id`` to refund it (``None`` if YClients sent none)."""

    payment_id: int | None


@final
@attrs.frozen
class InstallationStatus:
    """``GET /marketplace/salon/{salon_id}/application/{application_id}``: the installation's state."""

    connection_status: object
    logs: tuple[object, ...]
    payments: tuple[object, ...]
    data: Mapping[str, Any]  # read-only: the answer's ``data`` as YClients sent it


@final
@attrs.frozen
class SalonsPage:
    """One page of the salons that have the application installed."""

    salons: tuple[Mapping[str, Any], ...]
    meta: Mapping[str, Any]


def _message_of(body: JSON) -> str:
    """YClients' human text: ``meta.message``, else ``errors`` (object, list or string), else ``message``."""
    meta = body.get("meta")
    if isinstance(meta, Mapping) and isinstance(meta.get("message"), str) and meta["message"]:
        return str(meta["message"])
    errors = body.get("errors")
    if isinstance(errors, Mapping):
        if isinstance(errors.get("message"), str):
            return str(errors["message"])
        texts = [str(v) for value in errors.values() for v in (value if isinstance(value, list) else [value])]
        if texts:
            return "; ".join(texts)
    if isinstance(errors, list) and errors:
        return "; ".join(str(e.get("message", e)) if isinstance(e, Mapping) else str(e) for e in errors)
    if isinstance(errors, str) and errors:
        return errors
    if isinstance(body.get("message"), str):
        return str(body["message"])
    return ""


def _field_errors_of(body: JSON) -> JSON:
    meta = body.get("meta")
    if isinstance(meta, Mapping) and isinstance(meta.get("errors"), Mapping):
        return dict(meta["errors"])
    errors = body.get("errors")
    if isinstance(errors, Mapping):
        return dict(errors)
    return {}


def parse_retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds: delta-seconds, or an HTTP date measured against the answer's ``Date``.

    Measuring against ``Date`` rather than our wall clock keeps the code on trio's clock only and
    immune to clock skew between us and YClients.
    """
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    sent = response.headers.get("date")
    if not sent:
        return None
    try:
        delta = (parsedate_to_datetime(raw) - parsedate_to_datetime(sent)).total_seconds()
    except (TypeError, ValueError):
        return None
    return max(0.0, delta)


def _json_object(response: httpx.Response) -> JSON | None:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _format_time(value: datetime | str) -> str:
    return value.strftime(PAYMENT_TIME_FORMAT) if isinstance(value, datetime) else value


def _sequence(value: object) -> tuple[object, ...]:
    return tuple(value) if isinstance(value, list) else ()


@final
class YClientsClient:
    """The marketplace partner API for one application; make one per process and share it.

    Use as ``async with YClientsClient(...) as client:`` (or call :meth:`aclose`). ``transport`` swaps
    the HTTP transport (``httpx.MockTransport`` in unit tests); ``on_outcome`` is called after every
    call with an :class:`Outcome` so /metrics can export them.
    """

    def __init__(
        self,
        *,
        api_url: str,
        partner_token: str,
        application_id: int,
        throttle: Throttle | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.application_id = application_id
        self.throttle: Throttle = throttle if throttle is not None else TokenBucket()
        self._on_outcome = on_outcome
        self._outcomes: Counter[tuple[str, str]] = Counter()
        self._http = httpx.AsyncClient(
            base_url=self.api_url + "/",
            headers={
                "Authorization": f"Bearer {partner_token}",
                "Accept": ACCEPT,
            },
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        throttle: Throttle | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> YClientsClient:
        return cls(
            api_url=settings.yclients_api_url,
            partner_token=settings.yclients_partner_token,
            application_id=settings.yclients_app_id,
            throttle=throttle,
            transport=transport,
            on_outcome=on_outcome,
        )

    def __repr__(self) -> str:
        return f"YClientsClient(api_url={self.api_url!r}, application_id={self.application_id})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> YClientsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(
            outcomes=MappingProxyType(dict(self._outcomes)), calls_total=sum(self._outcomes.values())
        )

    # -- the endpoints -------------------------------------------------------------------------------

    async def activate(
        self,
        salon_id: int,
        *,
        api_key: str,
        webhook_urls: Sequence[str],
        channels: Sequence[str] | None = None,
        via_redirect: bool = False,
    ) -> ActivationResult:
        """Confirm the installation: ``POST /marketplace/partner/callback`` (201).

        ``via_redirect`` uses ``…/callback/redirect`` instead (200 ``{"success":true}``, or the 301 of
        the older spec). YClients' 403 "already installed" counts as success.
        """
        request = ActivationRequest(
            salon_id=salon_id,
            api_key=api_key,
            webhook_urls=tuple(webhook_urls),
            channels=None if channels is None else tuple(channels),
        )
        body = request.to_json(self.application_id)
        endpoint = "partner_callback_redirect" if via_redirect else "partner_callback"
        path = "marketplace/partner/callback/redirect" if via_redirect else "marketplace/partner/callback"
        try:
            await self._call(endpoint, "POST", path, json_body=body, redirect_is_success=via_redirect)
        except FinalError as exc:
            if exc.status == 403 and _ALREADY_INSTALLED_MARK in exc.message.casefold():
                return ActivationResult(already_installed=True)
            raise
        return ActivationResult(already_installed=False)

    async def report_payment(
        self,
        salon_id: int,
        *,
        payment_sum: float,
        payment_date: datetime | str,
        period_from: datetime | str,
        period_to: datetime | str,
        currency_iso: str = "RUB",
    ) -> PaymentReceipt:
        """``POST /marketplace/partner/payment``; times go out as ``YYYY-MM-DD HH:MM:SS``."""
        body = {
            "salon_id": salon_id,
            "application_id": self.application_id,
            "payment_sum": payment_sum,
            "currency_iso": currency_iso,
            "payment_date": _format_time(payment_date),
            "period_from": _format_time(period_from),
            "period_to": _format_time(period_to),
        }
        envelope = await self._call("payment", "POST", "marketplace/partner/payment", json_body=body)
        data = envelope.get("data")
        payment_id = data.get("id") if isinstance(data, Mapping) else None
        if isinstance(payment_id, bool) or not isinstance(payment_id, int):
            payment_id = None
        return PaymentReceipt(payment_id=payment_id)

    async def refund_payment(self, payment_id: int) -> None:
        """``POST /marketplace/partner/payment/refund/{payment_id}``."""
        await self._call("refund", "POST", f"marketplace/partner/payment/refund/{int(payment_id)}")

    async def set_short_names(self, salon_id: int, short_names: Sequence[str]) -> None:
        """``POST /marketplace/partner/short_names``: the salon's SMS sender names."""
        body = {
            "salon_id": salon_id,
            "application_id": self.application_id,
            "short_names": list(short_names),
        }
        await self._call("short_names", "POST", "marketplace/partner/short_names", json_body=body)

    async def installation_status(self, salon_id: int) -> InstallationStatus | None:
        """The installation's logs, payments and connection status; ``None`` if not installed (404)."""
        path = f"marketplace/salon/{int(salon_id)}/application/{self.application_id}"
        try:
            envelope = await self._call("installation_status", "GET", path)
        except FinalError as exc:
            if exc.status == 404:
                return None
            raise
        data = envelope.get("data")
        data = data if isinstance(data, Mapping) else {}
        return InstallationStatus(
            connection_status=data.get("connection_status"),
            logs=_sequence(data.get("logs")),
            payments=_sequence(data.get("payments")),
            data=MappingProxyType(dict(data)),
        )

    async def list_salons(self, *, page: int = 1, count: int = 100) -> SalonsPage:
        """``GET /marketplace/application/{application_id}/salons`` (``count`` ≤ 1000)."""
        if not 1 <= count <= 1000:
            raise ValueError("count must be between 1 and 1000")
        envelope = await self._call(
            "salons",
            "GET",
            f"marketplace/application/{self.application_id}/salons",
            params={"page": page, "count": count},
        )
        data = envelope.get("data")
        meta = envelope.get("meta")
        salons = tuple(s for s in data if isinstance(s, Mapping)) if isinstance(data, list) else ()
        return SalonsPage(salons=salons, meta=MappingProxyType(dict(meta) if isinstance(meta, Mapping) else {}))

    async def uninstall(self, salon_id: int) -> bool:
        """Disconnect the salon from our side; ``False`` if it was not installed (404), so repeats are safe."""
        path = f"marketplace/salon/{int(salon_id)}/application/{self.application_id}/uninstall"
        try:
            await self._call("uninstall", "POST", path)
        except FinalError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def payment_link(self, salon_id: int, *, discount: float | None = None) -> str:
        """``GET /marketplace/application/payment_link`` → ``data.url``."""
        params: JSON = {"salon_id": salon_id, "application_id": self.application_id}
        if discount is not None:
            params["discount"] = discount
        envelope = await self._call("payment_link", "GET", "marketplace/application/payment_link", params=params)
        data = envelope.get("data")
        url = data.get("url") if isinstance(data, Mapping) else None
        if not isinstance(url, str) or not url:
            raise RetryableError("payment_link", "answer has no data.url")
        return url

    async def tariffs(self) -> tuple[Mapping[str, Any], ...]:
        """``GET /marketplace/application/{application_id}/tariffs``."""
        envelope = await self._call("tariffs", "GET", f"marketplace/application/{self.application_id}/tariffs")
        data = envelope.get("data")
        return tuple(t for t in data if isinstance(t, Mapping)) if isinstance(data, list) else ()

    async def add_discount(self, salon_ids: Sequence[int], *, discount: float) -> None:
        """``POST /marketplace/application/add_discount`` for several salons at once."""
        body = {
            "salon_ids": list(salon_ids),
            "application_id": self.application_id,
            "discount": discount,
        }
        await self._call("add_discount", "POST", "marketplace/application/add_discount", json_body=body)

    async def update_channel(self, salon_id: int, *, channel_slug: str, is_available: bool) -> None:
        """``POST /marketplace/application/update_channel``: turn ``whatsapp`` / ``sms`` on or off."""
        body = {
            "salon_id": salon_id,
            "application_id": self.application_id,
            "channel_slug": channel_slug,
            "is_available": is_available,
        }
        await self._call("update_channel", "POST", "marketplace/application/update_channel", json_body=body)

    # -- the one place that talks HTTP --------------------------------------------------------------

    def _record(self, endpoint: str, status: str, result: str, started: float) -> None:
        self._outcomes[(endpoint, status)] += 1
        duration = trio.current_time() - started
        logger.debug("yclients %s → %s (%s, %.3fs)", endpoint, status, result, duration)
        if self._on_outcome is not None:
            self._on_outcome(Outcome(endpoint=endpoint, status=status, result=result, duration_s=duration))

    async def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        json_body: JSON | None = None,
        params: JSON | None = None,
        redirect_is_success: bool = False,
    ) -> JSON:
        """Send one request and return the JSON envelope of a successful answer, or raise."""
        await self.throttle.acquire()
        started = trio.current_time()
        try:
            response = await self._http.request(method, path, json=json_body, params=params)
        except httpx.TimeoutException as exc:
            self._record(endpoint, TIMEOUT, "retryable", started)
            raise RetryableError(endpoint, f"timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            self._record(endpoint, CONNECTION_ERROR, "retryable", started)
            raise RetryableError(endpoint, f"connection failed ({type(exc).__name__})") from exc
        return self._judge(endpoint, response, started, redirect_is_success=redirect_is_success)

    def _judge(
        self, endpoint: str, response: httpx.Response, started: float, *, redirect_is_success: bool
    ) -> JSON:
        status = response.status_code
        label = str(status)
        body = _json_object(response)
        if status == 429 or status >= 500:
            self._record(endpoint, label, "retryable", started)
            message = _message_of(body) if body is not None else ""
            raise RetryableError(
                endpoint,
                message or response.reason_phrase or "server error",
                status=status,
                retry_after=parse_retry_after(response),
            )
        if redirect_is_success and status in (301, 302, 303):
            self._record(endpoint, label, "ok", started)
            return {}
        if body is None:
            if 200 <= status < 300 and not response.content.strip():
                self._record(endpoint, label, "ok", started)
                return {}
            # YClients sometimes answers an HTML page instead of JSON; whatever the status, it is
            # not YClients' verdict on the call, so try again later.
            self._record(endpoint, NOT_JSON, "retryable", started)
            kind = response.headers.get("content-type", "unknown type").split(";")[0]
            raise RetryableError(
                endpoint,
                f"answer is not a JSON object ({kind})",
                status=status,
                retry_after=parse_retry_after(response),
            )
        if 200 <= status < 300:
            if body.get("success") is False:
                self._record(endpoint, label, "final", started)
                raise FinalError(
                    endpoint,
                    _message_of(body) or "success: false",
                    status=status,
                    errors=_field_errors_of(body),
                )
            self._record(endpoint, label, "ok", started)
            return body
        self._record(endpoint, label, "final", started)
        raise FinalError(
            endpoint,
            _message_of(body) or response.reason_phrase or "refused",
            status=status,
            errors=_field_errors_of(body),
        )
