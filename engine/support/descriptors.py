"""File descriptors a rollout needs, against what the process may open (RLIMIT_NOFILE).

Each apply in flight holds descriptors: a local command its two output pipes (and, while it is
spawned, a few more), an HTTP apply its socket, an SSH apply at most its connection (sessions
share one); a simulated apply none. A channel runs up to ``max_parallel`` of them at once. A
rollout that would run out fails half a wave with "Too many open files", so sluice raises its
soft limit to the hard one where it can, warns in ``check``/``plan``, and refuses to start a
rollout that cannot fit (fail closed).
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterable

from sluice.engine.model.estate import Channel, Estate

#: Descriptors one apply in flight holds, by executor kind (an unknown kind counts as local).
PER_APPLY = {"local": 2, "ssh": 1, "http": 1, "simulated": 0}
DEFAULT_PER_APPLY = 2
#: For everything else: stdio, the history (db, -wal, -shm), the event loop, checks' sockets,
#: applies being spawned.
RESERVE = 64


def hard_limit() -> int | None:
    """The most descriptors this process could open (None: unlimited)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if hard == resource.RLIM_INFINITY else hard


def raise_soft_limit() -> int | None:
    """Raise the soft limit to the hard one (as far as the OS allows); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def per_apply(estate: Estate, channel: Channel) -> int:
    """Descriptors one of ``channel``'s applies holds, for its most demanding executor."""
    kinds = {
        estate.executors[estate.targets[name].executor].kind
        for name in channel.targets
        if estate.targets[name].executor in estate.executors
    }
    return max((PER_APPLY.get(kind, DEFAULT_PER_APPLY) for kind in kinds), default=0)


def needed(estate: Estate, channel: Channel) -> int:
    """Descriptors ``channel``'s widest wave of applies needs at most, with the reserve."""
    return RESERVE + per_apply(estate, channel) * min(channel.max_parallel, len(channel.targets))


def shortfalls(estate: Estate, channels: Iterable[Channel], limit: int | None) -> list[str]:
    """One sentence per channel whose applies cannot fit ``limit`` descriptors."""
    if limit is None:
        return []
    problems = []
    for channel in channels:
        need = needed(estate, channel)
        if need <= limit:
            continue
        fits = max(1, (limit - RESERVE) // per_apply(estate, channel))
        problems.append(
            f"channel {channel.name!r}: max_parallel = {channel.max_parallel} needs about {need} "
            f"file descriptors, but this process may open {limit} (ulimit -n): raise the limit "
            f"or lower max_parallel to {fits} at most"
        )
    return problems
