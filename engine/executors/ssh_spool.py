"""Remote applies that outlive the connection: the ssh executor's side of :mod:`.spool`.

On the host, the command runs in a session of its own (the one sshd starts it in; ``setsid``
where it is not) under a status-writing wrapper, its output written to
``<spool_dir>/<estate>/<rollout>/<target>.<attempt>.log`` / ``.err`` (0600, the directories
0700, default ``~/.sluice/applies``), its exit status to ``.status``, the session's pid and the
launch's nonce to ``.pid``. The command never writes into the channel (a lost connection or
a killed sluice cannot turn into a SIGPIPE mid-apply): an apply quicker than
:data:`STREAM_AFTER` sends its output at its end (``cat``, none if it printed nothing); for a
longer one a short control session (:data:`STREAM`) leaves one ``tail -F`` streaming both files
into the apply's channel, which ends with the command's exit status. A resume (or the same run, after a dropped
connection) looks with :data:`LOOK` and re-attaches with :data:`ATTACH`; abort and timeout
signal the session's process group with :data:`STOP` (the SSH ``signal`` request would reach
only the channel's shell).

A host without ``setsid`` (and whose sshd does not start commands as session leaders) gets one
line saying so, and the command runs attached, as before.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TextIO

from sluice.engine.executors.base import OutputSink
from sluice.engine.executors.spool import file_name

#: ``$1`` (a spool base, maybe ``~/…``) → ``$B``, the absolute base.
_BASE = 'B=$1; case $B in "~/"*) B=$HOME/${B#??};; esac; '
#: Exit status of :data:`ATTACH` when the apply left no status (then its stdout ends with
#: :data:`NO_STATUS`): its outcome stays unknown.
NO_STATUS_EXIT = 254
NO_STATUS = "sluice: no status"
#: How often (seconds) the streaming ``tail`` looks whether the wrapper has ended (new output it
#: sees at once, through inotify): what a streamed apply's end waits at most for.
TAIL_POLL = 0.01
#: How long (seconds) an apply runs before sluice asks for it to be streamed live (:data:`STREAM`):
#: a quicker one's output comes on its channel once, at its end, with no ``tail`` started on the host.
STREAM_AFTER = 0.2
#: ``sh -c SPOOLED sluice BASE COMMAND NONCE`` (after the prelude; ``$_W`` holds :data:`_WRAPPER`,
#: set by :func:`spooled`): sshd starts a command as the leader of a session and process group of
#: its own (``setsid()`` in its child), so when the shell leads a group (``kill -0 -$$``), it is the
#: wrapper itself — no ``setsid`` or second ``sh`` to start. Otherwise ``setsid`` makes it one;
#: a host with neither runs the apply attached (stdin from /dev/null), as before spooling.
SPOOLED = (
    'if kill -0 -$$ 2>/dev/null; then eval "$_W"; '
    'elif command -v setsid >/dev/null 2>&1; then exec setsid sh -c "$_W" "$0" "$@"; else '
    'echo "sluice: $(uname -n) has no setsid: this apply runs attached, not spooled (it cannot '
    'outlive the connection)" >&2; exec sh -c "$2" < /dev/null; fi'
)
#: The wrapper, run by the session's leader: its pid (the process group) and NONCE (this launch's,
#: so that :data:`STREAM` never takes an earlier apply's files for this one's) to ``.pid``. The
#: command runs in a subshell with the login's umask, default signal dispositions and stdin
#: from /dev/null, its stdout and stderr written to the spool files — never a pipe, so a lost connection or a killed sluice cannot turn into a SIGPIPE mid-apply. The
#: wrapper traps the stop signals and writes the command's exit status once its subshell ends.
#: Its output reaches the channel one of two ways, decided once by whoever first creates
#: ``.status`` (``set -C``: O_EXCL; an earlier apply's is removed at the start):
#:
#: * at the end: the wrapper, creating ``.status`` with the exit status, prints what the command
#:   wrote (``cat``, only of a file that is not empty) on the channel's stdout and stderr;
#: * live: :data:`STREAM`, run in a short session of its own once the apply has run
#:   :data:`STREAM_AFTER` (or is being stopped), creates ``.status`` empty (the wrapper appends
#:   the exit status to it) and starts one ``tail -F`` writing both files into this channel's
#:   stdout, a header line before each switch between them (:class:`Demux`).
#:
#: A ``.status`` that is not empty is the apply's end; one file fewer to create on the host for
#: every apply than a claim of its own (a file's creation is most of the spool's cost there).
#:
#: So an apply quicker than :data:`STREAM_AFTER` forks once on the host (the command's subshell)
#: and starts one program (none if it printed nothing), and a longer one the ``tail`` it always
#: had.
_WRAPPER = (
    _BASE + '[ -d "${B%/*}" ] || (umask 077 && mkdir -p "${B%/*}") || '
    '{ echo "sluice: cannot create the spool $B on $(uname -n)" >&2; exit 95; }; '
    '{ read -r _k; read -r _k u; } < /proc/$$/status 2>/dev/null; [ "$_k" = Umask: ] || u=$(umask); '
    # Fresh files: a history started again (its rollout numbers anew) reuses a base on the host.
    'umask 077; echo "$$ $3" > "$B.pid"; [ ! -e "$B.status" ] || rm -f "$B.status"; trap : TERM INT HUP; '
    '( exec < /dev/null > "$B.log" 2> "$B.err"; umask "$u"; eval "$2" ); c=$?; '
    'set -C; if { printf "%s\\n" "$c" > "$B.status"; } 2>/dev/null; then '
    '[ -s "$B.log" ] && cat "$B.log"; [ -s "$B.err" ] && cat "$B.err" >&2; '
    'else printf "%s\\n" "$c" >> "$B.status"; fi; exit "$c"'
)
#: ``sh -c STREAM sluice BASE NONCE``: streams the running apply of this launch (NONCE) live, on
#: its own channel: waits (up to 2 s) until its wrapper has written ``.pid``, opens the
#: wrapper's stdout (the apply's channel, through ``/proc``: read-write first, which never blocks,
#: then write-only, so a closed channel ends the ``tail`` with SIGPIPE) and, if it claims the
#: output (creates ``.status``) before the wrapper's end does, leaves one ``tail -F`` writing both
#: files there from their first byte until the wrapper ends. This session ends at once (the ``tail``
#: holds none of its pipes). Exit 3: the wrapper never wrote ``.pid``; 4 (2 if it ended just
#: then: the shell's failed redirection): it has ended (or the host has no ``/proc``), so its end
#: prints the output.
STREAM = (
    _BASE + 'n=0; until read -r w k 2>/dev/null < "$B.pid" && [ "$k" = "$2" ]; do '
    "[ $n -lt 100 ] || exit 3; n=$((n+1)); sleep 0.02; done; "
    '[ -e "/proc/$w/fd/1" ] || exit 4; { exec 4<> "/proc/$w/fd/1" 5> /proc/self/fd/4 4>&-; } 2>/dev/null || exit 4; '
    'set -C; { true; } 2>/dev/null > "$B.status" || exit 0; '
    f'tail -c +1 -F -s {TAIL_POLL} --pid="$w" "$B.log" "$B.err" >&5 2>/dev/null < /dev/null 5>&- &'
)
#: ``sh -c LOOK sluice BASE``: prints ``finished``, ``running`` or ``none``.
LOOK = (
    _BASE + 'if [ -s "$B.status" ]; then echo finished; '
    'elif read p _k < "$B.pid" 2>/dev/null && kill -0 "$p" 2>/dev/null; then echo running; '
    "else echo none; fi"
)
#: ``sh -c ATTACH sluice BASE [OUT ERR]``: streams a running apply's output until it ends (or, if
#: it has ended, its last lines), then exits with its status. With OUT and ERR (the lines of
#: stdout and stderr already received, by the run that lost its connection) it streams every
#: line after those, so nothing is lost or repeated; without them (a resume), what the apply
#: prints from now on, or its last three lines. Adoption passes the lines its local copy holds.
ATTACH = (
    _BASE + 'if [ -n "$2" ]; then s="-n +$(($2+1))"; e="-n +$(($3+1))"; else s=; e=; fi; '
    'if [ ! -s "$B.status" ] && read p _k < "$B.pid" 2>/dev/null && kill -0 "$p" 2>/dev/null; '
    'then [ -n "$s" ] || { s="-c +$(($(wc -c < "$B.log")+1))"; e="-c +$(($(wc -c < "$B.err")+1))"; }; '
    'tail $e -F --pid="$p" -s 0.2 "$B.err" 2>/dev/null >&2 & '
    'tail $s -F --pid="$p" -s 0.2 "$B.log" 2>/dev/null; wait; '
    'else tail ${s:--n 3} "$B.log"; tail ${e:--n 3} "$B.err" >&2; fi; '
    # The wrapper writes the status just after the command's group ends: give it a moment.
    'n=0; while [ ! -s "$B.status" ] && [ $n -lt 20 ] && [ -e "$B.pid" ]; do sleep 0.1; n=$((n+1)); done; '
    f'read c < "$B.status" 2>/dev/null || {{ echo "{NO_STATUS}"; exit {NO_STATUS_EXIT}; }}; '
    'exit "$c"'
)
#: ``sh -c STOP sluice BASE SIGNAL``: the signal to the apply's process group (its session). A
#: SIGKILL ends the wrapper too, so then the status (137, as a shell reports it) is written here.
STOP = (
    _BASE + 'read p _k < "$B.pid" 2>/dev/null && kill -s "$2" -- "-$p" && { [ "$2" != KILL ] || '
    '[ -s "$B.status" ] || { umask 077; printf "137\\n" > "$B.status"; }; }'
)


class Demux:
    """The channel's stdout of a spooled apply → ``emit(stream, line)``: the streaming ``tail``
    names the file before each switch (``==> PATH.log <==`` / ``.err``, after a blank line but
    for the first), so a header line switches the stream and the blank line before it is
    dropped. Before any header (a host that ran the apply attached), lines are stdout."""

    def __init__(self, base: str, emit: OutputSink):
        self.suffix = base.removeprefix("~/")
        self.emit = emit
        self.stream = "stdout"
        self._blank = False
        self._seen = False

    def __call__(self, line: str) -> None:
        switch = self._header(line)
        if switch is not None:
            self.stream, self._blank, self._seen = switch, False, True
            return
        if self._blank:
            self.emit(self.stream, "")
            self._blank = False
        if not line and self._seen:
            self._blank = True  # tail's, if a header follows
            return
        self.emit(self.stream, line)

    def close(self) -> None:
        if self._blank:
            self.emit(self.stream, "")
            self._blank = False

    def _header(self, line: str) -> str | None:
        if not (line.startswith("==> ") and line.endswith(" <==")):
            return None
        path = line[4:-4]
        for ext, stream in ((".log", "stdout"), (".err", "stderr")):
            if path.endswith(self.suffix + ext) and path[: -len(self.suffix + ext)][-1:] in "/":
                return stream
        return None


def spooled(prelude: str) -> str:
    """The spooling script after ``prelude`` (the variables' reads)."""
    return f"{prelude}_W={shlex.quote(_WRAPPER)}; {SPOOLED}"


def remote_base(spool_dir: str, estate: str, local_base: Path) -> str:
    """The remote spool base of the apply whose local spool base is ``local_base``
    (``…/applies/<rollout>/<target>.<attempt>``)."""
    rollout = local_base.parent.name
    return f"{spool_dir.rstrip('/')}/{file_name(estate)}/{rollout}/{local_base.name}"


def script(body: str, *args: str) -> str:
    """``sh -c BODY sluice ARGS…``, quoted for a remote login shell."""
    return " ".join(["sh -c", shlex.quote(body), "sluice", *map(shlex.quote, args)])


class LocalCopy:
    """The output a channel streams, also appended (line-buffered: a kill loses no line) to the
    apply's local spool files, for ``sluice show --output``. Adoption streams (and copies) every
    line the local copy lacks, so it ends as complete as the remote spool."""

    def __init__(self, base: Path, output: OutputSink):
        self.output = output
        self.paths = {
            "stdout": base.with_name(base.name + ".log"),
            "stderr": base.with_name(base.name + ".err"),
        }
        self.files: dict[str, TextIO] = {}  # opened at a stream's first line: most print little

    def __call__(self, stream: str, line: str) -> None:
        file = self.files.get(stream)
        if file is None and stream in self.paths:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            file = self.files[stream] = os.fdopen(os.open(self.paths[stream], flags, 0o600), "a", 1)
        if file is not None:
            file.write(line + "\n")
        self.output(stream, line)

    def lines(self) -> tuple[int, int]:
        """The lines of stdout and stderr the local copy already holds (from earlier runs)."""

        def count(path: Path) -> int:
            try:
                with path.open("rb") as file:
                    return sum(
                        chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b"")
                    )
            except FileNotFoundError:
                return 0

        return count(self.paths["stdout"]), count(self.paths["stderr"])

    def close(self) -> None:
        for file in self.files.values():
            file.close()
