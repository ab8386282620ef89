"""An estate file that is not UTF-8 is located to its line and column (issue 12, item 8):
`sluice check` in a real process, on a real file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", "check", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_invalid_utf8_names_file_line_and_column(tmp_path: Path) -> None:
    estate = tmp_path / "b.toml"
    estate.write_bytes(b'[estate]\nname = "caf\xff"\n')
    done = _check(estate)
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # one clear line, no traceback
    assert lines[0].startswith(f"{estate}:2:12: "), lines[0]
    assert "not valid UTF-8" in lines[0] and "0xff" in lines[0], lines[0]


def test_invalid_utf8_on_a_later_line_after_multibyte_text(tmp_path: Path) -> None:
    estate = tmp_path / "c.toml"
    # "é" is two bytes: the column counts characters, as an editor shows them.
    estate.write_bytes('[estate]\nname = "é"\n# ok\n'.encode() + b"x = \xc3\x28\n")
    done = _check(estate)
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [
        f"{estate}:4:5: cannot read the estate file: not valid UTF-8 (byte 0xc3)"
    ], done.stderr
