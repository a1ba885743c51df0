"""One real neonize client, started offline: its dial failure must arrive as a network error.

The client dials through a proxy address nobody listens on, so the dial fails the same way on a
machine with internet access as on one without. Bounded in real time: the Go library runs its own
threads and must neither hang the test nor keep the process alive.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from actor_admin.session import NETWORK_ERROR, Disconnected, TransportEvent
from actor_admin.whatsapp import LinkSpec
from actor_admin.whatsapp._neonize import NeonizeTransport, neonize_available

pytestmark = pytest.mark.skipif(
    not neonize_available(), reason="neonize's shared library cannot load here (optional 'whatsapp' extra)"
)


def closed_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_real_client_reports_an_unreachable_whatsapp_as_a_network_error(tmp_path: Path) -> None:
    events: list[TransportEvent] = []
    ended = trio.Event()

    def deliver(event: TransportEvent) -> None:
        events.append(event)
        if isinstance(event, Disconnected):
            ended.set()

    transport = NeonizeTransport(tmp_path, proxy=f"socks5://127.0.0.1:{closed_local_port()}")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            link = await transport.open(nursery, LinkSpec(salon_id=1, credentials=None, deliver=deliver))
            await ended.wait()
            await link.aclose()
    assert [type(e) for e in events] == [Disconnected]
    assert events[0].reason == NETWORK_ERROR  # type: ignore[union-attr]
    assert "dial" in events[0].detail  # type: ignore[union-attr]
