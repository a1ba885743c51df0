"""Run the benchmarks: ``python -m tests.bench [--only NAME]`` (``make bench``).

Every ``tests/bench/bench_*.py`` module has ``run(results: dict[str, float]) -> None``, which adds
its measurements to ``results``. This prints them as a table and merges them into
``.bench/results.json`` (a flat JSON object of numbers): each run replaces the keys it measured
and keeps the others, so benchmarks of different areas can be run separately.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pkgutil
import sys
import time
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_RESULTS = _PACKAGE_DIR.parents[1] / ".bench" / "results.json"


def _bench_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules([str(_PACKAGE_DIR)]) if info.name.startswith("bench_"))


def _merge(path: Path, results: dict[str, float]) -> None:
    stored: dict[str, float] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
        except ValueError:
            loaded = {}
        if isinstance(loaded, dict):
            stored = {k: v for k, v in loaded.items() if isinstance(v, int | float)}
    stored.update(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


def _format(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:,.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", metavar="NAME", help="run one module, e.g. 'runtime' or 'bench_runtime'")
    args = parser.parse_args(argv)

    names = _bench_modules()
    if args.only:
        wanted = args.only if args.only.startswith("bench_") else f"bench_{args.only}"
        if wanted not in names:
            parser.error(f"no benchmark module {wanted!r}; there are: {', '.join(names) or 'none'}")
        names = [wanted]

    results: dict[str, float] = {}
    owners: dict[str, str] = {}
    for name in names:
        module = importlib.import_module(f"{__package__}.{name}")
        print(f"running {name} …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        measured: dict[str, float] = {}
        module.run(measured)
        print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        for key, value in measured.items():
            results[key] = float(value)
            owners[key] = name.removeprefix("bench_")

    width = max((len(key) for key in results), default=10)
    print(f"{'module':<10}  {'measurement':<{width}}  {'value':>16}")
    for key in sorted(results, key=lambda k: (owners[k], k)):
        print(f"{owners[key]:<10}  {key:<{width}}  {_format(results[key]):>16}")

    _merge(_RESULTS, results)
    print(f"merged into {_RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
