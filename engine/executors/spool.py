"""Applies that outlive their driver: a spool file for the output, a status file for the end.

An apply does not write into a pipe to sluice (a killed sluice would turn its next write into a
SIGPIPE, mid-apply): it runs in a session of its own with stdout and stderr appended to spool
files, under a tiny ``/bin/sh`` wrapper that writes the command's exit status atomically to a
status file when it ends. sluice tails the spool files and streams them as lines; a sluice that
was killed finds, on resume, either the apply still running (its marker, see
:mod:`sluice.engine.executors.orphans`) or its status, and records the real outcome without
running it again.

One apply's files, ``<dir>/<target>.<attempt>.*`` (mode 0600, the directory 0700): ``.log``
(stdout), ``.err`` (stderr), ``.status`` (the exit code, a decimal line); and one line of the
rollout's journal, ``<dir>/jobs.ndjson`` (JSON: what was started — written *before* the apply is
recorded as started, so the newest attempt of a target with an unknown outcome is always that
apply's). Spools from before the journal hold a ``<target>.<attempt>.job`` file instead; they are
read the same way. The spool holds the raw output:
secrets are masked in everything sluice records or shows, not in these files.

The API the local, ssh and tofu executors share: :class:`SpoolDir` (claim / latest),
:data:`WRAPPER` (the status-writing wrapper), :func:`start_detached`, :func:`follow` (tail until
an end), :func:`read_status`, :func:`stop_group` (signal, grace, SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sluice.engine.executors.base import ApplyResult, OutputSink
from sluice.engine.executors.signals import defaults_for_applies

if TYPE_CHECKING:
    from sluice.engine.model.estate import Estate

#: A line longer than this is streamed in pieces of this many bytes (never dropped).
MAX_LINE_BYTES = 65536
#: Reads per look at a spool file, so one busy apply cannot starve the event loop.
READ_CHUNK = 1 << 20
#: Tail polling: quick after output, backing off to ``POLL_MAX`` while the apply is silent.
POLL_MIN, POLL_MAX = 0.005, 0.05
TAIL_LINES = 3

#: ``/bin/sh -c WRAPPER sluice-apply COMMAND STATUS_FILE [PID_FILE]``: runs COMMAND in the foreground (so it
#: keeps default signal dispositions: an async list in sh would ignore SIGINT), traps the stop
#: signals for itself only (a trap, not an ignore, is reset in the child), then writes the exit
#: status in one write: a reader takes a status only once its line is whole (:func:`read_status`). Its own
#: stderr is /dev/null (dash reports a child's death by a signal there: not the apply's output),
#: the command's is the spool's (set inside the child: dash would report to a redirected fd 2).
WRAPPER = (
    'trap : TERM INT HUP; [ -z "$3" ] || echo $$ > "$3"; exec 3>&2 2>/dev/null; '
    '/bin/sh -c "exec 2>&3 3>&-\n$1"; c=$?; umask 077; printf "%s\\n" "$c" > "$2"; exit "$c"'
)


class Spool:
    """The files of one apply: ``base`` + ``.log`` / ``.err`` / ``.status`` (and, from before
    the rollout's journal, ``.job``); ``info``: its journal line, if it has one."""

    def __init__(self, base: Path, info: Mapping[str, Any] | None = None):
        self.base = base
        self.job = base.with_name(base.name + ".job")
        self.out = base.with_name(base.name + ".log")
        self.err = base.with_name(base.name + ".err")
        self.status = base.with_name(base.name + ".status")
        self._info = dict(info) if info is not None else None

    @property
    def attempt(self) -> int:
        return int(self.base.name.rsplit(".", 1)[1])

    @property
    def claimed(self) -> bool:
        """Whether sluice recorded starting this attempt (its journal line or ``.job``)."""
        return self._info is not None or self.job.exists()

    def info(self) -> dict[str, Any]:
        """What was started (empty if unreadable)."""
        if self._info is not None:
            return dict(self._info)
        try:
            data = json.loads(self.job.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def open_outputs(self) -> tuple[int, int]:
        """File descriptors (append, 0600) for the apply's stdout and stderr."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        return os.open(self.out, flags, 0o600), os.open(self.err, flags, 0o600)

    def last_lines(self, count: int = TAIL_LINES) -> list[str]:
        """The last non-blank lines of stdout then stderr (for a reason line)."""
        lines: list[str] = []
        for path in (self.out, self.err):
            lines += [line for line in _tail_text(path).splitlines() if line.strip()]
        return lines[-count:]


def _tail_text(path: Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - size))
            return file.read().decode("utf-8", "replace")
    except OSError:
        return ""


def spool_root(estate: Estate) -> Path:
    """Where an estate's spool files live: ``applies/`` beside its history."""
    return estate.history_path.parent / "applies"


def rollout_spool_dir(estate: Estate, rollout_id: int) -> Path:
    return spool_root(estate) / str(rollout_id)


def file_name(target: str) -> str:
    """``target`` as one safe path component."""
    return quote(target, safe="-_@+=,")


#: A rollout's journal of started attempts, in its spool directory: one JSON line each.
JOURNAL = "jobs.ndjson"


class SpoolDir:
    """The spool directory of one rollout; numbers each target's attempts, and journals them
    (one line appended each: no file to create per apply)."""

    def __init__(self, path: Path):
        self.path = path
        self._last: dict[str, int] | None = None

    def _entries(self) -> dict[str, tuple[int, dict[str, Any] | None]]:
        """Each target's (file name's) newest attempt: its number and journal line (None: a
        ``.job`` file's, from before the journal)."""
        newest: dict[str, tuple[int, dict[str, Any] | None]] = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.path):
                stem, dot, suffix = entry.name.rpartition(".")
                name, dot2, number = stem.rpartition(".")
                old = suffix == "job" and dot and dot2 and number.isdigit()
                if old and int(number) > newest.get(name, (0, None))[0]:
                    newest[name] = (int(number), None)
        try:
            with open(self.path / JOURNAL, encoding="utf-8", errors="replace") as journal:
                lines = journal.read().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                info = json.loads(line)
                name, _, number = str(info.pop("spool")).rpartition(".")
            except (ValueError, KeyError, AttributeError):
                continue  # a line cut short by a crash mid-write: that start was never recorded
            if number.isdigit() and int(number) >= newest.get(name, (0, None))[0]:
                newest[name] = (int(number), info)
        return newest

    def claim(self, target: str, info: Mapping[str, Any]) -> Spool:
        """A new attempt's spool for ``target``, its journal line written (call before recording
        the apply as started, so a recorded start always has its line)."""
        if self._last is None:
            self.path.parent.parent.mkdir(parents=True, exist_ok=True)
            for directory in (self.path.parent, self.path):  # private: raw output, 0700
                directory.mkdir(exist_ok=True, mode=0o700)
            self._last = {name: number for name, (number, _) in self._entries().items()}
        name = file_name(target)
        number = self._last.get(name, 0) + 1
        spool = Spool(self.path / f"{name}.{number}", info)
        line = json.dumps({"spool": spool.base.name, **info}) + "\n"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(self.path / JOURNAL, flags, 0o600)
        try:
            os.write(fd, line.encode())  # one write: lines of concurrent claims never interleave
        finally:
            os.close(fd)
        self._last[name] = number
        return spool

    def latest(self, target: str) -> Spool | None:
        """The newest attempt's spool of ``target`` in this rollout, if any."""
        name = file_name(target)
        found = self._entries().get(name)
        if found is None:
            return None
        number, info = found
        return Spool(self.path / f"{name}.{number}", info)


def read_status(spool: Spool) -> int | None:
    """The exit code the wrapper wrote, or None while there is none."""
    try:
        text = spool.status.read_text()
    except OSError:
        return None
    if not text.endswith("\n"):  # being written (one write, but opened before it)
        return None
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def result_of(code: int, spool: Spool, tail: list[str] | None = None) -> ApplyResult:
    """The :class:`ApplyResult` of an exit code (a shell's 128+N is "killed by signal N")."""
    if code == 0:
        return ApplyResult(True, "", 0)
    lines = tail if tail is not None else spool.last_lines()
    detail = " | ".join(lines) if lines else "no output"
    if code > 128 and code - 128 in signal.valid_signals():  # what a shell makes of a signal
        what = f"killed by signal {code - 128}"
    elif code < 0:
        what = f"killed by signal {-code}"
    else:
        what = f"exit {code}"
    return ApplyResult(False, f"{what}: {detail}", code)


async def start_detached(
    command: str, spool: Spool, *, cwd: Path, env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    """Start ``command`` (a shell command line) under :data:`WRAPPER` in a session of its own,
    its output appended to ``spool``; raises OSError if it cannot start."""
    defaults_for_applies()
    out, err = spool.open_outputs()
    try:
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                WRAPPER,
                "sluice-apply",
                command,
                str(spool.status),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
            )
        )
        try:
            # Shielded: a cancel that lands mid-spawn must not lose the process (the caller
            # stops it: it has no pipes, so nothing waits on them).
            return await asyncio.shield(spawn)
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                process = await spawn
                await stop_group(process.pid, signal.SIGTERM, 0.0, lambda: False)
            raise
    finally:
        os.close(out)
        os.close(err)


class LineSplitter:
    """Bytes → lines for ``output(stream, line)``: no trailing newline, a line longer than
    :data:`MAX_LINE_BYTES` streamed in pieces (cut on a UTF-8 character boundary)."""

    def __init__(self, stream: str, output: OutputSink, tail: deque[str]):
        self.stream = stream
        self.output = output
        self.tail = tail
        self._partial = b""

    def feed(self, data: bytes) -> None:
        parts = (self._partial + data).split(b"\n")
        rest = parts.pop()
        for raw in parts:
            if len(raw) > MAX_LINE_BYTES:
                raw = self._pieces(raw)
            self._emit(raw)
        self._partial = self._pieces(rest) if len(rest) > MAX_LINE_BYTES else rest

    def _pieces(self, raw: bytes) -> bytes:
        """Emit ``raw`` in pieces of at most MAX_LINE_BYTES; return the (short) remainder."""
        while len(raw) > MAX_LINE_BYTES:
            cut = MAX_LINE_BYTES
            while cut > MAX_LINE_BYTES - 4 and raw[cut] & 0xC0 == 0x80:
                cut -= 1  # not inside a character
            self._emit(raw[:cut])
            raw = raw[cut:]
        return raw

    def close(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = b""

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if line.strip():
            self.tail.append(line)
        self.output(self.stream, line)


class SpoolTail:
    """Reads what was appended to one spool file since the last look."""

    def __init__(self, path: Path, splitter: LineSplitter, offset: int = 0):
        self.path = path
        self.splitter = splitter
        self.offset = offset

    def read(self) -> bool:
        """Stream what is new (at most a chunk); True if there was something."""
        try:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                data = file.read(READ_CHUNK)
        except FileNotFoundError:
            return False
        self.offset += len(data)
        if data:
            self.splitter.feed(data)
        return bool(data)


def tails(
    spool: Spool, output: OutputSink, *, from_end: bool = False
) -> tuple[list[SpoolTail], deque[str]]:
    """The two tails (stdout, stderr) of ``spool`` and the deque of last lines they fill."""
    last: deque[str] = deque(maxlen=TAIL_LINES)
    found = []
    for path, stream in ((spool.out, "stdout"), (spool.err, "stderr")):
        offset = 0
        if from_end:
            with contextlib.suppress(OSError):
                offset = path.stat().st_size
        found.append(SpoolTail(path, LineSplitter(stream, output, last), offset))
    return found, last


async def follow(
    readers: list[SpoolTail], ended: Callable[[], bool], wake: asyncio.Future[Any] | None = None
) -> None:
    """Stream the spool files until ``ended()`` (checked between looks), then stream the rest.

    Polls, quickly after output and backing off to :data:`POLL_MAX` while the apply is silent;
    a pause ends early when ``wake`` (e.g. the process's exit) is done, so the end is seen at once.
    """
    interval = POLL_MIN
    while True:
        finished = ended()
        got = False
        for reader in readers:
            got |= reader.read()
        if finished and not got:
            break
        if got:
            interval = POLL_MIN
            await asyncio.sleep(0)  # let others run between chunks of a busy apply
        else:
            interval = min(interval * 2, POLL_MAX)
            if wake is not None and not wake.done():
                await asyncio.wait([wake], timeout=interval)
            else:
                await asyncio.sleep(interval)
    for reader in readers:
        reader.splitter.close()


async def stop_group(
    pgid: int, stop_signal: signal.Signals, grace: float, ended: Callable[[], bool]
) -> bool:
    """Send ``stop_signal`` to process group ``pgid``; after ``grace`` seconds without
    ``ended()``, SIGKILL it. True if it ended within the grace."""
    _kill_group(pgid, stop_signal)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while not ended() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    graceful = ended()
    _kill_group(pgid, signal.SIGKILL)  # the group's stragglers too, even after a clean end
    return graceful


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
