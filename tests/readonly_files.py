"""Making a real file or directory unwritable for the tests (root ignores modes: chattr +i)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@contextlib.contextmanager
def unwritable(*paths: Path) -> Iterator[None]:
    """``paths`` cannot be written while inside: mode 0400/0500, and immutable when root."""
    modes = {p: p.stat().st_mode & 0o7777 for p in paths}
    for path in paths:
        path.chmod(0o500 if path.is_dir() else 0o400)
    immutable = os.geteuid() == 0
    if immutable:
        if shutil.which("chattr") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("chattr is needed to make a file unwritable for root")
            pytest.skip("root without chattr: cannot make a file unwritable")
        _chattr("+i", *paths)
    try:
        yield
    finally:
        if immutable:
            _chattr("-i", *paths)
        for path, mode in modes.items():
            path.chmod(mode)
