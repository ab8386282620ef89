"""``sluice serve ESTATE``: the same console in a browser, through textual-serve.

Every browser session runs its own ``sluice ESTATE`` process behind textual-serve's websocket.
The first to open the estate holds its lease and drives; every other session finds the lease
held and watches read-only, exactly as a second console in a terminal does.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

LOOPBACK = "127.0.0.1"


def console_command(estate_path: str, *, theme: str | None = None, time_scale: float = 1.0) -> str:
    """The shell command textual-serve runs for each browser session (every value quoted)."""
    argv = [sys.executable, "-m", "sluice.cli", str(Path(estate_path).resolve())]
    if theme:
        argv += ["--theme", theme]
    if time_scale != 1.0:
        argv += ["--time-scale", repr(time_scale)]
    return shlex.join(argv)


def serve(
    estate_path: str,
    *,
    estate_name: str,
    host: str = LOOPBACK,
    port: int = 8000,
    theme: str | None = None,
    time_scale: float = 1.0,
) -> int:
    """Serve the console on http://HOST:PORT until interrupted; returns the exit code."""
    from textual_serve.server import Server

    server = Server(
        console_command(estate_path, theme=theme, time_scale=time_scale),
        host=host,
        port=port,
        title=f"sluice · {estate_name}",
    )
    print(f"sluice: serving the console of {estate_name} on http://{host}:{port}", flush=True)
    try:
        server.serve()
    except OSError as exc:  # the port is taken, the address is not this machine's…
        print(f"sluice: cannot serve on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
