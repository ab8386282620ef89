"""Where an SSH command runs (:class:`Endpoint`), and one-line reasons for SSH failures, phrased
for the operator who has to act on them.

A host-key refusal says which host, whether its key is unknown or changed, and the command that
would trust it; the other connection failures say what went wrong where, without a traceback.
"""

from __future__ import annotations

import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from sluice.engine.model.units import format_duration


@dataclass(frozen=True)
class Endpoint:
    """Where a command runs: also the connection pool's key."""

    host: str
    port: int
    user: str
    jump: Endpoint | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        via = f" via {self.jump}" if self.jump else ""
        return f"{self.user}@{self.address}{via}"


def connect_failure(
    endpoint: Endpoint,
    exc: BaseException,
    known_hosts: Path,
    key_path: Path | None,
    connect_timeout: float,
) -> str:
    """Why connecting to ``endpoint`` failed, given the executor's settings."""
    where = endpoint.address
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return host_key_problem(endpoint, known_hosts)
    if isinstance(exc, asyncssh.PermissionDenied):
        how = f"key {key_path}" if key_path else "ssh-agent and ~/.ssh keys"
        return f"{endpoint.user}@{where}: authentication refused ({how} not accepted)"
    if isinstance(exc, TimeoutError):
        waited = format_duration(connect_timeout)
        return f"{where}: no SSH handshake within {waited} (connect_timeout)"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused (nothing listening on port {endpoint.port}?)"
    if isinstance(exc, socket.gaierror):
        return f"{endpoint.host}: cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"{where}: the jump host {endpoint.jump} cannot reach it ({exc.reason})"
    return f"{where}: {describe_error(exc)}"


def host_key_problem(endpoint: Endpoint, known_hosts: Path) -> str:
    """The host key was refused: is it unknown, or listed with another key (changed)?"""
    where, quoted = endpoint.address, shlex.quote(str(known_hosts))
    try:
        found = asyncssh.read_known_hosts(str(known_hosts))
        host_keys, ca_keys, *_ = found.match(endpoint.host, "", endpoint.port)
        listed = bool(host_keys or ca_keys)
    except (OSError, ValueError, asyncssh.Error):
        listed = False
    if not listed:
        return (
            f"host key of {where} is unknown (not in {quoted}); after checking its "
            "fingerprint, " + trust_hint(endpoint, known_hosts)
        )
    name = endpoint.host if endpoint.port == 22 else f"[{endpoint.host}]:{endpoint.port}"
    return (
        f"host key of {where} does NOT match {quoted} (changed, or someone in the middle); "
        f"if the change is expected: ssh-keygen -R {shlex.quote(name)} -f {quoted}, then "
        + trust_hint(endpoint, known_hosts)
    )


def trust_hint(endpoint: Endpoint, known_hosts: Path) -> str:
    """The command that adds ``endpoint``'s host key to ``known_hosts``."""
    quoted = shlex.quote(str(known_hosts))
    if endpoint.jump is None:
        port = "" if endpoint.port == 22 else f"-p {endpoint.port} "
        return f"trust it with: ssh-keyscan {port}{endpoint.host} >> {quoted}"
    # ssh-keyscan cannot go through a jump host; ssh asks to accept the key and records it.
    jump = endpoint.jump
    return (
        f"trust it with: ssh -o UserKnownHostsFile={quoted} -J {jump.user}@{jump.address} "
        f"-p {endpoint.port} {endpoint.user}@{endpoint.host} true"
    )


def describe_error(exc: BaseException) -> str:
    """An exception as a short phrase (asyncssh's reason, the OS error text, or its type)."""
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def one_line(text: str) -> str:
    """Collapse whitespace and newlines: a reason is always one line."""
    return " ".join(text.split())
