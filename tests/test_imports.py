"""The shape of ``actor_admin/``'s imports: no cycles, no imports hidden in functions, doubles wired
only by the wiring.

The graph is read from the source with ``ast`` (nothing is imported). An edge ``a -> b`` is any
import of ``b`` by ``a``: at module level, under ``if TYPE_CHECKING`` (a cycle through type-only
imports is still a cycle in the design) or inside a function. Importing ``p.q.r`` also runs the
``__init__`` of ``p.q`` and ``p``, so those are edges too, except the importer's own packages (they
are already being imported when it runs).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
import pytest

import actor_admin

PACKAGE = "actor_admin"
PACKAGE_DIR = Path(actor_admin.__file__).parent

#: Imports of ``actor_admin`` modules that may stay inside a function, as (importer, imported).
#: Each needs a reason other than dodging a cycle; keep this list short.
LAZY_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # The command modules load the whole server (Quart, hypercorn, asyncpg, trio-asyncio); imported
        # when a sub-command runs, `actor-admin --help` and usage errors answer in 0.1 s, not 0.9 s.
        ("actor_admin.cli", "actor_admin.commands"),
        ("actor_admin.cli", "actor_admin.doctor"),
    }
)

#: The modules outside ``actor_admin.doubles`` that may import a double: the composition root, the
#: commands that serve a double on its own, the dev routes that mount them, and the record that
#: carries them from the root to the routes (docs in ``actor_admin/doubles/__init__.py``).
DOUBLES_WIRING: frozenset[str] = frozenset(
    {"actor_admin.node", "actor_admin.commands", "actor_admin.api._dev", "actor_admin.api._services"}
)


@attrs.frozen
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool


def module_names(package_dir: Path, package: str) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    names: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(
    node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: Mapping[str, Path]
) -> set[str]:
    """The package's modules one import statement runs."""
    if isinstance(node, ast.Import):
        named = [alias.name for alias in node.names]
    else:
        if node.level:
            base = importer.split(".") if is_package else importer.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        # `from p import q` imports the module p.q when there is one, else takes a name from p.
        named = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
    own = set(_ancestors(importer)) | {importer}
    targets: set[str] = set()
    for name in named:
        for candidate in [name, *_ancestors(name)]:
            if candidate in modules and candidate not in own:
                targets.add(candidate)
    return targets


class _ImportFinder(ast.NodeVisitor):
    """Collects import statements, each with whether a function (or lambda) encloses it."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
        self._depth = 0

    def _enter(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _enter

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node, self._depth > 0))


def imports_of(package_dir: Path, package: str) -> list[Import]:
    """Every import of one of the package's modules by another, wherever it stands in the file."""
    modules = module_names(package_dir, package)
    found: list[Import] = []
    for importer, path in modules.items():
        finder = _ImportFinder()
        finder.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for node, in_function in finder.found:
            for target in sorted(_targets(node, importer, path.name == "__init__.py", modules)):
                found.append(Import(importer, target, node.lineno, in_function))
    return found


def import_graph(imports: Iterable[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.importer, set()).add(imp.imported)
        graph.setdefault(imp.imported, set())
    return graph


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules, as a path ``[a, b, …, a]``, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan; the package is small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(_cycle_in(graph, group) for group in groups)


def _cycle_in(graph: Mapping[str, set[str]], group: set[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not strongly connected")


def _show(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in cycles)


# -- the package ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package_imports() -> list[Import]:
    return imports_of(PACKAGE_DIR, PACKAGE)


def test_actor_admin_has_no_import_cycle(package_imports: list[Import]) -> None:
    cycles = find_cycles(import_graph(package_imports))
    assert not cycles, "import cycles in actor_admin/:\n" + _show(cycles)


def test_no_actor_admin_import_hides_in_a_function_outside_the_allow_list(package_imports: list[Import]) -> None:
    hidden = [
        f"{imp.importer} line {imp.line} imports {imp.imported}"
        for imp in package_imports
        if imp.in_function and (imp.importer, imp.imported) not in LAZY_ALLOWED
    ]
    assert not hidden, "move these imports to the top of their module:\n" + "\n".join(hidden)


def test_every_allowed_lazy_import_still_exists(package_imports: list[Import]) -> None:
    lazy = {(imp.importer, imp.imported) for imp in package_imports if imp.in_function}
    assert sorted(LAZY_ALLOWED - lazy) == []


def test_only_the_wiring_imports_the_doubles(package_imports: list[Import]) -> None:
    doubles = f"{PACKAGE}.doubles"
    outside = sorted(
        f"{imp.importer} imports {imp.imported}"
        for imp in package_imports
        if (imp.imported == doubles or imp.imported.startswith(doubles + "."))
        and not (imp.importer == doubles or imp.importer.startswith(doubles + "."))
        and imp.importer not in DOUBLES_WIRING
    )
    assert outside == []


def test_the_doubles_are_not_exported_by_the_real_clients() -> None:
    import actor_admin.whatsapp
    import actor_admin.yclients

    for name in ("SimulatorCore", "SimulatorTransport", "serve_simulator", "simulator_blueprint"):
        assert not hasattr(actor_admin.whatsapp, name), name
    for name in ("FakeYClients", "Fault", "create_fake_yclients", "make_blueprints", "serve_fake_yclients"):
        assert not hasattr(actor_admin.yclients, name), name


def test_importing_the_whatsapp_package_does_not_load_neonize() -> None:
    # A fresh interpreter: this one may have loaded neonize for another test.
    probe = "import sys, actor_admin.whatsapp; print(sorted(m for m in sys.modules if m.split('.')[0] == 'neonize'))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


# -- the checker itself, on small packages written for the occasion --------------------------------------


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    """Write ``files`` (relative path → source) under ``root/pkg`` and return that directory."""
    package_dir = root / "pkg"
    for relative, source in files.items():
        path = package_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return package_dir


def cycles_of(package_dir: Path) -> list[list[str]]:
    return find_cycles(import_graph(imports_of(package_dir, "pkg")))


def test_a_cycle_through_three_modules_is_found_and_named(tmp_path: Path) -> None:
    package_dir = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b.py": "from pkg.c import thing\n",
            "c.py": "import pkg.a\nthing = 1\n",
            "d.py": "from pkg import a\n",  # imports into the cycle without being part of it
        },
    )
    assert cycles_of(package_dir) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert "pkg.a -> pkg.b -> pkg.c -> pkg.a" in _show(cycles_of(package_dir))


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    package_dir = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "sub/__init__.py": "from ._x import f\n",
            "sub/_x.py": "from .. import top\ndef f(): ...\n",
            "top.py": "from .sub import f\n",
        },
    )
    assert cycles_of(package_dir) == [["pkg.sub", "pkg.sub._x", "pkg.top", "pkg.sub"]]


def test_a_cycle_through_a_function_level_import_is_found_and_the_import_reported(tmp_path: Path) -> None:
    package_dir = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "core.py": "def front():\n    from pkg.front import Front\n    return Front()\n",
            "front.py": "from pkg.core import front\nclass Front: ...\n",
        },
    )
    assert cycles_of(package_dir) == [["pkg.core", "pkg.front", "pkg.core"]]
    hidden = [imp for imp in imports_of(package_dir, "pkg") if imp.in_function]
    assert hidden == [Import("pkg.core", "pkg.front", 2, True)]


def test_a_type_checking_import_counts(tmp_path: Path) -> None:
    package_dir = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
            "b.py": "from pkg.a import A\n",
        },
    )
    assert cycles_of(package_dir) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_importing_a_submodule_runs_its_package_init(tmp_path: Path) -> None:
    package_dir = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "real/__init__.py": "from pkg.real._client import Client\nfrom pkg.fake import Fake\n",
            "real/_client.py": "class Client: ...\n",
            "fake.py": "from pkg.real._client import Client\nclass Fake(Client): ...\n",
        },
    )
    assert cycles_of(package_dir) == [["pkg.fake", "pkg.real", "pkg.fake"]]


def test_a_package_importing_its_own_modules_is_no_cycle(tmp_path: Path) -> None:
    package_dir = write_package(
        tmp_path,
        {
            "__init__.py": "from pkg.area import f\n",
            "area/__init__.py": "from ._one import f\nfrom ._two import g\n",
            "area/_one.py": "from ._two import g\nfrom pkg import other\ndef f(): ...\n",
            "area/_two.py": "import pkg.other\ndef g(): ...\n",
            "other.py": "import json\nfrom typing import Any\n",
        },
    )
    assert cycles_of(package_dir) == []
    assert not any(imp.in_function for imp in imports_of(package_dir, "pkg"))

