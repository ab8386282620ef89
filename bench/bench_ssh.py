"""Peer comparison: the same SSH rollout by sluice, by Ansible, and by bare asyncssh (the floor).

N targets (distinct inventory names, all on one loopback sshd that this script starts with
tests/integration/servers.py), one channel split into two waves (25% then the rest), at most P
applies at once. Each apply runs ``echo VERSION > DIR/TARGET.version`` on the host. Runners:

* ``sluice``        ``sluice run ESTATE app@VERSION --headless --json --time-scale 0`` (a fresh
                    estate directory, so a fresh history, each time)
* ``ansible``       ``ansible-playbook -f P`` with ``serial`` = the same wave sizes, its default
                    SSH settings (ControlMaster=auto, ControlPersist=60s, in a fresh ControlPath
                    directory each run, so every run starts cold)
* ``ansible-nocm``  the same with ``ssh_args = -o ControlMaster=no`` (one SSH connection per task)
* ``floor``         bare asyncssh in a fresh interpreter: one connection, the same commands in the
                    same waves with the same concurrency, and nothing else (this module imported
                    from its cached bytecode, with no harness imports the floor does not need)
* ``floor-gc``      the floor under sluice's garbage-collector policy (``sluice.cli.main``: off
                    during start-up, start-up objects frozen before the work, everything frozen
                    before exit, which alone spares ~0.1 s of interpreter teardown once asyncssh
                    is loaded): sluice/floor-gc is the part of the gap that is the engine's own
* ``sluice-noop``   ``sluice run`` of the same plan with a zero-time simulated executor: the
                    engine's own cost (start-up, history, events), to read the sluice/floor gap
* ``sluice-nospool`` ``sluice run`` with the executor's ``spool = false`` (applies attached to the
                    channel, as before issue 11): sluice/sluice-nospool is what the spool costs
* ``floor-spool``   the floor sending each apply as sluice sends a spooled one (the marker, the
                    ``sh`` and the spooling wrapper, as ``SshExecutor._command`` builds them):
                    floor-spool/floor is what the spool costs with no engine around it

Every runner is a separate process (interpreter start included), host keys are verified by all,
the runners alternate within each repetition (rotating the order), and every run is checked (all
N version files written) outside the timed section. Medians and ratios are printed; the goal in
issue 6 is sluice ≥ 5× faster than Ansible and within 1.3× of the floor (issue 11, with spooling: 1.35×).

    .venv/bin/python bench/bench_ssh.py                 # N = 20 and 200, 5 and 3 repetitions
    .venv/bin/python bench/bench_ssh.py --sizes 20 --reps 3 --runners sluice,floor,floor-gc

Needs root (or an sshd you may start), /usr/sbin/sshd, and ansible-core in the venv
(``uv pip install ansible-core``) for the Ansible runners.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
BIN = Path(sys.executable).parent

RUNNERS = (
    "sluice", "ansible", "ansible-nocm", "floor", "floor-gc", "sluice-noop", "sluice-nospool",
    "floor-spool",
)  # fmt: skip
#: (the runner's own CPU seconds, everyone else's: sshd and the shells) of each timed run.
CPU: list[tuple[float, float]] = []
#: sluice.engine.executors.ssh.CIPHERS, copied so the floor imports nothing but asyncssh.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)


@dataclass
class Setup:
    host: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    remote: Path  # where the remote commands write their version files
    work: Path  # local scratch: estates, inventories, control sockets

    def names(self, n: int) -> list[str]:
        return [f"node-{i:03d}" for i in range(n)]


def wave_sizes(n: int) -> list[int]:
    first = max(1, n // 4)
    return [first, n - first]


def command(remote: Path, target: str, version: str) -> str:
    return f"echo {version} > {remote}/{target}.version"


# ------------------------------------------------------------------------------------ runners


def run_sluice(
    setup: Setup,
    n: int,
    parallel: int,
    version: str,
    rep: str,
    *,
    noop: bool = False,
    spool: bool = True,
) -> list[str]:
    import tomli_w

    folder = setup.work / f"sluice{'-noop' if noop else ''}{'' if spool else '-nospool'}-{n}-{rep}"
    folder.mkdir()
    estate = {
        "estate": {"name": "bench", "history": "history.db"},
        "channels": [
            {"name": "fleet", "waves": [wave_sizes(n)[0], "100%"], "max_parallel": parallel}
        ],
        "targets": {t: {"channel": "fleet", "executor": "box"} for t in setup.names(n)},
        "executors": {
            "box": {
                "kind": "ssh",
                "host": setup.host,
                "port": setup.port,
                "user": setup.user,
                "key": str(setup.key),
                "known_hosts": str(setup.known_hosts),
                "max_sessions": parallel,
                "apply": f"echo {{version}} > {setup.remote}/{{target}}.version",
                "spool_dir": str(setup.remote / "spools"),
                "spool": spool,
            }
        },
        "modules": {"app": {"versions": ["1.0.0", version], "initial": "1.0.0"}},
    }
    if noop:  # the engine alone: same plan, applies that take no time and touch nothing
        estate["executors"] = {"box": {"kind": "simulated", "duration": "0s"}}
    path = folder / "estate.toml"
    path.write_text(tomli_w.dumps(estate))
    return [str(BIN / "sluice"), "run", str(path), f"app@{version}", "--headless", "--json",
            "--time-scale", "0"]  # fmt: skip


def run_ansible(
    setup: Setup, n: int, parallel: int, version: str, rep: str, *, control_master: bool
) -> list[str]:
    folder = setup.work / f"ansible{'' if control_master else '-nocm'}-{n}-{rep}"
    (folder / "cp").mkdir(parents=True)
    common = f"-o UserKnownHostsFile={setup.known_hosts} -o StrictHostKeyChecking=yes"
    lines = ["[fleet]"]
    lines += [
        f"{t} ansible_host={setup.host} ansible_port={setup.port} ansible_user={setup.user}"
        for t in setup.names(n)
    ]
    lines += [
        "[fleet:vars]",
        f"ansible_ssh_private_key_file={setup.key}",
        f"ansible_ssh_common_args='{common}'",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    (folder / "inventory.ini").write_text("\n".join(lines) + "\n")
    playbook = [
        {
            "hosts": "fleet",
            "gather_facts": False,
            "serial": wave_sizes(n),
            "any_errors_fatal": True,
            "tasks": [
                {
                    "name": "apply",
                    "shell": command(setup.remote, "{{ inventory_hostname }}", version),
                }
            ],
        }
    ]
    (folder / "playbook.yml").write_text(json.dumps(playbook, indent=2))  # JSON is YAML
    config = [
        "[defaults]",
        "host_key_checking = True",
        "interpreter_python = /usr/bin/python3",
        "retry_files_enabled = False",
        "[ssh_connection]",
        f"control_path_dir = {folder / 'cp'}",
    ]
    if not control_master:
        config.append("ssh_args = -o ControlMaster=no")
    (folder / "ansible.cfg").write_text("\n".join(config) + "\n")
    return [
        str(BIN / "ansible-playbook"),
        "-i",
        str(folder / "inventory.ini"),
        "-f",
        str(parallel),
        str(folder / "playbook.yml"),
    ]


def spooled_commands(setup: Setup, n: int, version: str, rep: str) -> list[str]:
    """Each target's command line as the ssh executor sends a spooled apply (no variables) to a
    POSIX login shell, as the bench's user has (``SshExecutor._command``)."""
    import shlex

    from sluice.engine.executors.orphans import MARKER, marker_value
    from sluice.engine.executors.ssh_spool import spooled

    spools = setup.remote / "spools" / "floor" / rep
    lines = []
    for target in setup.names(n):
        mark = f"export {MARKER}={shlex.quote(marker_value('floor', target))};"
        base, apply = f"{spools}/{target}.1", command(setup.remote, target, version)
        args = " ".join(map(shlex.quote, (base, apply, "f0")))
        lines.append(f"{mark} set -- {args}; {spooled('')}")
    return lines


def run_floor(
    setup: Setup,
    n: int,
    parallel: int,
    version: str,
    rep: str,
    *,
    tuned: bool = False,
    spool: bool = False,
) -> list[str]:
    spec = {
        "host": setup.host,
        "port": setup.port,
        "user": setup.user,
        "key": str(setup.key),
        "known_hosts": str(setup.known_hosts),
        "remote": str(setup.remote),
        "names": setup.names(n),
        "waves": wave_sizes(n),
        "parallel": parallel,
        "version": version,
        "tuned": tuned,
        "commands": spooled_commands(setup, n, version, rep) if spool else None,
    }
    # This module imported (from cached bytecode), not run as a script, which would be compiled
    # from source in every process; ``tuned``: start-up without the collector, as sluice's.
    program = "import sys; sys.path.insert(0, sys.argv[1]); import bench_ssh; "
    program += "bench_ssh.floor_process(sys.argv[2])"
    if tuned:
        program = "import gc; gc.disable(); " + program
    path = setup.work / f"floor-{n}-{rep}-{int(tuned)}{int(spool)}.json"  # too long for argv
    path.write_text(json.dumps(spec))
    return [sys.executable, "-c", program, str(Path(__file__).resolve().parent), str(path)]


def floor_process(spec_path: str) -> None:
    """The floor's process body; ``tuned``: sluice's collector policy (``sluice.cli.main``)."""
    spec = json.loads(Path(spec_path).read_text())
    if spec["tuned"]:  # start-up ends with asyncssh loaded (sluice.cli.drive.drive), then frozen
        import asyncssh  # noqa: F401

        gc.freeze()
        gc.enable()
    asyncio.run(floor(spec))
    if spec["tuned"]:  # the exit (sluice.cli.main)
        gc.freeze()


async def floor(spec: dict[str, object]) -> None:
    """Bare asyncssh: one verified connection, the same commands, waves and concurrency."""
    import asyncssh

    names = list(spec["names"])  # type: ignore[call-overload]
    commands = dict(zip(names, spec["commands"] or (), strict=False))  # type: ignore[call-overload]
    sizes = list(spec["waves"])  # type: ignore[call-overload]
    remote, version = Path(str(spec["remote"])), str(spec["version"])
    semaphore = asyncio.Semaphore(int(spec["parallel"]))  # type: ignore[call-overload]
    async with asyncssh.connect(
        str(spec["host"]),
        int(spec["port"]),  # type: ignore[call-overload]
        username=str(spec["user"]),
        client_keys=[str(spec["key"])],
        known_hosts=str(spec["known_hosts"]),
        config=None,
        encryption_algs=list(CIPHERS),  # sluice's preference: compare engines, not ciphers
    ) as conn:

        async def one(target: str) -> None:
            async with semaphore:
                await conn.run(commands.get(target) or command(remote, target, version), check=True)

        start = 0
        for size in sizes:
            await asyncio.gather(*(one(t) for t in names[start : start + size]))
            start += size


# ------------------------------------------------------------------------------------ harness


def stop_control_masters(folder: Path) -> None:
    """Ansible's ControlPersist masters outlive the run: stop them so runs stay independent."""
    for socket_path in (folder / "cp").glob("*") if (folder / "cp").exists() else []:
        subprocess.run(
            ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "unused"],
            capture_output=True,
            timeout=10,
        )


def busy_seconds() -> float:
    """CPU seconds every process on this machine has used since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    import resource

    before, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds()
    started = time.perf_counter()
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - started
    after, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds() - busy
    own = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    CPU.append((own, max(busy - own, 0.0)))
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n" + "\n".join(tail))
    return elapsed, proc.stdout


def verify(setup: Setup, n: int, version: str, runner: str) -> None:
    files = [setup.remote / f"{t}.version" for t in setup.names(n)]
    wrong = [f.name for f in files if not f.exists() or f.read_text().strip() != version]
    if wrong:
        raise SystemExit(f"{runner}: {len(wrong)} of {n} targets not at {version}: {wrong[:5]}")
    for f in files:
        f.unlink()


def bench(
    setup: Setup,
    sizes: list[int],
    reps_for: Callable[[int], int],
    runners: list[str],
    par: dict[int, int],
) -> None:
    builders: dict[str, Callable[..., list[str]]] = {
        "sluice": run_sluice,
        "ansible": lambda *a: run_ansible(*a, control_master=True),
        "ansible-nocm": lambda *a: run_ansible(*a, control_master=False),
        "floor": run_floor,
        "floor-gc": lambda *a: run_floor(*a, tuned=True),
        "floor-spool": lambda *a: run_floor(*a, spool=True),
        "sluice-noop": lambda *a: run_sluice(*a, noop=True),
        "sluice-nospool": lambda *a: run_sluice(*a, spool=False),
    }
    results: dict[tuple[int, str], list[float]] = {}

    def run_once(runner: str, n: int, parallel: int, version: str, rep: str) -> float:
        argv = builders[runner](setup, n, parallel, version, rep)
        folder = Path(argv[-1]).parent if runner.startswith("ansible") else setup.work
        env = dict(os.environ)
        # Like an ordinary install, with bytecode caches (this environment sets
        # PYTHONDONTWRITEBYTECODE, which recompiles asyncssh — ~1.5 s — in every process); the
        # caches go to a scratch prefix, so the venv is left alone.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(setup.work / "pycache")
        if runner.startswith("ansible"):
            env["ANSIBLE_CONFIG"] = str(folder / "ansible.cfg")
            env["ANSIBLE_LOCALHOST_WARNING"] = "False"
        try:
            elapsed, _ = timed(argv, env, setup.work)
        finally:
            if runner.startswith("ansible"):
                stop_control_masters(folder)
        if runner != "sluice-noop":
            verify(setup, n, version, runner)
        return elapsed

    print("\nwarm-up (untimed): each runner once at N=2, to fill the bytecode caches")
    for runner in runners:
        run_once(runner, 2, 2, "1.9.9", f"warmup-{runner}")
    for n in sizes:
        parallel, reps = par.get(n, min(n, 50)), reps_for(n)
        print(f"\nN={n}: waves {wave_sizes(n)}, max_parallel/forks {parallel}, {reps} reps")
        for rep in range(reps):
            order = runners[rep % len(runners) :] + runners[: rep % len(runners)]
            for runner in order:
                elapsed = run_once(runner, n, parallel, f"2.0.{rep}", str(rep))
                results.setdefault((n, runner), []).append(elapsed)
                own, rest = CPU[-1]
                print(
                    f"  rep {rep + 1}  {runner:<13} {elapsed:7.2f} s   CPU: runner {own:5.2f} s,"
                    f" host (sshd, shells, others) {rest:5.2f} s",
                    flush=True,
                )
    report(results, sizes, runners)


def report(
    results: dict[tuple[int, str], list[float]], sizes: list[int], runners: list[str]
) -> None:
    import statistics  # here: the floor's process imports this module and needs none of it

    print("\nmedians (s)       " + "".join(f"{r:>14}" for r in runners))
    for n in sizes:
        row = "".join(f"{statistics.median(results[(n, r)]):14.2f}" for r in runners)
        print(f"  N={n:<14}{row}")
    print("\nratios (medians)")
    for n in sizes:
        med = {r: statistics.median(results[(n, r)]) for r in runners}
        if "sluice" not in med:
            continue
        parts = []
        for peer in ("ansible", "ansible-nocm"):
            if peer in med:
                speedup = med[peer] / med["sluice"]
                goal = "ok" if speedup >= 5 else "MISSED"
                parts.append(f"{peer}/sluice {speedup:5.1f}× (goal ≥5: {goal})")
        if "floor" in med:
            over = med["sluice"] / med["floor"]
            goal = "ok" if over <= 1.35 else "MISSED"
            parts.append(f"sluice/floor {over:4.2f}× (goal ≤1.35: {goal})")
        if "floor-gc" in med:
            parts.append(f"sluice/floor-gc {med['sluice'] / med['floor-gc']:4.2f}×")
        if "floor-spool" in med and "floor" in med:
            parts.append(f"floor-spool/floor {med['floor-spool'] / med['floor']:4.2f}×")
        if "sluice-nospool" in med and "floor" in med:
            parts.append(f"sluice-nospool/floor {med['sluice-nospool'] / med['floor']:4.2f}×")
        if "sluice-noop" in med and "floor" in med:
            ssh_part = med["sluice"] - med["sluice-noop"]
            parts.append(
                f"engine alone (sluice-noop) {med['sluice-noop']:.2f} s, so sluice's SSH part "
                f"≈ {ssh_part:.2f} s vs the whole floor process {med['floor']:.2f} s"
            )
        print(f"  N={n:<5} " + "; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20,200")
    parser.add_argument("--reps", type=int, default=0, help="default: 5 for N≤50, else 3")
    parser.add_argument("--runners", default=",".join(RUNNERS))
    parser.add_argument("--parallel", default="20:20,200:50", help="N:P pairs")
    args = parser.parse_args()
    from servers import start_sshd

    sizes = [int(s) for s in args.sizes.split(",")]
    runners = [r for r in args.runners.split(",") if r]
    unknown = set(runners) - set(RUNNERS)
    if unknown:
        parser.error(f"unknown runners {sorted(unknown)}; known: {', '.join(RUNNERS)}")
    if any(r.startswith("ansible") for r in runners) and not (BIN / "ansible-playbook").exists():
        parser.error("ansible-playbook not in the venv: uv pip install ansible-core")
    par = dict(tuple(map(int, pair.split(":"))) for pair in args.parallel.split(","))  # type: ignore[misc]
    server = start_sshd()
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    remote = Path(tempfile.mkdtemp(prefix="sluice-bench-remote-"))
    remote.chmod(0o777)
    try:
        setup = Setup(
            server.host, server.port, server.user, server.client_key_path,
            server.known_hosts_path, remote, work,
        )  # fmt: skip
        print(
            f"sshd on {server.host}:{server.port} as {server.user}; sluice vs {', '.join(runners)}"
        )
        bench(setup, sizes, lambda n: args.reps or (5 if n <= 50 else 3), runners, par)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(remote, ignore_errors=True)


if __name__ == "__main__":
    main()
