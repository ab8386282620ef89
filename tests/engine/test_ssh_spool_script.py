"""The remote spooling script (executors.ssh_spool) run by the local /bin/sh, as sshd would run
it: as a session leader (the wrapper itself), not one (``setsid`` makes it one), and on a host
with no ``setsid`` (attached, with one line saying so); and the stream demultiplexer."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sluice.engine.executors.ssh_spool import Demux, spooled

COMMAND = "echo out; echo err >&2; echo; echo more; exit 5"


def run(base: Path, *, leader: bool, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    return subprocess.run(
        ["/bin/sh", "-c", spooled(""), "sluice", str(base), COMMAND],
        capture_output=True, text=True, start_new_session=leader, env=env, timeout=30,
    )  # fmt: skip


def demuxed(base: Path, stdout: str) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    demux = Demux(str(base), lambda stream, line: got.append((stream, line)))
    for line in stdout.splitlines():
        demux(line)
    demux.close()
    return got


def test_a_session_leader_is_the_wrapper_and_streams_both_files(tmp_path: Path) -> None:
    base = tmp_path / "spool" / "t.1"
    done = run(base, leader=True)
    assert done.returncode == 5 and done.stderr == ""
    got = demuxed(base, done.stdout)
    assert [line for s, line in got if s == "stdout"] == ["out", "", "more"]
    assert [line for s, line in got if s == "stderr"] == ["err"]
    assert Path(f"{base}.status").read_text() == "5\n"
    assert Path(f"{base}.log").read_text() == "out\n\nmore\n"
    assert oct(base.parent.stat().st_mode & 0o777) == "0o700"


def test_not_a_session_leader_setsid_makes_it_one(tmp_path: Path) -> None:
    base = tmp_path / "spool" / "t.1"
    done = run(base, leader=False)
    assert done.returncode == 5 and done.stderr == ""
    assert Path(f"{base}.status").read_text() == "5\n"
    pgid = int(Path(f"{base}.pid").read_text())
    assert pgid != os.getpgid(0)  # its own process group, not the caller's


def test_a_host_without_setsid_runs_it_attached_and_says_so(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "uname"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    base = tmp_path / "spool" / "t.1"
    done = run(base, leader=False, path=str(bin_dir))
    assert done.returncode == 5
    assert "has no setsid: this apply runs attached" in done.stderr
    assert demuxed(base, done.stdout) == [("stdout", "out"), ("stdout", ""), ("stdout", "more")]
    assert not Path(f"{base}.status").exists()


def test_the_demultiplexer_keeps_blank_lines_and_lines_like_headers() -> None:
    base = "~/.sluice/applies/e/1/t.1"
    stream = [
        "==> /home/u/.sluice/applies/e/1/t.1.log <==", "", "==> /home/u/.sluice/applies/e/1/t.1.err <==",
        "", "==> /home/u/.sluice/applies/e/1/t.1.log <==", "a", "", "", "==> x.log <==",
        "", "==> /home/u/.sluice/applies/e/1/t.1.err <==", "oops", "",
        "==> /home/u/.sluice/applies/e/1/t.1.log <==", "b",
    ]  # fmt: skip
    got: list[tuple[str, str]] = []
    demux = Demux(base, lambda s, line: got.append((s, line)))
    for line in stream:
        demux(line)
    demux.close()
    assert got == [
        ("stdout", "a"), ("stdout", ""), ("stdout", ""), ("stdout", "==> x.log <=="),
        ("stderr", "oops"), ("stdout", "b"),
    ]  # fmt: skip
