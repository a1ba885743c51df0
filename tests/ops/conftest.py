"""The ops tests reuse the API tests' whole-node fixture (a node on a real port), and find the real tools
the deploy files target (nginx, Prometheus and promtool, systemd-analyze, journald, jq).

A missing tool skips the tests that need it, with the package to install, unless ``REQUIRE_OPS_TOOLS=1``
(set by ``.ci/run``, which installs them): then a missing tool is a failure, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from tests.api.conftest import node  # noqa: F401 - a fixture, re-exported for this directory

from ._journald import journald  # noqa: F401 - a fixture, re-exported for this directory

#: Where Debian keeps the programs that are not on PATH.
_SBIN = ("/usr/sbin", "/sbin", "/usr/lib/systemd", "/lib/systemd")

#: tool → the Debian package that brings it.
PACKAGES = {
    "nginx": "nginx",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "systemd-analyze": "systemd",
    "systemd-journald": "systemd",
    "journalctl": "systemd",
    "jq": "jq",
    "strace": "strace",
}


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def ops_tool() -> Callable[[str], str]:
    """``ops_tool("nginx")`` → the program's path, or the test is skipped (failed under REQUIRE_OPS_TOOLS=1)."""

    def need(name: str) -> str:
        path = find_tool(name)
        if path is not None:
            return path
        reason = f"{name} is not installed (apt-get install {PACKAGES.get(name, name)})"
        if os.environ.get("REQUIRE_OPS_TOOLS") == "1":
            pytest.fail("REQUIRE_OPS_TOOLS=1 but " + reason)
        pytest.skip(reason)

    return need
