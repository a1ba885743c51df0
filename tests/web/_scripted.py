"""A scripted server for the connect page in a real Chromium: Playwright answers the page's HTTP and websocket
traffic in-process (no network), and the page's timers run on Playwright's fake clock.

Shared by the connect page's behaviour, state and accessibility tests. The real server is exercised by
tests/e2e; here each test scripts exactly the frames it is about.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.web._web_assets import WEB

ORIGIN = "http://salon.test"
CSP = "default-src 'self'; img-src 'self' data:"
# Shaped like WhatsApp's (ref,noise key,identity key,secret; docs/whatsapp.md): as long as a real one, so the
# drawn code has the module count a salon's phone meets.
QR_PAYLOAD = (
    "2@yC0xVhF4b1K0Yw6b8Jx0Zc3m9vLq2Tn5Rk7Wd1Gs4Hp6Ua8Ee0Io2Ou4Ay6By8Cz1Dx3Fw5Gv7Hu9Jt1Ks3Lr5Mq7Np9,"
    "mI0nQ2oR4pS6qT8rU0sV2tW4uX6vY8wZ0xA2yB4zC6aD8=,kJ1lK3mL5nM7oN9pO1qP3rQ5sR7tS9uT1vU3wV5xW7y=,"
    "Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7Qr9St1Uv3Wx5Yz7Ab9Cd1="
)
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 812}}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_token(salon_id: int = 101, **claims: Any) -> str:
    """A JWT-shaped token (the page only decodes it; the scripted server decides whether it is good)."""
    payload = {"salon_id": salon_id, "sub": str(salon_id), "exp": int(time.time()) + 3600, **claims}
    return _b64({"alg": "HS256"}) + "." + _b64(payload) + ".signature"


TOKEN = make_token()


class FakeServer:
    """Answers the page's routes; ``on_frame`` scripts the websocket side, ``down`` plays an outage."""

    def __init__(self) -> None:
        self.sockets: list[Any] = []
        self.frames: list[dict[str, Any]] = []
        self.http: list[tuple[str, str, str | None]] = []
        self.on_frame: Callable[[Any, dict[str, Any]], None] = self.default_script
        self.http_answer: dict[str, Any] = {"state": "qr", "qr": "2@polled", "expires_in": 15}
        self.status_answer: dict[str, Any] | None = None  # GET /marketplace/api/status, else http_answer
        self.down = False

    @staticmethod
    def send(ws: Any, frame: dict[str, Any]) -> None:
        ws.send(json.dumps(frame))

    def default_script(self, ws: Any, frame: dict[str, Any]) -> None:
        if frame["type"] == "auth":
            self.send(ws, {"type": "state", "state": "idle"})
        elif frame["type"] == "request_qr":
            self.send(ws, {"type": "state", "state": "starting"})
            self.send(ws, {"type": "state", "state": "qr"})
            self.send(ws, {"type": "qr", "qr": QR_PAYLOAD, "expires_in": 20, "seq": 1})

    def script(self, on_auth: list[dict[str, Any]]) -> None:
        """After auth, send ``on_auth``; a request for a QR gets the default answer."""

        def run(ws: Any, frame: dict[str, Any]) -> None:
            if frame["type"] == "auth":
                for item in on_auth:
                    self.send(ws, item)
            else:
                self.default_script(ws, frame)

        self.on_frame = run

    def answer_pairing(self, code: str = "ABCD-EFGH", expires_in: int = 60) -> None:
        """Answer a pairing request with ``code``; everything else as by default."""

        def run(ws: Any, frame: dict[str, Any]) -> None:
            if frame["type"] == "request_pairing_code":
                self.send(ws, {"type": "pairing_code", "code": code, "expires_in": expires_in})
            else:
                self.default_script(ws, frame)

        self.on_frame = run

    def websocket(self, ws: Any) -> None:
        if self.down:
            ws.close(code=1006, reason="no server")
            return
        self.sockets.append(ws)

        def received(message: str | bytes) -> None:
            frame = json.loads(message)
            self.frames.append(frame)
            self.on_frame(ws, frame)

        ws.on_message(received)

    def route(self, route: Any) -> None:
        request = route.request
        path = request.url.removeprefix(ORIGIN).split("?")[0].split("#")[0]
        self.http.append((request.method, path, request.headers.get("authorization")))
        if path == "/marketplace/onboarding":
            body = (WEB / "onboarding.html").read_text(encoding="utf-8")
            route.fulfill(body=body, content_type="text/html; charset=utf-8", headers={"Content-Security-Policy": CSP})
        elif path.startswith("/static/") and (WEB / path.removeprefix("/static/")).is_file():
            file = Path(WEB / path.removeprefix("/static/"))
            kind = "text/css" if file.suffix == ".css" else "text/javascript"
            route.fulfill(body=file.read_text(encoding="utf-8"), content_type=kind)
        elif self.down:
            route.abort("connectionrefused")
        elif path == "/marketplace/api/status" and self.status_answer is not None:
            route.fulfill(json=self.status_answer)
        elif path in ("/marketplace/api/qr", "/marketplace/api/status"):
            route.fulfill(json=self.http_answer)
        else:
            route.fulfill(status=404, body="not found")

    def sent(self, kind: str) -> int:
        return [f["type"] for f in self.frames].count(kind)


def open_page(page: Any, query: str = "", token: str = TOKEN) -> None:
    page.goto(f"{ORIGIN}/marketplace/onboarding{query}#token={token}")


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)
