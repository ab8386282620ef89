"""The layers are a contract: `lint-imports` keeps them, and reports an import that breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("cli", "engine", "tui", "themes")


def _lint(root: Path, config: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [str(lint), "--config", str(config), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        timeout=100,
    )


def _copy(tmp_path: Path) -> Path:
    """The package laid out as the wheel installs it, first on the path: the copy is linted."""
    for folder in FOLDERS:
        shutil.copytree(
            REPO / folder,
            tmp_path / "sluice" / folder,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.timeout(120)
def test_the_tree_keeps_its_contracts(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    result = _lint(root, root / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("engine/model/units.py", "import sluice.engine.store.history", "Layers, top to bottom"),
        ("engine/rollout/state.py", "import textual", "The engine never imports the console"),
        ("tui/views.py", "import sluice.cli.commands", "Layers, top to bottom"),
        ("engine/store/replay.py", "import rich", "Below the application, no rich"),
    ],
)
def test_a_bad_import_is_reported(tmp_path: Path, module: str, line: str, contract: str) -> None:
    root = _copy(tmp_path)
    path = root / "sluice" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = _lint(root, root / "pyproject.toml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout
    assert "Contracts: 2 kept, 1 broken." in result.stdout
    offender = "sluice." + module.removesuffix(".py").replace("/", ".")
    assert offender in result.stdout  # the report names where the bad import is
