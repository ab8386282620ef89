"""Reading and pruning the spool files of past applies (``sluice show --output``, ``sluice
history --prune-spools-older-than``).

A spool holds an apply's raw output; what is printed from it is masked like everything else sluice
shows (the ``{env.X}`` values the estate mentions). History keeps only each apply's head and tail
of output; the spool keeps all of it until the user prunes it.

The reader API (``sluice show --output``, the console's output pane, the target detail):

* :func:`last_spool` — the :class:`Spool` of a target's last apply in a rollout, or
  :class:`NoOutput` (one line saying why);
* :func:`output_tail` — its last lines as ``(stream, line)`` pairs, masked: stdout's, then
  stderr's (the spool keeps the two apart, without their interleaving), reading only the ends
  of the files however big they are;
* :func:`print_output` — all of it, to two text streams.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

from sluice.engine.executors.spool import Spool, SpoolDir, rollout_spool_dir, spool_root
from sluice.engine.model.estate import Estate
from sluice.engine.model.template import redact
from sluice.engine.rollout.jobs import collect_secrets
from sluice.engine.store.history import History


class NoOutput(Exception):
    """No spool of that target in that rollout (one line for the operator)."""


def last_spool(estate: Estate, rollout_id: int, target: str) -> Spool:
    """The spool of ``target``'s last apply in rollout ``rollout_id``."""
    directory = rollout_spool_dir(estate, rollout_id)
    spool = SpoolDir(directory).latest(target)
    if spool is None or not (spool.out.exists() or spool.err.exists() or spool.claimed):
        raise NoOutput(
            f"no spooled output of target {target!r} in rollout #{rollout_id} "
            f"(looked in {directory}; pruned, or its executor does not spool)"
        )
    return spool


def output_tail(
    estate: Estate, rollout_id: int, target: str, most: int = 1000
) -> list[tuple[str, str]]:
    """The last ``most`` lines of stdout and of stderr of ``target``'s last apply in rollout
    ``rollout_id``, as ``(stream, line)`` pairs (stdout's first), secrets masked; raises
    :class:`NoOutput`."""
    spool = last_spool(estate, rollout_id, target)
    secrets = collect_secrets(estate)
    return [
        (stream, redact(line, secrets))
        for path, stream in ((spool.out, "stdout"), (spool.err, "stderr"))
        for line in _last_lines(path, most)
    ]


def _last_lines(path: Path, most: int, chunk: int = 65536) -> list[str]:
    """The last ``most`` lines of ``path`` (read backwards, a chunk at a time)."""
    try:
        with open(path, "rb") as file:
            start = file.seek(0, 2)
            data = b""
            while start > 0 and data.count(b"\n") <= most:
                step = min(chunk, start)
                start -= step
                file.seek(start)
                data = file.read(step) + data
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-most:] if most else []


def print_output(
    estate: Estate, rollout_id: int, target: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> None:
    """The full output of ``target``'s last apply: its stdout to ``out``, its stderr to ``err``,
    line by line (memory stays bounded), secrets masked."""
    spool = last_spool(estate, rollout_id, target)
    secrets = collect_secrets(estate)
    for path, stream in ((spool.out, out), (spool.err, err)):
        if not path.exists():
            continue
        with open(path, "rb") as file:
            for raw in file:
                stream.write(redact(raw.decode("utf-8", "replace"), secrets))
        stream.flush()


def prune(history: History, estate: Estate, older_than: float, now: float | None = None) -> int:
    """Delete the spool directories of rollouts that finished more than ``older_than`` seconds
    ago (never of one still running or resumable); history's records are kept. The count."""
    cutoff = (now or time.time()) - older_than
    removed = 0
    for record in history.rollouts():
        if record.outcome in ("running", "stopped") or record.finished is None:
            continue
        directory = rollout_spool_dir(estate, record.id)
        if record.finished < cutoff and directory.is_dir():
            shutil.rmtree(directory)
            removed += 1
    return removed


def spool_bytes(estate: Estate) -> int:
    """How much the estate's spools take on disk."""
    root: Path = spool_root(estate)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0
