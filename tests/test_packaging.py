"""The wheel installs one package, ``sluice``, with what the console needs at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("cli", "engine", "tui", "themes")


def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv builds the wheel (.ci/run installs it into the venv)"
    return uv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in FOLDERS:
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    built = subprocess.run(
        [_uv(), "build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = (tmp_path / "dist").glob("sluice-*.whl")
    return path


@pytest.mark.timeout(300)
def test_the_wheel_holds_one_package_with_the_themes_and_the_console_styles(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {name.split("/")[0] for name in names if not name.startswith("sluice-")}
    assert top == {"sluice"}
    themes = {f"sluice/themes/{p.name}" for p in (REPO / "themes").glob("*.toml")}
    styles = {f"sluice/{p.relative_to(REPO)}" for p in (REPO / "tui").rglob("*.tcss")}
    assert len(themes) >= 3 and styles
    assert (
        themes
        | styles
        | {
            "sluice/themes/__init__.py",
            "sluice/cli/__init__.py",
            "sluice/engine/rollout/orchestrator.py",
            "sluice/tui/app.py",
        }
        <= names
    )
    assert not [name for name in names if "screenshot" in name]  # a dev script, not the product


@pytest.mark.timeout(300)
def test_after_install_only_sluice_imports(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([_uv(), "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [_uv(), "pip", "install", "-q", "-p", str(python), "--no-deps", str(wheel)],
        check=True,
        timeout=120,
    )
    probe = (
        "import importlib.util as u, sluice.cli, sluice.engine;"
        "print([n for n in ('engine', 'tui', 'themes', 'cli') if u.find_spec(n)])"
    )
    done = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_pyproject_lists_every_package_folder() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {
        "sluice." + ".".join(init.parent.relative_to(REPO).parts)
        for root in FOLDERS
        for init in (REPO / root).rglob("__init__.py")
    }
    assert set(config["packages"]) == folders
    assert {f"sluice.{f}": f for f in FOLDERS} == config["package-dir"]
