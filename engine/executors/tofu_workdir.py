"""One target's OpenTofu/Terraform invocation: its directory, environment, variables, init state.

Split from :mod:`.tofu` so that the executor reads as the steps (workspace, init, plan, apply)
and this as what those steps are given.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.engine.executors.base import Job
from sluice.engine.executors.orphans import MARKER, marker_value
from sluice.engine.model.template import TemplateError, placeholders, render

_SOURCE_LINE = re.compile(r"^\s*source\s*=.*$", re.MULTILINE)


class ToolError(Exception):
    """A step failed before or around plan/apply (workspace, init, a template): the reason."""


@dataclass(frozen=True)
class Workdir:
    """One target's rendered invocation: where, with which environment and variables."""

    cwd: Path
    env: dict[str, str]
    var_args: tuple[str, ...]
    init_args: tuple[str, ...]
    name: str  # the target


def build_workdir(
    settings: Mapping[str, Any], base: Path, work: Path, estate: str, job: Job
) -> Workdir:
    """Render ``job``'s directory, environment, ``-var`` and ``-backend-config`` arguments.

    A variable whose template uses ``{env.X}`` (a secret) travels as ``TF_VAR_NAME`` in the
    environment, never on the command line where ``ps`` shows it.
    """
    ctx = job.context
    try:
        cwd = base / render(str(settings["dir"]), ctx).text
        env = dict(os.environ)
        env.update(TF_IN_AUTOMATION="1", TF_INPUT="0")
        for name, template in (settings.get("env") or {}).items():
            env[name] = render(template, ctx).text
        # Marked like a local apply: a resumed sluice waits for one a killed sluice left.
        env[MARKER] = marker_value(estate, job.target)
        if not env.get("TF_PLUGIN_CACHE_DIR"):
            cache = work / "plugin-cache"
            cache.mkdir(parents=True, exist_ok=True)
            env["TF_PLUGIN_CACHE_DIR"] = str(cache)
        if settings.get("workspace"):
            env.pop("TF_WORKSPACE", None)  # set after `workspace list` has checked it
        var_args: list[str] = []
        if settings.get("var_file"):
            var_args.append(f"-var-file={render(str(settings['var_file']), ctx).text}")
        for name, template in (settings.get("vars") or {}).items():
            value = render(str(template), ctx).text
            if any(p.startswith("env.") for p in placeholders(str(template))):
                env[f"TF_VAR_{name}"] = value
            else:
                var_args.append(f"-var={name}={value}")
        init_args = [
            f"-backend-config={k}={render(str(v), ctx).text}"
            for k, v in (settings.get("backend_config") or {}).items()
        ]
    except TemplateError as exc:
        raise ToolError(str(exc)) from None
    return Workdir(cwd.resolve(), env, tuple(var_args), tuple(init_args), job.target)


def init_fingerprint(binary: str, work: Workdir) -> str:
    """What an init depends on: module sources, backend config, variables, the binary, and what
    is installed (an init run by hand since, of another version, changes that)."""
    parts = [binary, *work.init_args, *work.var_args]
    parts += sorted(f"{k}={v}" for k, v in work.env.items() if k.startswith("TF_VAR_"))
    for tf in sorted(work.cwd.glob("*.tf")):
        parts += _SOURCE_LINE.findall(tf.read_text(errors="replace"))
    for installed in (".terraform.lock.hcl", ".terraform/modules/modules.json"):
        path = work.cwd / installed
        if path.is_file():
            parts.append(hashlib.sha256(path.read_bytes()).hexdigest())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
