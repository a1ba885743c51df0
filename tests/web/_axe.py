"""axe-core, the accessibility engine, run inside a Playwright page.

axe-core comes pinned with the test extra: ``axe-playwright-python==0.1.8`` ships ``axe.min.js`` (axe-core
4.12.1) inside its wheel, so nothing is downloaded at test time. We inject that file and call ``axe.run``
ourselves; the wrapper's own Python API is not used.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

BLOCKING = ("serious", "critical")
RESULTS = Path(__file__).resolve().parents[1] / "artifacts" / "axe"


@functools.cache
def axe_source() -> str:
    package = pytest.importorskip("axe_playwright_python")
    return (resources.files(package) / "axe.min.js").read_text(encoding="utf-8")


def run_axe(page: Any, name: str) -> list[dict[str, Any]]:
    """Every violation axe finds on the page as it is now; the full result is kept in tests/artifacts/axe/."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {
        "axe": result.get("testEngine", {}).get("version"),
        "url": result.get("url"),
        "violations": [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in result["violations"]
        ],
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def blocking(violations: list[dict[str, Any]]) -> list[str]:
    """The serious and critical ones, as readable lines for an assertion message."""
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in violations
        if v.get("impact") in BLOCKING
    ]
