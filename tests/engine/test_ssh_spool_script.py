"""The remote spooling script (executors.ssh_spool) run by the local /bin/sh, as sshd would run
it: as a session leader (the wrapper itself), not one (``setsid`` makes it one), and on a host
with no ``setsid`` (attached, with one line saying so); its output sent once at the end, or
streamed live once asked (by the stream request, a second shell as sshd would run a second
session) — never both, never neither, however the request and the end race; and the stream
demultiplexer."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from sluice.engine.executors.ssh_spool import STREAM, Demux, spooled

COMMAND = "echo out; echo err >&2; echo; echo more; exit 5"
NONCE = "0123abcd"


def run(
    base: Path, *, leader: bool, path: str | None = None, command: str = COMMAND
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    return subprocess.run(
        ["/bin/sh", "-c", spooled(""), "sluice", str(base), command, NONCE],
        capture_output=True, text=True, start_new_session=leader, env=env, timeout=30,
    )  # fmt: skip


def demuxed(base: Path, stdout: str) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    demux = Demux(str(base), lambda stream, line: got.append((stream, line)))
    for line in stdout.splitlines():
        demux(line)
    demux.close()
    return got


def streamed(base: Path, command: str, request_after: float) -> tuple[int, str, str, int]:
    """Run the wrapper as sshd would (a session leader, its stdout a pipe), make the stream
    request after ``request_after`` seconds (a second shell, as a control session), and return
    the wrapper's exit status, stdout and stderr, and the request's exit status."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", spooled(""), "sluice", str(base), command, NONCE],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + request_after
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)  # a deadline to race the end against, not a synchronisation
    request = subprocess.run(
        ["/bin/sh", "-c", STREAM, "sluice", str(base), NONCE],
        capture_output=True, text=True, start_new_session=True, timeout=30,
    )  # fmt: skip
    assert request.stdout == "" and request.stderr == ""  # the tail holds none of its pipes
    # Reaped as it ends, as sshd does (the tail ends after the wrapper, read all the same).
    reaper = threading.Thread(target=proc.wait, daemon=True)
    reaper.start()
    out, err = proc.stdout.read(), proc.stderr.read()
    reaper.join(timeout=30)
    return proc.wait(timeout=30), out, err, request.returncode


def test_a_quick_apply_sends_its_output_once_at_its_end_on_both_streams(tmp_path: Path) -> None:
    base = tmp_path / "spool" / "t.1"
    done = run(base, leader=True)
    assert done.returncode == 5
    assert done.stdout == "out\n\nmore\n" and done.stderr == "err\n"  # no tail headers
    assert Path(f"{base}.status").read_text() == "5\n"
    assert Path(f"{base}.log").read_text() == "out\n\nmore\n"
    assert oct(base.parent.stat().st_mode & 0o777) == "0o700"


def test_a_quick_apply_starts_no_program_but_cat_and_none_if_quiet(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with only sh (and cat): a tail would not be found
    bin_dir.mkdir()
    base = tmp_path / "spool" / "t.1"
    base.parent.mkdir(mode=0o700)  # the rollout's directory exists after its first apply
    (bin_dir / "sh").symlink_to(str(shutil.which("sh")))
    quiet = run(base, leader=True, path=str(bin_dir), command="true")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    (bin_dir / "cat").symlink_to(str(shutil.which("cat")))
    loud = run(tmp_path / "spool" / "t.2", leader=True, path=str(bin_dir))
    assert (loud.returncode, loud.stdout, loud.stderr) == (5, "out\n\nmore\n", "err\n")


def test_a_longer_apply_once_asked_streams_live_through_one_tail(tmp_path: Path) -> None:
    base = tmp_path / "spool" / "t.1"
    command = "echo out; echo err >&2; sleep 0.5; echo more; exit 3"
    code, out, err, asked = streamed(base, command, request_after=0.2)
    assert (code, err, asked) == (3, "", 0)
    got = demuxed(base, out)
    assert [line for s, line in got if s == "stdout"] == ["out", "more"]
    assert [line for s, line in got if s == "stderr"] == ["err"]
    assert out.startswith("==> ")  # the tail's headers: streamed live, not sent at the end


@pytest.mark.timeout(120)
def test_the_request_racing_the_end_gives_every_line_exactly_once(tmp_path: Path) -> None:
    # Half the lines, a pause (the request can come mid-apply), the rest.
    command = (
        "i=0; while [ $i -lt 40 ]; do echo o$i; echo e$i >&2; i=$((i+1)); "
        "if [ $i = 20 ]; then sleep 0.05; fi; done"
    )
    want_out = [f"o{i}" for i in range(40)]
    want_err = [f"e{i}" for i in range(40)]
    ways = set()
    for n in range(60):  # requests from before the command starts to after it has ended
        base = tmp_path / "spool" / f"t.{n}"
        code, out, err, _ = streamed(base, command, request_after=n * 0.002)
        got = demuxed(base, out) + [("stderr", line) for line in err.splitlines()]
        assert code == 0
        assert [line for s, line in got if s == "stdout"] == want_out, n
        assert [line for s, line in got if s == "stderr"] == want_err, n
        ways.add("live" if out.startswith("==> ") else "end")
    assert ways == {"live", "end"}  # both ways were taken, so the race was run


def test_not_a_session_leader_setsid_makes_it_one(tmp_path: Path) -> None:
    base = tmp_path / "spool" / "t.1"
    done = run(base, leader=False)
    assert (done.returncode, done.stdout, done.stderr) == (5, "out\n\nmore\n", "err\n")
    assert Path(f"{base}.status").read_text() == "5\n"
    pgid = int(Path(f"{base}.pid").read_text().split()[0])  # then the command subshell's
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


def test_a_base_used_again_starts_fresh(tmp_path: Path) -> None:
    # A history started again numbers its rollouts anew, so an apply can meet an earlier
    # one's files on the host: its output is its own, sent in full, and its status is not the
    # earlier one's while it runs.
    base = tmp_path / "spool" / "t.1"
    first = run(base, leader=True)
    assert first.stdout == "out\n\nmore\n"
    again = run(base, leader=True, command="echo second")
    assert (again.returncode, again.stdout, again.stderr) == (0, "second\n", "")
    assert Path(f"{base}.log").read_text() == "second\n"
    assert Path(f"{base}.err").read_text() == ""
    assert Path(f"{base}.status").read_text() == "0\n"


def test_a_stream_request_never_takes_an_earlier_apply_for_its_own(tmp_path: Path) -> None:
    # The base holds an earlier launch's files (another nonce): the request waits for its own
    # launch's wrapper, and gives up (exit 3) when it never comes, streaming nothing.
    base = tmp_path / "spool" / "t.1"
    assert run(base, leader=True).returncode == 5
    request = subprocess.run(
        ["/bin/sh", "-c", STREAM, "sluice", str(base), "another"],
        capture_output=True, text=True, start_new_session=True, timeout=30,
    )  # fmt: skip
    assert (request.returncode, request.stdout, request.stderr) == (3, "", "")
    assert Path(f"{base}.status").read_text() == "5\n"  # the earlier apply's end, untouched


def test_a_stream_request_after_the_end_leaves_the_output_to_the_end(tmp_path: Path) -> None:
    base = tmp_path / "spool" / "t.1"
    done = run(base, leader=True)
    assert done.stdout == "out\n\nmore\n"  # sent at the end, by the wrapper
    request = subprocess.run(
        ["/bin/sh", "-c", STREAM, "sluice", str(base), NONCE],
        capture_output=True, text=True, start_new_session=True, timeout=30,
    )  # fmt: skip
    assert (request.returncode, request.stdout, request.stderr) == (4, "", "")  # it has ended
