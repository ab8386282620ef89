"""The real Terraform for the tofu tests: the shim on PATH and its quiet environment.

A module of its own (not ``conftest``): test files import from it by a name no other folder's
``conftest`` shadows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SHIM_DIR = HERE / "bin"
EXAMPLE = HERE.parent.parent / "examples" / "tofu"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def terraform_environment(config_dir: Path) -> dict[str, str]:
    """The variables a test (or a subprocess) needs for the shim to be a quiet ``terraform``."""
    config = config_dir / "terraform.tfrc"
    config.touch()
    return {
        "PATH": f"{SHIM_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
        "SLUICE_TERRAFORM_PYTHON": sys.executable,
        "TF_CLI_CONFIG_FILE": str(config),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
    }


def tf(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real terraform in ``cwd`` (outside sluice), as a person would."""
    return subprocess.run(
        ["terraform", *args], cwd=cwd, capture_output=True, text=True, check=check, timeout=120
    )
