"""The explicit-``Any`` counter that ``make lint`` runs, on sources written for the occasion."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.count_any import count_tree, main, uses_in, verdict


def test_a_name_an_attribute_and_a_renamed_import_each_count() -> None:
    source = (
        "import typing\n"
        "from typing import Any\n"
        "from typing import Any as Whatever\n"
        "a: Any = 1\n"
        "b: typing.Any = 2\n"
        "def f(x: dict[str, Whatever]) -> list[Any]: ...\n"
    )
    assert uses_in(source) == [4, 5, 6, 6]


def test_the_import_line_prose_and_other_strings_do_not_count() -> None:
    source = (
        "from typing import Any, Literal\n"
        '"""Any other company is left alone."""\n'
        "# Any comment\n"
        "greeting = 'Any'\n"
        "mode: Literal['Any thing', 'x'] = 'x'\n"
    )
    assert uses_in(source) == []


def test_a_type_written_as_a_string_counts_on_its_line() -> None:
    source = (
        "from typing import Any, Callable\n"
        "Handler = Callable[['Fake', 'dict[str, Any]'], None]\n"
        "def f(x: 'Mapping[str, Any] | None') -> None: ...\n"
    )
    assert uses_in(source) == [2, 3]


@pytest.mark.parametrize(
    ("count", "budget", "says"),
    [(5, 5, None), (6, 5, "1 explicit Any over the budget of 5"), (4, 5, "lower the budget")],
)
def test_the_verdict_holds_the_count_to_the_budget_both_ways(count: int, budget: int, says: str | None) -> None:
    problem = verdict(count, budget)
    assert (problem is None) if says is None else (problem is not None and says in problem)


def _tree(tmp_path: Path, budget: int) -> tuple[Path, Path]:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("from typing import Any\nx: Any\ny: list[Any]\n")
    (package / "sub" / "b.py").write_text("import typing\nz: typing.Any\n")
    (package / "c.py").write_text("w: int\n")
    budget_file = tmp_path / ".any-budget"
    budget_file.write_text(f"{budget}\n")
    return package, budget_file


def test_a_tree_is_counted_file_by_file(tmp_path: Path) -> None:
    package, _ = _tree(tmp_path, 3)
    assert count_tree(package) == {package / "a.py": 2, package / "sub" / "b.py": 1}


def test_lint_fails_over_the_budget_and_passes_at_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    package, budget_file = _tree(tmp_path, 2)
    assert main([str(package), "--budget", str(budget_file)]) == 1
    budget_file.write_text("3\n")
    assert main([str(package), "--budget", str(budget_file)]) == 0
    assert "explicit Any in" in capsys.readouterr().out


def test_update_lowers_the_budget_but_never_raises_it(tmp_path: Path) -> None:
    package, budget_file = _tree(tmp_path, 7)
    assert main([str(package), "--budget", str(budget_file)]) == 1
    assert main([str(package), "--budget", str(budget_file), "--update"]) == 0
    assert budget_file.read_text().strip() == "3"
    budget_file.write_text("1\n")
    assert main([str(package), "--budget", str(budget_file), "--update"]) == 1
    assert budget_file.read_text().strip() == "1"
