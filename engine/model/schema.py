"""The estate file's keys: one table per section, each key with its type and default.

Executor and check kinds add their own keys here, so that every key an estate may use is declared
in one place and an unknown one is caught (with a "did you mean") before anything runs. How a
value becomes a key's value is :mod:`sluice.engine.model.convert`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Key:
    """One key an estate table may hold.

    ``kind`` is one of: str, template, int, float, bool, duration, range, share, increase,
    str_list, share_list, status_list, table (string → template), any_table (free-form TOML
    table, templated strings inside), any_list (a list of tables), datetime (a TOML datetime or
    date), choice.
    """

    kind: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    #: templates may use ``{response.X}`` (HTTP polling)
    response: bool = False
    #: a command a shell runs: placeholders must stand bare, outside shell quotes
    shell: bool = False


def _common_apply_keys() -> dict[str, Key]:
    return {
        "kind": Key("choice", required=True, choices=("local", "ssh", "http", "simulated", "tofu")),
        "timeout": Key("duration", default=900.0),
        "expected_duration": Key("duration"),
    }


def _stop_keys() -> dict[str, Key]:
    """How abort and timeout stop an apply: this signal to its process group, SIGKILL after the grace."""
    return {
        "stop_signal": Key(
            "choice", default="SIGTERM", choices=("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
        ),
        "stop_grace": Key("duration", default=30.0),
    }


EXECUTOR_KEYS: dict[str, dict[str, Key]] = {
    "local": {
        "apply": Key("template", required=True, shell=True),
        "rollback": Key("template", shell=True),
        "workdir": Key("str"),
        "env": Key("table"),
        **_stop_keys(),
    },
    "ssh": {
        "host": Key("template", required=True),
        "port": Key("int", default=22, minimum=1, maximum=65535),
        "user": Key("template"),
        "key": Key("str"),
        "known_hosts": Key("str", default="~/.ssh/known_hosts"),
        "jump": Key("template"),
        "connect_timeout": Key("duration", default=10.0),
        "keepalive": Key("duration", default=15.0),
        "max_sessions": Key("int", default=8, minimum=1),
        "apply": Key("template", required=True, shell=True),
        "rollback": Key("template", shell=True),
        "env": Key("table"),
        "spool": Key("bool", default=True),
        "spool_dir": Key("str", default="~/.sluice/applies"),
        **_stop_keys(),
    },
    "http": {
        "url": Key("template", required=True),
        "method": Key("choice", default="POST", choices=("POST", "PUT", "PATCH", "GET")),
        "body": Key("any_table"),
        "headers": Key("table"),
        "success_status": Key("status_list", default=(200, 201, 202, 204)),
        "poll_url": Key("template", response=True),
        "poll_interval": Key("duration", default=5.0),
        "poll_field": Key("str"),
        "success_values": Key("str_list", default=("success",)),
        "failure_values": Key("str_list", default=("failed", "error", "canceled")),
        "cancel_url": Key("template", response=True),
        "cancel_method": Key("choice", default="POST", choices=("POST", "PUT", "DELETE")),
        "rollback_body": Key("any_table"),
        "ca": Key("str"),
        "insecure": Key("bool", default=False),
    },
    "tofu": {
        "binary": Key("str", default="tofu"),
        "dir": Key("template", required=True),
        "workspace": Key("template"),
        "var_file": Key("template"),
        "vars": Key("table"),
        "backend_config": Key("table"),
        "init": Key("choice", default="auto", choices=("auto", "always", "never")),
        "lock_timeout": Key("duration", default=0.0),
        "stop_grace": Key("duration", default=300.0),
        "version_output": Key("str"),
        "fail_on_check_warnings": Key("bool", default=False),
        "env": Key("table"),
    },
    "simulated": {
        "duration": Key("range", default=(1.0, 3.0)),
        "failure_rate": Key("float", default=0.0, minimum=0.0, maximum=1.0),
        "fail_targets": Key("str_list", default=()),
        "hang_targets": Key("str_list", default=()),
    },
}
for _keys in EXECUTOR_KEYS.values():
    _keys.update(_common_apply_keys())

_CHECK_COMMON: dict[str, Key] = {
    "source": Key("choice", required=True, choices=("prometheus", "http", "simulated")),
    "max": Key("float"),
    "min": Key("float"),
    "max_increase": Key("increase"),
    "interval": Key("duration", default=10.0),
    "failure_limit": Key("int", default=0, minimum=0),
    "inconclusive_limit": Key("int", default=0, minimum=0),
    "consecutive_error_limit": Key("int", default=4, minimum=0),
    "baseline": Key("choice", default="self", choices=("self", "control")),
    "timeout": Key("duration", default=10.0),
    "description": Key("str"),
    # Judging (docs/judging.md): each measurement against the limits, or the wave's samples
    # against the baseline's by a one-sided Mann-Whitney U test at significance ``alpha``.
    "compare": Key("choice", default="threshold", choices=("threshold", "mann-whitney")),
    "alpha": Key("float", default=0.05, minimum=0.0, maximum=0.5),
}

CHECK_KEYS: dict[str, dict[str, Key]] = {
    "prometheus": {
        "url": Key("template", required=True),
        "query": Key("template", required=True),
        "token": Key("template"),
        "username": Key("template"),
        "password": Key("template"),
        "headers": Key("table"),
        "ca": Key("str"),
        "insecure": Key("bool", default=False),
        "baseline_window": Key("duration"),
        "aggregate": Key("choice", choices=("max", "min", "mean", "sum", "median")),
    },
    "http": {
        "url": Key("template", required=True),
        "method": Key("choice", default="GET", choices=("GET", "HEAD", "POST")),
        "headers": Key("table"),
        "expect_status": Key("int", default=200, minimum=100, maximum=599),
        "max_latency": Key("duration"),
        "json_path": Key("str"),
        "ca": Key("str"),
        "insecure": Key("bool", default=False),
    },
    "simulated": {
        "metric": Key("str", required=True),
        "base": Key("float"),
        "noise": Key("float", default=0.08, minimum=0.0),
    },
}
for _keys in CHECK_KEYS.values():
    _keys.update(_CHECK_COMMON)

ESTATE_KEYS = {
    "name": Key("str", required=True),
    "history": Key("str", default=".sluice/history.db"),
    "description": Key("str"),
}

CHANNEL_KEYS = {
    "name": Key("str", required=True),
    "waves": Key("share_list"),
    "max_parallel": Key("int", default=1, minimum=1),
    "max_failures": Key("share", default=0),
    "soak": Key("duration", default=0.0),
    "gate": Key("choice", default="auto", choices=("auto", "manual")),
    "entry": Key("choice", default="auto", choices=("auto", "manual")),
    "approvers": Key("int", default=1, minimum=1),
    "on_failure": Key("choice", default="halt", choices=("halt", "rollback")),
    "checks": Key("str_list", default=()),
    "review": Key("choice", default="none", choices=("none", "plans")),
    "description": Key("str"),
    # Rear guard: keep sampling a passed wave's checks this long while later waves run.
    "watch_after": Key("duration", default=0.0),
}

TARGET_KEYS = {
    "channel": Key("str", required=True),
    "executor": Key("str", required=True),
    "vars": Key("any_table"),
    "dashboard": Key("template"),
    "modules": Key("str_list"),
    "aliases": Key("str_list", default=()),
    "description": Key("str"),
}

MODULE_KEYS = {
    "versions": Key("str_list", required=True),
    "initial": Key("str", required=True),
    "description": Key("str"),
}

SIMULATION_KEYS = {
    "seed": Key("int", default=0),
    "regressions": Key("regressions", default=()),
}

REGRESSION_KEYS = {
    "module": Key("str", required=True),
    "version": Key("str", required=True),
    "metric": Key("str", required=True),
    "channels": Key("str_list", default=()),
    "factor": Key("float", default=3.0, minimum=0.0),
    # the regression starts this long after a target began running the version (rear guard demo)
    "after": Key("duration", default=0.0),
}

NOTIFY_EVENTS = (
    "wave_done",
    "gate_failed",
    "gate_inconclusive",
    "awaiting_approval",
    "rollout_finished",
    "bypass",
)

NOTIFY_KEYS = {
    "url": Key("template", required=True),
    "format": Key("choice", default="slack", choices=("slack", "json")),
    "events": Key("str_list", default=NOTIFY_EVENTS),
    "headers": Key("table"),
    "timeout": Key("duration", default=5.0),
    "retries": Key("int", default=3, minimum=0, maximum=10),
}

TOP_LEVEL = (
    "estate",
    "channels",
    "targets",
    "executors",
    "checks",
    "modules",
    "simulation",
    "notify",
    "windows",
)
