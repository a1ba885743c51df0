"""Count the explicit ``Any`` in a source tree, and hold the count to a budget that only goes down.

``make lint`` runs ``python -m tests.tools.count_any actor_admin --budget .any-budget``. A use is
an ``Any`` read as a name or an attribute (``Any``, ``typing.Any``, an ``Any`` imported under
another name), also inside a type written as a string; the ``from typing import Any`` line itself
is not a use.

The budget file holds one number. Above it, lint fails: a new ``Any`` wants a typed seam instead
(docs/architecture.md#typed-seams). Below it, lint fails too, asking for the lower number
(``--update`` writes it): the budget follows the count down and never goes back up.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

_TYPING = ("typing", "typing_extensions")


def _string_types(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """String constants that are types: in annotations, and in subscripts (``Callable[["X"], …]``)."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            roots.append(node.returns)
        elif isinstance(node, ast.Subscript):
            roots.append(node.slice)
    seen: set[int] = set()
    for root in roots:
        for node in ast.walk(root):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in seen:
                seen.add(id(node))
                yield node.lineno, node.value


def _lines(tree: ast.AST, names: frozenset[str], at: int | None = None) -> Iterator[int]:
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id in names) or (
            isinstance(node, ast.Attribute) and node.attr == "Any"
        ):
            yield at or node.lineno
    for line, text in _string_types(tree):
        try:
            inner = ast.parse(text.strip(), mode="eval")
        except SyntaxError:
            continue  # a string that is not a type expression (a Literal's value)
        yield from _lines(inner, names, at or line)


def uses_in(source: str, filename: str = "<source>") -> list[int]:
    """The line of each explicit ``Any`` in ``source``, in order (a line once per use)."""
    tree = ast.parse(source, filename)
    aliases = {
        alias.asname
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in _TYPING
        for alias in node.names
        if alias.name == "Any" and alias.asname
    }
    return sorted(_lines(tree, frozenset({"Any", *aliases})))


def count_tree(root: Path) -> dict[Path, int]:
    """Explicit ``Any`` per ``.py`` file under ``root`` (files without any are left out)."""
    counts: dict[Path, int] = {}
    for path in sorted(root.rglob("*.py")):
        found = len(uses_in(path.read_text(encoding="utf-8"), str(path)))
        if found:
            counts[path] = found
    return counts


def verdict(count: int, budget: int) -> str | None:
    """What is wrong with ``count`` against ``budget``, or None when they are equal."""
    if count > budget:
        return f"{count - budget} explicit Any over the budget of {budget}: type the new code instead"
    if count < budget:
        return f"the count fell to {count}: lower the budget to it (run with --update); it only goes down"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="count_any", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the package directory to count")
    parser.add_argument("--budget", type=Path, required=True, help="the file holding the allowed count")
    parser.add_argument("--update", action="store_true", help="lower the budget to the count (never raises it)")
    parser.add_argument("--files", action="store_true", help="also list the count of each file")
    args = parser.parse_args(argv)
    counts = count_tree(args.root)
    count = sum(counts.values())
    budget = int(args.budget.read_text(encoding="utf-8").strip())
    if args.files:
        for path, found in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            print(f"{found:5d} {path}")
    print(f"explicit Any in {args.root}/: {count} (budget {budget})")
    if args.update and count < budget:
        args.budget.write_text(f"{count}\n", encoding="utf-8")
        print(f"budget lowered to {count}")
        return 0
    problem = verdict(count, budget)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
