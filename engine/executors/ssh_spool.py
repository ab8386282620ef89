"""Remote applies that outlive the connection: the ssh executor's side of :mod:`.spool`.

On the host, the command runs under ``setsid`` inside the same status-writing wrapper as a local
apply, its output appended to ``<spool_dir>/<estate>/<rollout>/<target>.<attempt>.log`` / ``.err``
(0600, default ``~/.sluice/applies``), its exit status to ``.status``, its pid to ``.pid``. The
channel reads the output through ``tee -p`` — which keeps writing the files when the channel has
gone, so a lost connection or a killed sluice never turns into a SIGPIPE mid-apply — and ends with
the wrapper's exit status. A resume (or the same run, after a dropped connection) looks with
:data:`LOOK` and re-attaches with :data:`ATTACH`; abort and timeout signal the wrapper's process
group with :data:`STOP` (the SSH ``signal`` request would reach only the channel's own shell).

A host without ``setsid`` gets one line saying so, and the command runs attached, as before.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from sluice.engine.executors.base import OutputSink
from sluice.engine.executors.spool import file_name

#: ``$1`` (a spool base, maybe ``~/…``) → ``$B``, the absolute base.
_BASE = 'B=$1; case $B in "~/"*) B=$HOME/${B#??};; esac; '
#: Exit status of :data:`ATTACH` when the apply left no status (then its stdout ends with
#: :data:`NO_STATUS`): its outcome stays unknown.
NO_STATUS_EXIT = 254
NO_STATUS = "sluice: no status"
#: ``sh -c SPOOLED sluice BASE COMMAND``: the apply, spooled and detached (after the prelude);
#: ``$_CMD`` holds :data:`_INNER` (set by :func:`spooled`).
SPOOLED = (
    _BASE + 'command -v setsid >/dev/null 2>&1 || { echo "sluice: $(uname -n) has no setsid: this '
    'apply runs attached, not spooled (it cannot outlive the connection)" >&2; exec sh -c "$2"; }; '
    '[ -d "${B%/*}" ] || (umask 077 && mkdir -p "${B%/*}") || '
    '{ echo "sluice: cannot create the spool $B on $(uname -n)" >&2; exit 95; }; '
    # The subshell is the wrapper: outside the command's session (a stop never reaches it), it
    # waits for the command and writes its status. Its own stderr is /dev/null (dash reports a
    # signalled child there); the command's is fd 4, the stderr pipe.
    '{ ( exec 4>&2 2>/dev/null; setsid sh -c "$_CMD" "$B" "$2"; c=$?; umask 077; '
    'printf "%s\\n" "$c" > "$B.status"; exit "$c" ) 2>&1 1>&3 3>&- | '
    'tee -p -a "$B.err" >&2 3>&-; } 3>&1 | tee -p -a "$B.log"; '
    'read c < "$B.status" 2>/dev/null || c=255; exit "$c"'
)
#: The command's shell, in a session of its own: its pid (= its process group) to ``.pid``.
_INNER = 'echo $$ > "$0.pid"; exec 2>&4 4>&-; eval "$1"'
#: ``sh -c LOOK sluice BASE``: prints ``finished``, ``running`` or ``none``.
LOOK = (
    _BASE + 'if [ -s "$B.status" ]; then echo finished; '
    'elif read p < "$B.pid" 2>/dev/null && kill -0 "$p" 2>/dev/null; then echo running; '
    "else echo none; fi"
)
#: ``sh -c ATTACH sluice BASE``: streams what a running apply prints from now on until it ends
#: (or, if it has ended, its last lines), then exits with its status.
ATTACH = (
    _BASE + 'if [ ! -s "$B.status" ] && read p < "$B.pid" 2>/dev/null && kill -0 "$p" 2>/dev/null; '
    'then s=$(wc -c < "$B.log"); e=$(wc -c < "$B.err"); '
    'tail -c +$((e+1)) -F --pid="$p" -s 0.2 "$B.err" 2>/dev/null >&2 & '
    'tail -c +$((s+1)) -F --pid="$p" -s 0.2 "$B.log" 2>/dev/null; wait; '
    'else tail -n 3 "$B.log"; tail -n 3 "$B.err" >&2; fi; '
    # The wrapper writes the status just after the command's group ends: give it a moment.
    'n=0; while [ ! -s "$B.status" ] && [ $n -lt 20 ] && [ -e "$B.pid" ]; do sleep 0.1; n=$((n+1)); done; '
    f'read c < "$B.status" 2>/dev/null || {{ echo "{NO_STATUS}"; exit {NO_STATUS_EXIT}; }}; '
    'exit "$c"'
)
#: ``sh -c STOP sluice BASE SIGNAL``: the signal to the apply's process group (its session).
STOP = _BASE + 'read p < "$B.pid" 2>/dev/null && kill -s "$2" -- "-$p"'


def spooled(prelude: str) -> str:
    """The spooling script after ``prelude`` (the variables' reads)."""
    return f"{prelude}_CMD={shlex.quote(_INNER)}; {SPOOLED}"


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
    apply's local spool files, for ``sluice show --output``. What printed while no sluice was
    attached is only in the remote spool (of a finished apply, adoption copies its last lines)."""

    def __init__(self, base: Path, output: OutputSink):
        self.output = output
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self.files = {
            "stdout": os.fdopen(os.open(base.with_name(base.name + ".log"), flags, 0o600), "a", 1),
            "stderr": os.fdopen(os.open(base.with_name(base.name + ".err"), flags, 0o600), "a", 1),
        }

    def __call__(self, stream: str, line: str) -> None:
        file = self.files.get(stream)
        if file is not None:
            file.write(line + "\n")
        self.output(stream, line)

    def close(self) -> None:
        for file in self.files.values():
            file.close()
