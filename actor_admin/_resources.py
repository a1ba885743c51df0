"""Where the package finds its own files (``web/`` and ``sql/``), in a checkout and when installed.

A checkout (or an editable install) keeps them at the top of the repository, next to the package.
A wheel installs them under ``<prefix>/share/actor-admin/`` (``[tool.setuptools.data-files]``).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    candidates = [
        _PACKAGE_DIR.parent / name,
        Path(sys.prefix) / "share" / "actor-admin" / name,
        Path(sysconfig.get_path("data")) / "share" / "actor-admin" / name,
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"actor-admin's {name}/ folder is missing; looked in: " + ", ".join(map(str, candidates)))


def web_dir() -> Path:
    return _find("web")


def sql_dir() -> Path:
    return _find("sql")
