"""The simulator's linked devices on disk, so a restart of ``dev`` finds them as WhatsApp's servers would.

WhatsApp remembers the devices linked to each phone; only connections end with a process. The file
holds each linked device's id, phone and secret (what its credentials prove), and the last device
number per phone; written whole, atomically (a temporary file renamed over the old one), mode 0600:
the secrets are the simulator's equivalent of device keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, final

import attrs

FORMAT_VERSION: Final = 1


def simulator_devices_file(data_dir: Path) -> Path:
    """Where a simulator keeps its linked devices under ``data_dir`` (dev's ``DATA_DIR``, or
    ``actor-admin simulator --data-dir``): a subfolder of its own, as dev keeps all its files."""
    return data_dir / "simulator" / "devices.json"


class DevicesFileError(ValueError):
    """The devices file exists but cannot be read as one; the message names it and what to do."""


@final
@attrs.frozen
class StoredDevice:
    device_id: str  # "79001234567:3"
    phone: str
    secret: str


def load_devices(path: Path) -> tuple[list[StoredDevice], dict[str, int]]:
    """The linked devices and the last device number of each phone; nothing if there is no file yet.

    Raises:
        DevicesFileError: the file is unreadable or not this format.
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], {}
    except OSError as exc:
        raise DevicesFileError(f"cannot read the simulator's devices file {path}: {exc}") from None
    try:
        data = json.loads(raw)
        if data["version"] != FORMAT_VERSION:
            raise ValueError(f"version {data['version']!r}")
        devices = [StoredDevice(str(d["device_id"]), str(d["phone"]), str(d["secret"])) for d in data["devices"]]
        numbers = {str(phone): int(n) for phone, n in data["device_numbers"].items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DevicesFileError(
            f"the simulator's devices file {path} is damaged ({exc}); move it away to start with no linked devices "
            "(every salon then needs a new scan)"
        ) from None
    return devices, numbers


def save_devices(path: Path, devices: Sequence[StoredDevice], numbers: Mapping[str, int]) -> None:
    """Replace the file with ``devices`` and ``numbers``, atomically, readable by this user only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(
        {
            "version": FORMAT_VERSION,
            "devices": [attrs.asdict(d) for d in devices],
            "device_numbers": dict(numbers),
        },
        indent=1,
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
