"""The engine never imports textual: every engine module, in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib, json, pkgutil, sys, traceback
import engine

failures = {}
def onerror(name):
    failures[name] = traceback.format_exc()

names = ["engine"]
for info in pkgutil.walk_packages(engine.__path__, "engine.", onerror=onerror):
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
    "tui": sorted(m for m in sys.modules if m == "tui" or m.startswith("tui.")),
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
    assert {"engine.estate", "engine.plan", "engine.cli", "engine.commands"} <= imported
    assert any(name.startswith("engine.executors.") for name in imported)
    assert report["textual"] == []
    assert report["tui"] == []
