"""An installed package serves its pages and migrates without the checkout: the wheel carries them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from actor_admin import _resources

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (out / "build.log").write_text(build.stdout + build.stderr)
    (built,) = out.glob("actor_admin-*.whl")
    return built


def test_the_build_prints_no_deprecation_warning(wheel: Path) -> None:
    log = (wheel.parent / "build.log").read_text()
    assert "deprecated" not in log.lower(), log  # e.g. setuptools' "project.license as a TOML table"


def test_the_wheel_carries_every_page_and_migration(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    data = [n for n in names if ".data/data/share/actor-admin/" in n]
    pages = {Path(n).name for n in data if "/web/" in n}
    migrations = {Path(n).name for n in data if "/sql/" in n}
    assert {p.name for p in (ROOT / "web").iterdir() if p.suffix in {".html", ".js", ".css", ".json", ".svg"}} <= pages
    vendored = {Path(n).name for n in data if "/web/vendor/" in n}
    assert {p.name for p in (ROOT / "web" / "vendor").iterdir()} == vendored  # the QR encoder, its pin, its licence
    assert {p.name for p in (ROOT / "sql").glob("*.sql")} == migrations
    assert any(n.startswith("actor_admin/api/") for n in names)


def test_an_installed_layout_is_found_without_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = tmp_path / "venv"
    (prefix / "share" / "actor-admin" / "web").mkdir(parents=True)
    (prefix / "share" / "actor-admin" / "sql").mkdir(parents=True)
    monkeypatch.setattr(_resources, "_PACKAGE_DIR", tmp_path / "site-packages" / "actor_admin")
    monkeypatch.setattr(sys, "prefix", str(prefix))
    assert _resources.web_dir() == prefix / "share" / "actor-admin" / "web"
    assert _resources.sql_dir() == prefix / "share" / "actor-admin" / "sql"


def test_a_missing_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_resources, "_PACKAGE_DIR", tmp_path / "nowhere" / "actor_admin")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "empty-prefix"))
    monkeypatch.setattr(_resources.sysconfig, "get_path", lambda name: str(tmp_path / "empty-data"))
    with pytest.raises(FileNotFoundError, match="web/ folder is missing"):
        _resources.web_dir()
