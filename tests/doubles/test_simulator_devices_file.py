"""The simulator remembers linked devices (not connections) in a file, as WhatsApp's servers remember
them: a new core on the same file logs the same credentials in; an unlinked device stays unlinked."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from actor_admin.doubles.whatsapp import DevicesFileError, SimulatorCore, simulator_devices_file
from actor_admin.session import LOGGED_OUT, Connected, Disconnected

from .test_simulator_core import PHONE, open_link, paired_credentials


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as n:
        yield n
        n.cancel_scope.cancel()


async def test_a_restarted_simulator_logs_in_devices_linked_before(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    devices = simulator_devices_file(tmp_path)
    credentials = await paired_credentials(SimulatorCore(devices_file=devices), nursery)
    restarted = SimulatorCore(devices_file=devices)
    assert restarted.stats()["linked_devices"] == 1 and restarted.stats()["live_sessions"] == 0
    _, recorder = await open_link(restarted, nursery, credentials)
    assert isinstance(recorder.last, Connected) and recorder.last.jid.startswith(f"{PHONE}:1@")
    # Device numbers continue where they were: the next device of the phone is :2, as on WhatsApp.
    await paired_credentials(restarted, nursery)
    assert sorted(SimulatorCore(devices_file=devices)._devices) == [f"{PHONE}:1", f"{PHONE}:2"]


async def test_the_devices_file_is_private_and_in_a_subfolder_of_its_own(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    devices = simulator_devices_file(tmp_path)
    await paired_credentials(SimulatorCore(devices_file=devices), nursery)
    assert devices.parent.parent == tmp_path and devices.parent.name == "simulator"
    assert stat.S_IMODE(devices.stat().st_mode) == 0o600
    assert [p.name for p in devices.parent.iterdir()] == ["devices.json"]  # no temporary file left


async def test_a_device_unlinked_before_the_restart_stays_unlinked(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    devices = simulator_devices_file(tmp_path)
    core = SimulatorCore(devices_file=devices)
    credentials = await paired_credentials(core, nursery)
    core.logout(PHONE)
    restarted = SimulatorCore(devices_file=devices)
    assert restarted.stats()["linked_devices"] == 0
    _, recorder = await open_link(restarted, nursery, credentials)
    assert [e.reason for e in recorder.of(Disconnected)] == [LOGGED_OUT]


def test_a_damaged_devices_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    devices = simulator_devices_file(tmp_path)
    devices.parent.mkdir()
    devices.write_text("{not json")
    with pytest.raises(DevicesFileError, match="move it away"):
        SimulatorCore(devices_file=devices)

