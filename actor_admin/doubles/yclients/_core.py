"""The fake YClients marketplace's core: state, rules, faults and the calls log, without a web framework.

The partner API of docs/yclients.md#partner-api, answered by :meth:`FakeYClients.handle_api`
as a :class:`FakeAnswer` (status, body, headers). YClients has no sandbox, so this is the only place
the client, the outbox and the webhook route meet something that answers like YClients: its
envelopes (``{"success","data","meta"}``), its status codes (201 on activation, 403 "already
installed", 401 on a bad bearer, 422 with ``meta.errors``), and its bad days (5xx, 429, HTML instead
of JSON, slowness) on demand (:class:`Fault`, parsed from the control API by :func:`fault_from_json`).

Every API call is recorded without its headers, so the partner token never shows in ``calls``. The
Quart routes that put this on HTTP (docs/doubles.md#fake-yclients) are the thin adapters of :mod:`._server`.
"""

from __future__ import annotations

import fnmatch
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeGuard, final
from urllib.parse import quote, urlencode

import attrs
import httpx
import trio

from actor_admin.json_types import JSON, JsonRejected, loads_untrusted
from actor_admin.yclients import ALREADY_INSTALLED_MESSAGE, PAYMENT_TIME_FORMAT, sign_user_data

JSON_TYPE: Final = "application/json; charset=utf-8"
HTML_FAULT_PAGE: Final = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)
CHANNEL_SLUGS: Final = frozenset({"whatsapp", "sms"})
TARIFFS: Final = (
    {"id": 1, "title": "Месяц", "price": 990, "currency_iso": "RUB", "period_days": 30},
    {"id": 2, "title": "Год", "price": 9900, "currency_iso": "RUB", "period_days": 365},
)


# -- records -------------------------------------------------------------------------------------------


@final
@attrs.frozen
class FakeAnswer:
    """What the fake answers, independent of the web framework."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@final
@attrs.define
class Fault:
    """An injected failure for API paths matching ``path`` (a glob, relative to the API root).

    ``delay_s`` delays the answer (the call still takes effect first, like a real slow server);
    ``status`` and/or ``html`` replace the answer (the call does not take effect). Applies ``times``
    times, to the first matching fault in the order they were added.
    """

    path: str
    times: int = 1
    status: int | None = None
    html: bool = False
    delay_s: float = 0.0
    retry_after: float | None = None
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.times <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return fnmatch.fnmatchcase(path, self.path)

    def as_json(self) -> JSON:
        return attrs.asdict(self)


@final
@attrs.define
class FakeSalon:
    """A salon with our application installed, as the fake remembers it."""

    salon_id: int
    api_key: str | None
    webhook_urls: list[str]
    channels: dict[str, bool]
    connection_status: str
    installed_at: float
    short_names: list[str] = attrs.field(factory=list)
    discount: float = 0.0
    logs: list[JSON] = attrs.field(factory=list)


@final
@attrs.define
class FakePayment:
    payment_id: int
    salon_id: int
    payment_sum: float
    currency_iso: str
    payment_date: str
    period_from: str
    period_to: str
    refunded: bool = False

    def as_json(self) -> JSON:
        return {
            "id": self.payment_id,
            "salon_id": self.salon_id,
            "payment_sum": self.payment_sum,
            "currency_iso": self.currency_iso,
            "payment_date": self.payment_date,
            "period_from": self.period_from,
            "period_to": self.period_to,
            "refunded": self.refunded,
        }


# -- envelopes and validation --------------------------------------------------------------------------


def dump_json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _ok(data: object = None, *, status: int = 200, meta: object = None) -> FakeAnswer:
    return FakeAnswer(status, dump_json({"success": True, "data": data, "meta": [] if meta is None else meta}))


def _fail(status: int, message: str, errors: Mapping[str, list[str]] | None = None) -> FakeAnswer:
    meta: JSON = {"message": message}
    if errors:
        meta["errors"] = dict(errors)
    return FakeAnswer(status, dump_json({"success": False, "data": None, "meta": meta}))


def _invalid(errors: Mapping[str, list[str]]) -> FakeAnswer:
    return _fail(422, "Переданы некорректные данные", errors)


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


@attrs.define
class _Checker:
    """Collects Laravel-style per-field errors, as YClients' 422 ``meta.errors`` carries them."""

    body: JSON
    errors: dict[str, list[str]] = attrs.field(factory=dict)

    def _add(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)

    def _present(self, field: str, required: bool) -> bool:
        if self.body.get(field) is None:
            if required:
                self._add(field, f"Поле {field} обязательно для заполнения.")
            return False
        return True

    def integer(self, field: str, *, required: bool = True) -> int | None:
        if not self._present(field, required):
            return None
        value = self.body[field]
        if not is_int(value) or value <= 0:
            self._add(field, f"Поле {field} должно быть положительным целым числом.")
            return None
        return int(value)

    def number(self, field: str, *, required: bool = True, low: float = 0.0, high: float | None = None) -> float | None:
        if not self._present(field, required):
            return None
        value = self.body[field]
        if not is_number(value) or value < low or (high is not None and value > high):
            bound = f" от {low:g} до {high:g}" if high is not None else f" не меньше {low:g}"
            self._add(field, f"Поле {field} должно быть числом{bound}.")
            return None
        return float(value)

    def string(self, field: str, *, required: bool = True) -> str | None:
        if not self._present(field, required):
            return None
        value = self.body[field]
        if not isinstance(value, str) or not value:
            self._add(field, f"Поле {field} должно быть непустой строкой.")
            return None
        return value

    def boolean(self, field: str) -> bool | None:
        if not self._present(field, True):
            return None
        value = self.body[field]
        if not isinstance(value, bool):
            self._add(field, f"Поле {field} должно быть логическим значением.")
            return None
        return value

    def strings(self, field: str, *, required: bool = True, non_empty: bool = False) -> list[str] | None:
        if not self._present(field, required):
            return None
        value = self.body[field]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self._add(field, f"Поле {field} должно быть массивом строк.")
            return None
        if non_empty and not value:
            self._add(field, f"Поле {field} не должно быть пустым.")
            return None
        return list(value)

    def integers(self, field: str) -> list[int] | None:
        if not self._present(field, True):
            return None
        value = self.body[field]
        if not isinstance(value, list) or not value or not all(is_int(v) and v > 0 for v in value):
            self._add(field, f"Поле {field} должно быть непустым массивом идентификаторов.")
            return None
        return list(value)

    def time(self, field: str) -> str | None:
        value = self.string(field)
        if value is None:
            return None
        try:
            datetime.strptime(value, PAYMENT_TIME_FORMAT)
        except ValueError:
            self._add(field, f"Поле {field} должно быть датой в формате Y-m-d H:i:s.")
            return None
        return value

    def application_id(self, expected: int) -> None:
        value = self.integer("application_id")
        if value is not None and value != expected:
            self._add("application_id", "Приложение не найдено.")


def _query_checker(query: Mapping[str, Sequence[str]], fields: Sequence[str]) -> _Checker:
    """A checker over query-string values, with integer-looking ones turned into numbers."""
    body: JSON = {}
    for field in fields:
        values = query.get(field)
        if not values:
            continue
        raw = values[0]
        try:
            body[field] = int(raw)
        except ValueError:
            try:
                body[field] = float(raw)
            except ValueError:
                body[field] = raw
    return _Checker(body)


# -- the fake ------------------------------------------------------------------------------------------


@final
@attrs.frozen
class _Call:
    """One API request as a route handler sees it."""

    params: Mapping[str, str]  # the path's {placeholders}
    query: Mapping[str, Sequence[str]]
    body: JSON  # {} for a route that takes no body


Handler = Callable[["FakeYClients", _Call], FakeAnswer]


@attrs.define
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    takes_body: bool


_ROUTES: list[_Route] = []


def _route(method: str, path: str, *, takes_body: bool = False) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[0-9]+)", path) + "$")
        _ROUTES.append(_Route(method, pattern, handler, takes_body))
        return handler

    return register


@final
class FakeYClients:
    """The fake marketplace's state and behaviour. Build it with :func:`create_fake_yclients`."""

    def __init__(
        self,
        *,
        partner_token: str,
        application_id: int,
        our_public_url: str,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._partner_token = partner_token
        self.application_id = application_id
        self.our_public_url = our_public_url.rstrip("/")
        self.clock = clock
        self.calls: list[JSON] = []
        self.faults: list[Fault] = []
        self.salons: dict[int, FakeSalon] = {}
        self.payments: dict[int, FakePayment] = {}
        self.salon_names: dict[int, str] = {}
        self._next_payment_id = 1

    def __repr__(self) -> str:
        return (
            f"FakeYClients(application_id={self.application_id}, our_public_url={self.our_public_url!r}, "
            f"salons={sorted(self.salons)})"
        )

    # -- control ---------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget calls, faults, installations and payments."""
        self.calls.clear()
        self.faults.clear()
        self.salons.clear()
        self.payments.clear()
        self._next_payment_id = 1

    def add_fault(self, fault: Fault) -> Fault:
        if "/marketplace/" in fault.path and not fault.path.startswith("/marketplace/"):
            # Accept a full mounted path ("/_dev/yclients/api/marketplace/…"): faults match API-relative paths.
            fault.path = fault.path[fault.path.index("/marketplace/") :]
        elif not fault.path.startswith(("/", "*")):
            fault.path = "/" + fault.path
        self.faults.append(fault)
        return fault

    def salon_name(self, salon_id: int) -> str:
        return self.salon_names.get(salon_id, f"Салон красоты №{salon_id}")

    def user_data_payload(
        self,
        salon_ids: Sequence[int],
        *,
        user_id: int | None = None,
        name: str = "Анна Иванова",
        phone: str = "79001234567",
        email: str | None = None,
        salon_name: str | None = None,
    ) -> bytes:
        """A realistic ``user_data`` JSON: the shape seen in production, compact raw UTF-8."""
        first = salon_ids[0]
        payload = {
            "id": user_id if user_id is not None else 1000 + first,
            "name": name,
            "phone": phone,
            "email": email if email is not None else f"admin{first}@example.com",
            "is_approved": True,
            "avatar": "https://assets.yclients.com/general/0/01.png",
            "salon_name": salon_name if salon_name is not None else self.salon_name(first),
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def install_url(
        self,
        salon_ids: Sequence[int],
        *,
        encoding: str = "urlsafe",
        multi: str = "brackets",
        payload: bytes | None = None,
    ) -> str:
        """Where YClients sends the salon admin's browser after "Подключить": our redirect URL, signed.

        ``encoding``: ``urlsafe`` (as seen in production), ``standard``, ``unpadded`` (URL-safe without
        ``=``) or ``standard_raw`` (standard alphabet with ``+`` left unescaped, which query parsing turns
        into spaces). ``multi``: ``brackets`` (``salon_ids[]=``) or ``indexed`` (``salon_ids[0]=``).
        """
        if not salon_ids:
            raise ValueError("at least one salon id")
        data = payload if payload is not None else self.user_data_payload(salon_ids)
        user_data, sign = sign_user_data(
            data,
            self._partner_token,
            urlsafe=encoding in ("urlsafe", "unpadded"),
            padded=encoding != "unpadded",
        )
        if len(salon_ids) == 1:
            pairs = [("salon_id", str(salon_ids[0]))]
        elif multi == "indexed":
            pairs = [(f"salon_ids[{i}]", str(s)) for i, s in enumerate(salon_ids)]
        else:
            pairs = [("salon_ids[]", str(s)) for s in salon_ids]
        query = urlencode(pairs)
        if encoding == "standard_raw":
            query += f"&user_data={user_data}"
        else:
            query += "&user_data=" + quote(user_data, safe="")
        query += "&user_data_sign=" + sign
        return f"{self.our_public_url}/auth/yclients/redirect?{query}"

    async def send_webhook(
        self,
        salon_id: int,
        event: str,
        *,
        partner_token: str | None = None,
        application_id: int | None = None,
        timeout_s: float = 15.0,
    ) -> tuple[int, object]:
        """POST a lifecycle webhook to our ``/webhook/yclients`` as YClients does; return our answer.

        ``uninstall`` and ``freeze`` also change the fake's own record of the salon first, as they
        happen in YClients whatever we answer. ``partner_token`` / ``application_id`` override the real
        ones to test how we treat forged or foreign webhooks.

        Raises:
            httpx.HTTPError: when our server could not be reached.
        """
        salon = self.salons.get(salon_id)
        if event == "uninstall":
            self.salons.pop(salon_id, None)
        elif event == "freeze" and salon is not None:
            salon.connection_status = "frozen"
            salon.logs.append(self._log("Период оплаты истёк, приложение заморожено"))
        body = {
            "salon_id": salon_id,
            "application_id": self.application_id if application_id is None else application_id,
            "event": event,
            "partner_token": self._partner_token if partner_token is None else partner_token,
        }
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            response = await http.post(f"{self.our_public_url}/webhook/yclients", json=body)
        try:
            answer: object = response.json()
        except ValueError:
            answer = response.text
        return response.status_code, answer

    def state(self) -> JSON:
        """Installed salons and payments, for tests and the dev landing page."""
        return {
            "application_id": self.application_id,
            "salons": [
                {
                    "salon_id": s.salon_id,
                    "api_key": s.api_key,
                    "webhook_urls": s.webhook_urls,
                    "channels": s.channels,
                    "connection_status": s.connection_status,
                    "short_names": s.short_names,
                    "discount": s.discount,
                    "installed_at": s.installed_at,
                }
                for s in sorted(self.salons.values(), key=lambda s: s.salon_id)
            ],
            "payments": [p.as_json() for p in self.payments.values()],
        }

    # -- the API ---------------------------------------------------------------------------------------

    def _log(self, message: str) -> JSON:
        return {"at": self.clock(), "message": message}

    def _authorised(self, authorization: str | None) -> bool:
        # "Bearer <partner token>" or "Bearer <partner token>, User <user token>"
        # (docs/yclients.md#conventions-and-limits).
        if not authorization:
            return False
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        token = rest.split(",", 1)[0].strip()
        return hmac.compare_digest(token.encode("utf-8"), self._partner_token.encode("utf-8"))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.times -= 1
                return fault
        return None

    async def handle_api(
        self,
        method: str,
        path: str,
        query: Mapping[str, Sequence[str]],
        authorization: str | None,
        body: bytes,
    ) -> FakeAnswer:
        """Answer one API request (``path`` relative to the API root) and record it in :attr:`calls`."""
        method = method.upper()
        path = "/" + path.lstrip("/")
        parsed: object = None
        malformed = False
        if body.strip():
            try:
                parsed = loads_untrusted(body)
            except JsonRejected:
                malformed = True
        record: JSON = {
            "method": method,
            "path": path,
            "query": {k: list(v) for k, v in query.items()},
            "json": parsed,
            "status": None,
            "at": self.clock(),
        }
        self.calls.append(record)
        fault = self._take_fault(method, path)
        answer = self._fault_answer(fault) if fault is not None else None
        if answer is None:
            answer = self._answer(method, path, query, authorization, parsed, malformed)
        record["status"] = answer.status
        if fault is not None and fault.delay_s > 0:
            # A slow server has usually done the work already and is slow to say so; a client that
            # times out and retries must cope with that (the retry meets "already installed").
            await trio.sleep(fault.delay_s)
        return answer

    @staticmethod
    def _fault_answer(fault: Fault) -> FakeAnswer | None:
        """The answer that replaces the real one, or None if the fault only delays it."""
        if fault.html:
            return FakeAnswer(fault.status or 200, HTML_FAULT_PAGE.encode(), "text/html; charset=utf-8")
        if fault.status is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            message = "Слишком много запросов" if fault.status == 429 else "Внутренняя ошибка сервера"
            return attrs.evolve(_fail(fault.status, message), headers=headers)
        return None

    def _answer(
        self,
        method: str,
        path: str,
        query: Mapping[str, Sequence[str]],
        authorization: str | None,
        parsed: object,
        malformed: bool,
    ) -> FakeAnswer:
        if not self._authorised(authorization):
            return _fail(401, "Необходима авторизация")
        allowed: list[str] = []
        for route in _ROUTES:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            params = match.groupdict()
            if "application_id" in params and int(params["application_id"]) != self.application_id:
                return _fail(404, "Приложение не найдено")
            body: JSON = {}
            if route.takes_body:
                if malformed:
                    return _fail(400, "Некорректный JSON в теле запроса")
                if not isinstance(parsed, dict):
                    return _fail(422, "Тело запроса должно быть JSON-объектом")
                body = parsed
            return route.handler(self, _Call(params, query, body))
        if allowed:
            return _fail(405, f"Метод {method} не поддерживается, используйте {', '.join(allowed)}")
        return _fail(404, "Ресурс не найден")

    def _salon_body(self, body: JSON) -> tuple[_Checker, int | None]:
        """A checker over a body naming one salon of this application, and that salon's id."""
        check = _Checker(body)
        salon_id = check.integer("salon_id")
        check.application_id(self.application_id)
        return check, salon_id

    def _install(self, body: JSON, *, status: int) -> FakeAnswer:
        check, salon_id = self._salon_body(body)
        api_key = check.string("api_key", required=False)
        webhook_urls = check.strings("webhook_urls", required=False)
        channels = check.strings("channels", required=False)
        if check.errors or salon_id is None:
            return _invalid(check.errors)
        if salon_id in self.salons:
            return _fail(403, ALREADY_INSTALLED_MESSAGE)
        self.salons[salon_id] = FakeSalon(
            salon_id=salon_id,
            api_key=api_key,
            webhook_urls=webhook_urls or [],
            channels={slug: True for slug in (channels or [])},
            connection_status="active",
            installed_at=self.clock(),
            logs=[self._log("Приложение подключено")],
        )
        return _ok(None, status=status)

    def _new_payment(self, **fields: Any) -> FakePayment:
        payment = FakePayment(payment_id=self._next_payment_id, **fields)
        self._next_payment_id += 1
        self.payments[payment.payment_id] = payment
        return payment


_NOT_INSTALLED: Final = "Приложение не подключено в этом филиале"


@_route("POST", "/marketplace/partner/callback", takes_body=True)
def _activate(fake: FakeYClients, call: _Call) -> FakeAnswer:
    return fake._install(call.body, status=201)


@_route("POST", "/marketplace/partner/callback/redirect", takes_body=True)
def _activate_redirect(fake: FakeYClients, call: _Call) -> FakeAnswer:
    answer = fake._install(call.body, status=200)
    # The newer spec's answer to this endpoint is a bare {"success": true}.
    return FakeAnswer(200, dump_json({"success": True})) if answer.status == 200 else answer


@_route("POST", "/marketplace/partner/payment", takes_body=True)
def _payment(fake: FakeYClients, call: _Call) -> FakeAnswer:
    check, salon_id = fake._salon_body(call.body)
    payment_sum = check.number("payment_sum")
    currency = check.string("currency_iso")
    if currency is not None and not re.fullmatch("[A-Z]{3}", currency):
        check.errors.setdefault("currency_iso", []).append("Поле currency_iso должно быть кодом ISO 4217.")
    payment_date = check.time("payment_date")
    period_from = check.time("period_from")
    period_to = check.time("period_to")
    if (
        check.errors
        or salon_id is None
        or payment_sum is None
        or currency is None
        or payment_date is None
        or period_from is None
        or period_to is None
    ):
        return _invalid(check.errors)
    if period_from > period_to:  # the fixed format sorts as text
        return _invalid({"period_to": ["Конец периода раньше его начала."]})
    if fake.salons.get(salon_id) is None:
        return _fail(404, _NOT_INSTALLED)
    payment = fake._new_payment(
        salon_id=salon_id,
        payment_sum=payment_sum,
        currency_iso=currency,
        payment_date=payment_date,
        period_from=period_from,
        period_to=period_to,
    )
    return _ok({"id": payment.payment_id}, status=201)


@_route("POST", "/marketplace/partner/payment/refund/{payment_id}")
def _refund(fake: FakeYClients, call: _Call) -> FakeAnswer:
    payment = fake.payments.get(int(call.params["payment_id"]))
    if payment is None:
        return _fail(404, "Платёж не найден")
    if payment.refunded:
        return _fail(422, "Платёж уже возвращён")
    payment.refunded = True
    return _ok(None)


@_route("POST", "/marketplace/partner/short_names", takes_body=True)
def _short_names(fake: FakeYClients, call: _Call) -> FakeAnswer:
    check, salon_id = fake._salon_body(call.body)
    names = check.strings("short_names", non_empty=True)
    if check.errors or salon_id is None or names is None:
        return _invalid(check.errors)
    salon = fake.salons.get(salon_id)
    if salon is None:
        return _fail(404, _NOT_INSTALLED)
    salon.short_names = names
    return _ok(None, status=201)


@_route("GET", "/marketplace/salon/{salon_id}/application/{application_id}")
def _status(fake: FakeYClients, call: _Call) -> FakeAnswer:
    salon = fake.salons.get(int(call.params["salon_id"]))
    if salon is None:
        return _fail(404, _NOT_INSTALLED)
    payments = [p.as_json() for p in fake.payments.values() if p.salon_id == salon.salon_id]
    return _ok(
        {
            "salon_id": salon.salon_id,
            "application_id": fake.application_id,
            "connection_status": salon.connection_status,
            "logs": list(salon.logs),
            "payments": payments,
        }
    )


@_route("GET", "/marketplace/application/{application_id}/salons")
def _salons(fake: FakeYClients, call: _Call) -> FakeAnswer:
    check = _query_checker(call.query, ("page", "count"))
    page = check.integer("page", required=False) or 1
    count = check.integer("count", required=False) or 100
    if count > 1000:
        check.errors.setdefault("count", []).append("Поле count не может быть больше 1000.")
    if check.errors:
        return _invalid(check.errors)
    ordered = sorted(fake.salons.values(), key=lambda s: s.salon_id)
    chunk = ordered[(page - 1) * count : page * count]
    data = [
        {"id": s.salon_id, "title": fake.salon_name(s.salon_id), "connection_status": s.connection_status}
        for s in chunk
    ]
    return _ok(data, meta={"page": page, "count": count, "total_count": len(ordered)})


@_route("POST", "/marketplace/salon/{salon_id}/application/{application_id}/uninstall")
def _uninstall(fake: FakeYClients, call: _Call) -> FakeAnswer:
    if fake.salons.pop(int(call.params["salon_id"]), None) is None:
        return _fail(404, _NOT_INSTALLED)
    return _ok(None)


@_route("GET", "/marketplace/application/payment_link")
def _payment_link(fake: FakeYClients, call: _Call) -> FakeAnswer:
    check = _query_checker(call.query, ("salon_id", "application_id", "discount"))
    salon_id = check.integer("salon_id")
    check.application_id(fake.application_id)
    discount = check.number("discount", required=False, high=100.0)
    if check.errors:
        return _invalid(check.errors)
    link: dict[str, int | float | None] = {"salon_id": salon_id, "application_id": fake.application_id}
    if discount:
        link["discount"] = int(discount) if discount.is_integer() else discount
    return _ok({"url": "https://yclients.com/marketplace/payment?" + urlencode(link)})


@_route("GET", "/marketplace/application/{application_id}/tariffs")
def _tariffs(fake: FakeYClients, call: _Call) -> FakeAnswer:
    return _ok([dict(t) for t in TARIFFS])


@_route("POST", "/marketplace/application/add_discount", takes_body=True)
def _add_discount(fake: FakeYClients, call: _Call) -> FakeAnswer:
    check = _Checker(call.body)
    salon_ids = check.integers("salon_ids")
    check.application_id(fake.application_id)
    discount = check.number("discount", high=100.0)
    if check.errors or salon_ids is None or discount is None:
        return _invalid(check.errors)
    for salon_id in salon_ids:
        salon = fake.salons.get(salon_id)
        if salon is not None:
            salon.discount = discount
    return _ok(None)


@_route("POST", "/marketplace/application/update_channel", takes_body=True)
def _update_channel(fake: FakeYClients, call: _Call) -> FakeAnswer:
    check, salon_id = fake._salon_body(call.body)
    slug = check.string("channel_slug")
    if slug is not None and slug not in CHANNEL_SLUGS:
        check.errors.setdefault("channel_slug", []).append("Поле channel_slug должно быть whatsapp или sms.")
    available = check.boolean("is_available")
    if check.errors or salon_id is None or slug is None or available is None:
        return _invalid(check.errors)
    salon = fake.salons.get(salon_id)
    if salon is None:
        return _fail(404, _NOT_INSTALLED)
    salon.channels[slug] = available
    return _ok(None)


def create_fake_yclients(
    partner_token: str,
    application_id: int,
    our_public_url: str,
    clock: Callable[[], float] = trio.current_time,
) -> FakeYClients:
    """A fresh fake marketplace that trusts ``partner_token`` and knows one application."""
    return FakeYClients(
        partner_token=partner_token,
        application_id=application_id,
        our_public_url=our_public_url,
        clock=clock,
    )


def fault_from_json(body: JSON) -> Fault | str:
    """A :class:`Fault` from a ``POST faults`` body, or the reason it is not one."""
    path = body.get("path")
    if not isinstance(path, str) or not path:
        return "path must be a non-empty string"
    times = body.get("times", 1)
    if not is_int(times) or times < 1:
        return "times must be a whole number >= 1"
    status = body.get("status")
    if status is not None and (not is_int(status) or not 100 <= status <= 599):
        return "status must be an HTTP status code"
    html = body.get("html", False)
    if not isinstance(html, bool):
        return "html must be true or false"
    delay = body.get("delay_s", 0)
    if not is_number(delay) or delay < 0:
        return "delay_s must be a number >= 0"
    retry_after = body.get("retry_after")
    if retry_after is not None and (not is_number(retry_after) or retry_after < 0):
        return "retry_after must be a number >= 0"
    method = body.get("method")
    if method is not None and not isinstance(method, str):
        return "method must be a string"
    if status is None and not html and not delay:
        return "give at least one of status, html, delay_s"
    return Fault(
        path=path,
        times=times,
        status=status,
        html=html,
        delay_s=float(delay),
        retry_after=None if retry_after is None else float(retry_after),
        method=method,
    )
