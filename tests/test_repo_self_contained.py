"""The repository explains itself: nothing in it points at documents that are not in it, and every
``docs/…md#section`` it cites exists (docs/README.md).

Scans every text file of the checkout (not ``.git``, ``.venv``, caches or generated data).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()

SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".venv",
        ".data",
        ".bench",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "__pycache__",
        "node_modules",
        "build",
        "dist",
        "artifacts",
    }
)
MAX_BYTES = 2_000_000

# Citations of documents that live outside this repository (the product brief, its reference notes,
# the seed guide) or of issue numbers in a tracker the repository does not carry.
OUTSIDE_CITATIONS = {
    "the brief": re.compile(r"\bSPEC\b"),
    "the brief's folder": re.compile(r"\.\./shared|\bshared/(?:seed|reference)\b"),
    "the brief's reference notes": re.compile(r"(?<![\w.-])reference/|\breference §"),
    "the trio notes": re.compile(r"trio-stack"),
    "an issue": re.compile(r"\bFoundation issue\b|\bissues?\s+#?\d+\b", re.IGNORECASE),
    "the seed guide": re.compile(r"\bseed guide\b|troubleshooting-guide", re.IGNORECASE),
}

# Lines that must stay as they are: an applied migration never changes, because ``migrate`` refuses a
# file whose checksum differs from the one recorded when it was applied (docs/commands-and-settings.md#migrate).
FROZEN_LINES = {("sql/001_initial.sql", "-- 001_initial: the system of record of actor-admin (SPEC §7).")}

# ``docs/x.md`` or ``docs/x.md#anchor`` anywhere (code, comments, docs).
DOCS_CITATION = re.compile(r"(?<![\w/.-])docs/([\w-]+(?:/[\w-]+)*\.md)(?:#([\w-]+))?")
# ``[text](target)`` in Markdown.
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def text_files(root: Path = ROOT) -> Iterator[Path]:
    """Every file of the checkout that reads as UTF-8 text, except generated and vendored trees."""
    for path in sorted(root.iterdir()):
        if path.is_dir():
            if path.name in SKIPPED_DIRS or path.name.endswith(".egg-info") or path.is_symlink():
                continue
            yield from text_files(path)
        elif path.is_file() and path.stat().st_size <= MAX_BYTES:
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            yield path


def outside_citations(text: str) -> list[tuple[int, str, str]]:
    """``(line number, what, line)`` for each line that cites something outside the repository."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in OUTSIDE_CITATIONS.items():
            if pattern.search(line):
                found.append((number, what, line.strip()))
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces → ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown text, with GitHub's ``-1``, ``-2`` … for repeats."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_references(path: Path, text: str, root: Path = ROOT) -> list[str]:
    """Cited docs files or sections that do not exist, and (in Markdown) broken relative links."""
    problems = []
    cache: dict[Path, set[str]] = {}

    def check(target: Path, anchor: str | None, shown: str) -> None:
        if not target.is_file():
            problems.append(f"{shown}: no such file")
            return
        if anchor and target.suffix == ".md":
            if target not in cache:
                cache[target] = anchors(target.read_text(encoding="utf-8"))
            if anchor not in cache[target]:
                problems.append(f"{shown}: no section #{anchor} in {target.relative_to(root)}")

    for match in DOCS_CITATION.finditer(text):
        check(root / "docs" / match.group(1), match.group(2), match.group(0))
    if path.suffix == ".md":
        for match in MARKDOWN_LINK.finditer(text):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: …
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            if root not in resolved.parents and resolved != root:
                problems.append(f"{target}: points outside the repository")
                continue
            check(resolved, anchor or None, target)
    return problems


# -- the checks themselves can fail ---------------------------------------------------------------------


def test_outside_citations_are_recognised() -> None:
    cited = "\n".join(
        [
            "# See SPEC §4 for the frames.",
            "as the SPEC says",
            "(reference §5)",
            '"""As ../shared/ARCHITECTURE.md says."""',
            "(reference/yclients-marketplace.md §2)",
            "Order matters (trio-stack.md).",
            "defaults from the Foundation issue",
            "answer in under 50 ms (issue 7)",
            "see issue #12",
            "the seed guide's checklist",
        ]
    )
    assert [number for number, _, _ in outside_citations(cited)] == list(range(1, 11))
    clean = "DOCUMENTED_STATES = ()\ndereference/x\ndocs/http-api.md#webhook\nQR issue → viewer latency\ncolor: #000"
    assert outside_citations(clean) == []


def test_missing_docs_sections_are_recognised(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## The `x` route (v2)\n\n```\n## not a heading\n```\n## A\n")
    assert anchors((tmp_path / "docs" / "a.md").read_text()) == {"a", "the-x-route-v2", "a-1"}
    code = tmp_path / "x.py"
    text = "# docs/a.md#the-x-route-v2 docs/a.md#gone docs/missing.md docs/a.md#not-a-heading"
    assert broken_references(code, text, root=tmp_path) == [
        "docs/a.md#gone: no section #gone in docs/a.md",
        "docs/missing.md: no such file",
        "docs/a.md#not-a-heading: no section #not-a-heading in docs/a.md",
    ]
    page = tmp_path / "docs" / "b.md"
    links = "[ok](a.md#a-1) [bad](a.md#nope) [self](#nothing) [web](https://example.com/x#y) [out](../../etc.md)"
    page.write_text("# B\n\n" + links + "\n")
    assert broken_references(page, links, root=tmp_path) == [
        "a.md#nope: no section #nope in docs/a.md",
        "#nothing: no section #nothing in docs/b.md",
        "../../etc.md: points outside the repository",
    ]


# -- the repository ------------------------------------------------------------------------------------


def test_the_scan_sees_the_code_the_docs_and_the_pages() -> None:
    scanned = {path.relative_to(ROOT).as_posix() for path in text_files()}
    for expected in ("actor_admin/node.py", "docs/README.md", "web/onboarding.js", "sql/001_initial.sql", "README.md"):
        assert expected in scanned


def test_no_file_cites_a_document_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {what}: {line}"
        for path in text_files()
        if path != THIS
        for number, what, line in outside_citations(path.read_text(encoding="utf-8"))
        if (path.relative_to(ROOT).as_posix(), line) not in FROZEN_LINES
    ]
    assert found == [], "cite the docs/ section that says it instead:\n" + "\n".join(found)


@pytest.mark.parametrize("folder", ["docs", "README.md", "actor_admin", "tests", "ops", "web", "sql"])
def test_every_cited_docs_section_exists(folder: str) -> None:
    base = ROOT / folder
    paths = [base] if base.is_file() else list(text_files(base))
    problems = [
        f"{path.relative_to(ROOT)}: {problem}"
        for path in paths
        if path != THIS
        for problem in broken_references(path, path.read_text(encoding="utf-8"))
    ]
    assert problems == [], "\n".join(problems)
