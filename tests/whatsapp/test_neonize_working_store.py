"""The neonize transport's working stores (plaintext device keys) never touch DATA_DIR and never
outlive the next start.

One test runs the real neonize client offline (through a proxy address nobody listens on), wired
the way ``serve`` wires it, and looks where its store file is while the link runs. The others
leave files behind as a crash would and start a transport over them.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio

from actor_admin import node
from actor_admin.config import load_settings
from actor_admin.session import Disconnected, TransportEvent
from actor_admin.whatsapp import LinkSpec, NeonizeTransport, ram_store_root
from actor_admin.whatsapp._neonize import ClientSpec, neonize_available
from actor_admin.whatsapp._neonize_store import snapshot_store
from tests.node.test_settings import serve_env


class IdleClient:
    """A client that connects nowhere and runs until stopped (the store file is what matters)."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self._stopped = threading.Event()

    def run(self, handlers: object) -> None:
        self._stopped.wait(30)

    def stop(self) -> None:
        self._stopped.set()

    def own_jid(self) -> str:
        return ""

    def pair_phone(self, phone: str) -> str:
        return ""

    def send_text(self, to: str, text: str) -> str:
        return ""

    def logout(self) -> None:
        return None


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.is_dir()) if root.exists() else []


def some_credentials(tmp: Path) -> bytes:
    db = tmp / "made.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE whatsmeow_device (jid TEXT)")
    blob = snapshot_store(db)
    db.unlink()
    return blob


def closed_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(not neonize_available(), reason="neonize's shared library cannot load here")
async def test_serve_keeps_the_real_clients_store_in_the_runtime_directory_not_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, runtime = tmp_path / "data", tmp_path / "run"
    settings = load_settings(
        "serve", serve_env(DATA_DIR=str(data_dir), RUNTIME_DIRECTORY=str(runtime)), dotenv=None
    )
    offline = functools.partial(NeonizeTransport, proxy=f"socks5://127.0.0.1:{closed_local_port()}")
    monkeypatch.setattr(node, "NeonizeTransport", offline)
    transport, _ = node._transport(settings)
    assert isinstance(transport, NeonizeTransport)
    ended = trio.Event()
    seen_while_running: list[Path] = []

    def deliver(event: TransportEvent) -> None:
        if isinstance(event, Disconnected):
            ended.set()

    credentials = some_credentials(tmp_path)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            link = await transport.open(nursery, LinkSpec(salon_id=1, credentials=credentials, deliver=deliver))
            seen_while_running = files_under(runtime)
            data_while_running = files_under(data_dir)
            await ended.wait()
            await link.aclose()
    transport.close()
    assert [p.name for p in seen_while_running if p.suffix == ".db"], seen_while_running
    for path in seen_while_running:
        assert path.is_relative_to(ram_store_root(runtime))
    assert data_while_running == []
    assert files_under(data_dir) == []
    assert [p for p in files_under(runtime) if p.name.startswith("salon-")] == []


def test_the_working_store_root_is_the_runtime_directory_or_shared_memory(tmp_path: Path) -> None:
    settings = load_settings("serve", serve_env(RUNTIME_DIRECTORY=f"{tmp_path}/a:{tmp_path}/b"), dotenv=None)
    assert settings.runtime_dir == tmp_path / "a"
    settings = load_settings("serve", serve_env(XDG_RUNTIME_DIR=str(tmp_path)), dotenv=None)
    assert settings.runtime_dir == tmp_path / "actor-admin"
    assert load_settings("serve", serve_env(), dotenv=None).runtime_dir is None
    assert ram_store_root(None).is_relative_to("/dev/shm")


async def test_a_links_store_lives_in_a_private_directory_and_goes_when_it_closes(tmp_path: Path) -> None:
    transport = NeonizeTransport(tmp_path / "root", client_factory=IdleClient)
    async with trio.open_nursery() as nursery:
        link = await transport.open(
            nursery, LinkSpec(salon_id=3, credentials=some_credentials(tmp_path), deliver=lambda e: None)
        )
        [store] = [p for p in files_under(tmp_path / "root") if p.suffix == ".db"]
        assert store.parent == transport.store_dir
        assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(transport.store_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(tmp_path / "root").st_mode) == 0o700
        await link.aclose()
    assert not store.exists()
    transport.close()
    assert files_under(tmp_path / "root") == [tmp_path / "root" / ".sweep.lock"]


def test_leftovers_of_an_earlier_release_in_data_dir_are_removed_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = tmp_path / "data" / "neonize"
    legacy.mkdir(parents=True)
    for name in ("salon-7-aa.db", "salon-7-aa.db-journal", "salon-8-bb.db"):
        (legacy / name).write_bytes(b"SQLite format 3\x00 keys")
    with caplog.at_level(logging.WARNING):
        transport = NeonizeTransport(tmp_path / "root", legacy_store_dirs=[legacy], client_factory=IdleClient)
    assert not legacy.exists()
    assert sorted(p.name for p in transport.removed_leftovers) == [
        "salon-7-aa.db",
        "salon-7-aa.db-journal",
        "salon-8-bb.db",
    ]
    [line] = [r.getMessage() for r in caplog.records if "leftover" in r.getMessage()]
    assert "removed 3 leftover" in line and str(legacy) in line
    transport.close()


def test_nothing_to_remove_is_not_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        transport = NeonizeTransport(
            tmp_path / "root", legacy_store_dirs=[tmp_path / "none"], client_factory=IdleClient
        )
    assert transport.removed_leftovers == []
    assert not [r for r in caplog.records if "leftover" in r.getMessage()]
    transport.close()


_CRASHING_NODE = """
import os, sys
from pathlib import Path
from actor_admin.whatsapp import NeonizeTransport
from actor_admin.whatsapp._neonize import _NoClient
transport = NeonizeTransport(Path(sys.argv[1]), client_factory=lambda spec: _NoClient())
(transport.store_dir / "salon-5-dead.db").write_bytes(b"SQLite format 3\\x00 plaintext keys")
print(transport.store_dir, flush=True)
os._exit(9)  # a crash: no close, no clean-up
"""


def test_a_crashed_processs_stores_are_removed_by_the_next_start_and_a_live_ones_are_not(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASHING_NODE, str(root)], capture_output=True, text=True, timeout=60, check=False
    )
    assert crashed.returncode == 9, crashed.stderr
    dead_dir = Path(crashed.stdout.strip())
    assert (dead_dir / "salon-5-dead.db").exists()

    live = NeonizeTransport(root, client_factory=IdleClient)  # this start removes the crashed one's
    assert not dead_dir.exists()
    assert [p.name for p in live.removed_leftovers] == ["salon-5-dead.db"]
    (live.store_dir / "salon-6-live.db").write_bytes(b"in use")

    second = NeonizeTransport(root, client_factory=IdleClient)  # another live process: left alone
    assert (live.store_dir / "salon-6-live.db").exists()
    assert second.removed_leftovers == []
    second.close()
    live.close()
    assert not live.store_dir.exists()
