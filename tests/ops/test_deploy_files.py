"""The deploy files pass the real tools they target (Debian 12: nginx 1.22, systemd 252), and nginx,
run with the shipped site in front of a real node, exposes only what salons and YClients use and keeps
query strings out of its logs.

The shipped files are used as they are, except for what only a real host has: ports, certificate
paths (a throwaway self-signed certificate), log and temp directories, and the node's port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from actor_admin._resources import web_dir
from tests.api._marketplace_helpers import install_url
from tests.api.conftest import TestNode, free_port

from ._serve import poll_until

OPS = web_dir().parent / "ops"
SITE = OPS / "nginx" / "actor-admin.conf"
UNIT = OPS / "systemd" / "actor-admin.service"
#: An address on the loopback that the site's allow-list does not name: "the internet" for these tests.
OUTSIDE = "127.0.0.2"


def _substitute(text: str, replacements: list[tuple[str, str]]) -> str:
    """Apply each replacement, insisting that it applies: a changed shipped file must fail loudly."""
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count > 0, f"{pattern!r} no longer occurs in the shipped file"
    return text


@attrs.define
class Nginx:
    binary: str
    prefix: Path
    http_port: int
    https_port: int

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def access_log(self) -> Path:
        return self.prefix / "log" / "actor-admin.access.log"

    @property
    def error_log(self) -> Path:
        return self.prefix / "log" / "actor-admin.error.log"

    def command(self, *args: str) -> list[str]:
        return [
            self.binary,
            "-p",
            str(self.prefix),
            "-c",
            str(self.conf),
            "-e",
            str(self.prefix / "log" / "main.log"),
            *args,
        ]


def _self_signed(prefix: Path) -> tuple[Path, Path]:
    cert, key = prefix / "cert.pem", prefix / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=wa.example.com",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def prepare_nginx(binary: str, prefix: Path, upstream_port: int) -> Nginx:
    """An nginx prefix whose http{} includes the shipped site, as Debian's nginx.conf includes sites-enabled/."""
    (prefix / "log").mkdir(parents=True)
    cert, key = _self_signed(prefix)
    nginx = Nginx(binary, prefix, free_port(), free_port())
    site = _substitute(
        SITE.read_text(),
        [
            (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{upstream_port};"),
            (r"^\s*listen \[::\]:.*$", ""),  # the test host may have no IPv6
            (r"listen 80;", f"listen 127.0.0.1:{nginx.http_port};"),
            (r"listen 443 ", f"listen 127.0.0.1:{nginx.https_port} "),
            (r"/etc/letsencrypt/live/wa\.example\.com/fullchain\.pem", str(cert)),
            (r"/etc/letsencrypt/live/wa\.example\.com/privkey\.pem", str(key)),
            (r"/var/log/nginx/", f"{prefix}/log/"),
        ],
    )
    (prefix / "sites-enabled").mkdir()
    (prefix / "sites-enabled" / SITE.name).write_text(site)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the temp prefix
    temp = "".join(
        f"    {kind}_temp_path {prefix}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    nginx.conf.write_text(
        f"{user}pid {prefix}/nginx.pid;\nworker_processes 1;\nevents {{}}\n"
        f"http {{\n    include /etc/nginx/mime.types;\n{temp}    include {prefix}/sites-enabled/*.conf;\n}}\n"
    )
    return nginx


@pytest.fixture
def nginx_binary(ops_tool: Callable[[str], str]) -> str:
    return ops_tool("nginx")


def test_nginx_accepts_the_shipped_site(nginx_binary: str, tmp_path: Path) -> None:
    nginx = prepare_nginx(nginx_binary, tmp_path / "nginx", free_port())
    checked = subprocess.run(nginx.command("-t"), capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr and "test is successful" in checked.stderr
    assert "[warn]" not in checked.stderr and "[emerg]" not in checked.stderr, checked.stderr


@asynccontextmanager
async def running(nginx: Nginx) -> AsyncIterator[None]:
    """nginx in the foreground until the block ends (a graceful SIGQUIT stop, then a kill if need be)."""
    process = await trio.lowlevel.open_process(nginx.command("-g", "daemon off;"))
    try:
        async with httpx.AsyncClient(verify=False, timeout=2) as http:
            with trio.fail_after(20):
                await poll_until(lambda: _answers(http, f"https://127.0.0.1:{nginx.https_port}/"))
        yield
    finally:
        process.send_signal(signal.SIGQUIT)
        with trio.move_on_after(10):
            await process.wait()
        process.kill()


async def _answers(http: httpx.AsyncClient, url: str) -> bool:
    try:
        await http.get(url)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture
async def nginx_before_node(nginx_binary: str, tmp_path: Path, node: TestNode) -> AsyncIterator[Nginx]:
    """nginx serving the shipped site in front of the test node."""
    nginx = prepare_nginx(nginx_binary, tmp_path / "nginx", int(node.base_url.rsplit(":", 1)[1]))
    async with running(nginx):
        yield nginx


def _client(nginx: Nginx, *, outside: bool) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=OUTSIDE if outside else "127.0.0.1", verify=False)
    return httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{nginx.https_port}", transport=transport, timeout=10, follow_redirects=False
    )


async def test_through_nginx_the_internet_reaches_only_what_salons_and_yclients_use(
    node: TestNode, nginx_before_node: Nginx
) -> None:
    nginx = nginx_before_node
    async with _client(nginx, outside=True) as internet, _client(nginx, outside=False) as operator:
        await node.register(930)
        for path in ("/metrics", "/readyz", "/healthz", "/status", "/admin/companies", "/admin/companies/930"):
            assert (await internet.get(path, headers=node.admin)).status_code == 403, path
            assert (await operator.get(path, headers=node.admin)).status_code == 200, path
        for path in ("/", "/_dev/", "/_dev/yclients/calls", "/marketplace", "/status.json"):
            assert (await internet.get(path)).status_code == 404, path

        assert (await internet.get("/marketplace/test")).json() == {"ok": True}
        assert (await internet.get("/static/style.css")).status_code == 200
        assert (await internet.get("/marketplace/onboarding")).status_code == 200
        redirect = await internet.get(install_url(node, [931]))
        assert redirect.status_code == 302 and "#token=" in redirect.headers["location"]
        token = redirect.headers["location"].split("#token=")[1]
        status = await internet.get("/marketplace/api/status", headers={"Authorization": f"Bearer {token}"})
        assert status.status_code == 200
        hook = {"salon_id": 931, "application_id": 1, "event": "freeze", "partner_token": "wrong"}
        assert (await internet.post("/webhook/yclients", json=hook)).json() == {"success": False}

        upgrade = await internet.get(f"http://127.0.0.1:{nginx.http_port}/auth/yclients/redirect?a=1")
        assert upgrade.status_code == 301
        assert upgrade.headers["location"].endswith("/auth/yclients/redirect?a=1")

    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    url = f"wss://127.0.0.1:{nginx.https_port}/marketplace/ws"
    headers = [("Authorization", f"Bearer {token}"), ("Origin", "https://yclients.com")]
    async with open_websocket_url(url, ssl_context=insecure, extra_headers=headers) as ws:
        with trio.fail_after(10):
            first = json.loads(await ws.get_message())
    assert first["type"] == "state"

    logged = nginx.access_log.read_text()
    assert "/auth/yclients/redirect" in logged
    assert "?" not in logged, "a query string reached the access log"
    for private in ("user_data", "salon_id=", token):
        assert private not in logged


async def test_when_the_node_is_down_the_redirect_query_stays_out_of_the_error_log(
    nginx_binary: str, tmp_path: Path
) -> None:
    nginx = prepare_nginx(nginx_binary, tmp_path / "nginx", free_port())  # nothing listens upstream
    async with running(nginx), _client(nginx, outside=True) as internet:
        assert (await internet.get("/marketplace/test?probe=visible")).status_code == 502
        secret = "user_data=eyJzZWNyZXQiOjF9&user_data_sign=deadbeef"
        assert (await internet.get("/auth/yclients/redirect?salon_id=7&" + secret)).status_code == 502
    errors = (tmp_path / "nginx" / "log" / "main.log").read_text() + _read(nginx.error_log)
    assert "probe=visible" in errors, "nginx did not log the failed proxying at all: the check proves nothing"
    assert "user_data" not in errors and "deadbeef" not in errors


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


# -- systemd ------------------------------------------------------------------------------------


def test_systemd_analyze_verify_finds_nothing_to_say_about_the_unit(
    ops_tool: Callable[[str], str], tmp_path: Path
) -> None:
    """The shipped unit, its program path pointed at this checkout's ``actor-admin`` (verify insists that
    ExecStart= exists, and /opt/actor-admin is not installed here)."""
    analyze = ops_tool("systemd-analyze")
    program = Path(sys.prefix) / "bin" / "actor-admin"
    assert program.exists()
    unit = tmp_path / UNIT.name
    unit.write_text(_substitute(UNIT.read_text(), [(r"/opt/actor-admin/\.venv/bin/actor-admin", str(program))]))
    verified = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout + verified.stderr == "", "systemd-analyze verify has remarks:\n" + verified.stderr


def test_the_unit_is_hardened(ops_tool: Callable[[str], str]) -> None:
    """systemd's own exposure score (0 best … 10 worst); the unhardened unit scored 8.5 "EXPOSED"."""
    analyze = ops_tool("systemd-analyze")
    scored = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=30", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stdout[-600:]
    text = UNIT.read_text()
    for setting in ("RuntimeDirectory=actor-admin", "UMask=0077", "ProtectSystem=strict", "NoNewPrivileges=yes"):
        assert re.search(rf"^{re.escape(setting)}$", text, re.MULTILINE), setting
