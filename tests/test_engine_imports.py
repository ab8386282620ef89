"""The engine never imports textual: every engine module, in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib, json, pkgutil, sys, traceback
import sluice.cli, sluice.engine

failures = {}
def onerror(name):
    failures[name] = traceback.format_exc()

names = ["sluice.engine", "sluice.cli"]
for package in (sluice.engine, sluice.cli):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".", onerror=onerror):
        if not info.name.endswith(".__main__"):  # `python -m sluice.cli`: runs the program
            names.append(info.name)
for name in names:
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc()
print(json.dumps({
    "imported": names,
    "failures": failures,
    "textual": sorted(m for m in sys.modules if m == "textual" or m.startswith("textual.")),
    "tui": sorted(m for m in sys.modules if m == "sluice.tui" or m.startswith("sluice.tui.")),
}))
"""


def test_every_engine_module_imports_without_textual() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=100
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failures"] == {}, "\n".join(report["failures"].values())
    # The walk really found the engine, subpackages included.
    imported = set(report["imported"])
    assert {
        "sluice.engine.model.estate",
        "sluice.engine.model.plan",
        "sluice.cli",
        "sluice.cli.commands",
    } <= imported
    assert any(name.startswith("sluice.engine.executors.") for name in imported)
    assert report["textual"] == []
    assert report["tui"] == []


# ------------------------------------------------------------------ what `sluice run` loads

#: Run as the ``sluice`` program would be (``main()`` with no argv, so with its collector policy);
#: the modules loaded by the end go to a file, and whether the collector was on while the rollout
#: ran is noted from inside it.
RUN_PROBE = """
import atexit, gc, json, sys
out, *argv = sys.argv[1:]
seen = {}
import sluice.engine.app.headless
drive = sluice.engine.app.headless.run_headless

async def run_headless(*args, **kwargs):
    seen["collector_on_during_rollout"] = gc.isenabled()
    return await drive(*args, **kwargs)

sluice.engine.app.headless.run_headless = run_headless

def report():
    with open(out, "w") as f:
        json.dump({"modules": sorted(sys.modules), **seen}, f)

atexit.register(report)
sys.argv = ["sluice", *argv]
if "--as-module" in sys.argv:  # `python -m sluice.cli`
    import runpy
    sys.argv.remove("--as-module")
    runpy.run_module("sluice.cli", run_name="__main__", alter_sys=True)
else:
    from sluice.cli import main
    sys.exit(main())
"""

#: Never needed by a rollout over SSH with no checks and no webhooks.
NOT_FOR_SSH = (
    "aiohttp",  # HTTP/Prometheus checks and executors, webhook notifications
    "textual",
    "rich",  # tables of `sluice plan` / `history`
    "tomli_w",  # `sluice export`
    "sluice.tui",
    "sluice.engine.checks.prometheus",
    "sluice.engine.checks.http",
    "sluice.engine.executors.http",
    "sluice.engine.executors.local",
    "sluice.engine.app.report",
    "sluice.engine.store.replay",
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ssh_estate(folder: Path, initial: str = "1.0.0") -> Path:
    """Two targets over SSH to a port nobody listens on: the SSH path runs, and fails fast."""
    (folder / "known_hosts").write_text("")
    path = folder / "estate.toml"
    path.write_text(
        f"""
[estate]
name = "probe"
history = "history.db"

[[channels]]
name = "fleet"
max_parallel = 2
max_failures = 2

[targets.node-1]
channel = "fleet"
executor = "box"

[targets.node-2]
channel = "fleet"
executor = "box"

[executors.box]
kind = "ssh"
host = "127.0.0.1"
port = {_free_port()}
user = "deploy"
known_hosts = "known_hosts"
connect_timeout = "5s"
apply = "echo {{version}} > /tmp/{{target}}.version"

[modules.app]
versions = ["1.0.0", "2.0.0"]
initial = "{initial}"
"""
    )
    return path


def _run_probe(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "probe.json"
    result = subprocess.run(
        [sys.executable, "-c", RUN_PROBE, str(out), *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=100,
    )
    assert out.exists(), result.stderr
    return result, json.loads(out.read_text())


@pytest.mark.parametrize("how", ["script", "module"])
def test_sluice_run_over_ssh_loads_only_what_ssh_needs(tmp_path: Path, how: str) -> None:
    estate = _ssh_estate(tmp_path)
    extra = ["--as-module"] if how == "module" else []
    result, report = _run_probe(
        tmp_path, "run", str(estate), "app@2.0.0", "--headless", "--json", *extra
    )
    # Both targets failed to connect (refused): the rollout ran over the SSH executor to its end.
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    failed = [e for e in events if e["kind"] == "apply_finished" and e["outcome"] == "failed"]
    assert len(failed) == 2, result.stdout
    modules = set(report["modules"])
    assert {"asyncssh", "sluice.engine.executors.ssh", "sluice.engine.store.history"} <= modules
    loaded = sorted(
        m for m in modules for name in NOT_FOR_SSH if m == name or m.startswith(name + ".")
    )
    assert loaded == []
    # Start-up runs without the cyclic collector; the rollout itself must not.
    assert report["collector_on_during_rollout"] is True


def test_sluice_run_of_a_simulated_estate_loads_no_network_client(tmp_path: Path) -> None:
    estate = tmp_path / "estate.toml"
    estate.write_text((ROOT / "sample_estate.toml").read_text())
    result, report = _run_probe(
        tmp_path, "run", str(estate), "postgres-operator@2.0.0", "--headless", "--until-wave", "1",
        "--time-scale", "0",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr  # stopped after wave 1, resumable
    loaded = {m.split(".")[0] for m in report["modules"]}
    assert not loaded & {"asyncssh", "aiohttp", "textual", "rich", "tomli_w"}
    assert not [m for m in report["modules"] if m.startswith("sluice.tui")]
    assert report["collector_on_during_rollout"] is True


def test_sluice_run_with_nothing_to_apply_loads_no_executor(tmp_path: Path) -> None:
    estate = _ssh_estate(tmp_path, initial="2.0.0")  # every target is already at 2.0.0
    result, report = _run_probe(tmp_path, "run", str(estate), "app@2.0.0", "--headless")
    assert result.returncode == 0, result.stderr
    assert not {m for m in report["modules"] if m == "asyncssh" or m.startswith("asyncssh.")}
