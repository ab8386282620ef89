"""The wheel carries what the console needs at run time, not only the source tree does."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_the_wheel_carries_the_themes_and_the_console_styles(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("engine", "tui", "themes"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv builds the wheel (.ci/run installs it into the venv)"
    built = subprocess.run(
        [uv, "build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("sluice-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    themes = {f"themes/{p.name}" for p in (REPO / "themes").glob("*.toml")}
    styles = {str(p.relative_to(REPO)) for p in (REPO / "tui").rglob("*.tcss")}
    assert len(themes) >= 3 and styles
    assert themes | styles | {"themes/__init__.py", "engine/cli.py", "tui/app.py"} <= names
    assert not any(name.startswith("tests/") for name in names)
