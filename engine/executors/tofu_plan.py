"""Reading OpenTofu/Terraform: its ``-json`` UI stream, saved plans, state-lock diagnostics.

Pure functions and small value types, no processes: :mod:`sluice.engine.executors.tofu` runs the
tool and feeds what it prints through :class:`StreamProgress`; the preview and the review gate
normalise ``show -json PLANFILE`` with :func:`normalise` and group the results with
:func:`group_plans`.

A *normalised* plan is what makes two targets' plans comparable: no-op and read changes dropped,
the target's name (and its declared aliases) replaced by ``{target}`` in addresses, actions kept
(``replace`` split into destroy-first / create-first, with Terraform's reason), and the *paths* of
changed attributes, never their values (values differ per target and may be secret).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Actions of a resource change that are not a change.
QUIET = ("no-op", "read")
#: An apply's progress lines start "[3/5 resources] " (the console's target row shows "3/5 resources").
PROGRESS_LINE = re.compile(r"^\[(\d+)/(\d+|\?) resources\] ")
#: Normalised actions that lose something (flagged as outliers).
DESTRUCTIVE = ("delete", "replace (destroy-first)", "replace (create-first)")


def parse_line(line: str) -> dict[str, Any] | None:
    """One ``-json`` UI message, or None for anything else (a provisioner's raw line…)."""
    if not line.startswith("{"):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) and "type" in message else None


@dataclass
class StreamProgress:
    """What one command's ``-json`` stream said: resources planned/applied/failed, diagnostics."""

    planned: int = 0
    applied: int = 0
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lock: str = ""
    stale: bool = False
    summary: dict[str, int] | None = None
    tainted: list[str] = field(default_factory=list)
    tool: str = ""

    def feed(self, message: dict[str, Any]) -> str | None:
        """Take one message; return the human line for the log (None to show nothing)."""
        kind = message.get("type")
        text = str(message.get("@message", ""))
        if kind == "version":
            self.tool = "tofu" if "tofu" in message else "terraform"
            return None
        if kind == "planned_change":
            if message.get("change", {}).get("action") not in QUIET:
                self.planned += 1
        elif kind in ("apply_start", "apply_complete"):
            self.applied += kind == "apply_complete"
            return f"[{self.applied}/{self.planned or '?'} resources] {text}"
        elif kind == "apply_errored":
            self.failed.append(_address(message.get("hook")))
        elif kind == "change_summary":
            self.summary = {k: v for k, v in message.get("changes", {}).items() if k != "operation"}
        elif kind == "diagnostic":
            self._diagnostic(message.get("diagnostic") or {})
        elif kind == "resource_drift" or kind == "outputs":
            return None
        return text or None

    def _diagnostic(self, diagnostic: dict[str, Any]) -> None:
        summary = str(diagnostic.get("summary", "")).strip()
        detail = str(diagnostic.get("detail", ""))
        address = str(diagnostic.get("address", ""))
        where = f"{address}: " if address else ""
        if diagnostic.get("severity") == "warning":
            self.warnings.append(f"{where}{summary}" + (f": {_first(detail)}" if detail else ""))
            return
        if "state lock" in summary.lower():
            self.lock = lock_reason(detail)
        if "stale" in summary.lower():
            self.stale = True
        self.errors.append(f"{where}{summary}" + (f": {_first(detail)}" if detail else ""))

    @property
    def changes(self) -> int:
        """Resource changes the plan's summary counted (add + change + remove + import)."""
        if not self.summary:
            return self.planned
        return sum(v for k, v in self.summary.items() if k in ("add", "change", "remove", "import"))

    def progress(self) -> str:
        return f"{self.applied}/{self.planned} resources"

    def reason(self, operation: str) -> str:
        """One line naming what failed: the resource and the diagnostic's summary."""
        if self.lock:
            return self.lock
        if self.stale:
            return "plan is stale — the state changed after it was made; re-plan"
        what = ", ".join(self.failed)
        error = self.errors[0] if self.errors else "no diagnostic"
        if what and what not in error:
            error = f"{what}: {error}"
        done = f" ({self.progress()} applied)" if operation == "apply" and self.planned else ""
        return f"{operation} failed{done}: {error}"


def _address(hook: Any) -> str:
    if isinstance(hook, dict):
        return str((hook.get("resource") or {}).get("addr", ""))
    return ""


def _first(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


_LOCK_FIELD = re.compile(r"^\s*(ID|Path|Operation|Who|Created):\s*(.*?)\s*$", re.MULTILINE)


def lock_reason(detail: str) -> str:
    """ "state locked by alice@laptop since 10:02 (lock 0647fc72…), operation apply"."""
    fields = dict(_LOCK_FIELD.findall(detail))
    who = fields.get("Who") or "someone"
    created = fields.get("Created", "")
    since = ""
    match = re.search(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d)(:\d\d)?", created)
    if match:
        since = f" since {match.group(2)} {match.group(1)}"
    lock_id = fields.get("ID", "")
    shown_id = f" (lock {lock_id[:8]}…)" if len(lock_id) > 8 else f" (lock {lock_id})"
    operation = fields.get("Operation", "").removeprefix("OperationType").lower()
    return (
        f"state locked by {who}{since}{shown_id if lock_id else ''}"
        + (f", operation {operation}" if operation else "")
        + "; retry when it is released"
    )


# ---------------------------------------------------------------------------- normalising plans


def normalise(plan: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The comparable shape of ``show -json`` output for a target called one of ``names``."""
    resources = []
    for change in plan.get("resource_changes") or ():
        detail = change.get("change") or {}
        actions = list(detail.get("actions") or ())
        action = _action(actions)
        if action in QUIET:
            continue
        entry: dict[str, Any] = {
            "address": _generic(str(change.get("address", "")), names),
            "action": action,
            "paths": changed_paths(detail.get("before"), detail.get("after"))
            + sorted(
                "/".join(p)
                for p in _leaf_paths(detail.get("after_unknown"))
                if action not in ("create", "delete")
            ),
        }
        entry["paths"] = sorted(set(entry["paths"]))
        if change.get("action_reason"):
            entry["reason"] = str(change["action_reason"])
        resources.append(entry)
    outputs = []
    for name, change in sorted((plan.get("output_changes") or {}).items()):
        action = _action(list((change or {}).get("actions") or ()))
        if action not in QUIET:
            outputs.append({"name": name, "action": action})
    resources.sort(key=lambda r: r["address"])
    return {"resources": resources, "outputs": outputs}


def _action(actions: list[str]) -> str:
    if actions == ["delete", "create"]:
        return "replace (destroy-first)"
    if actions == ["create", "delete"]:
        return "replace (create-first)"
    return "+".join(actions) if actions else "no-op"


def _generic(address: str, names: Iterable[str]) -> str:
    for name in sorted(set(names), key=len, reverse=True):
        if name:
            address = address.replace(name, "{target}")
    return address


def changed_paths(before: Any, after: Any, at: tuple[str, ...] = ()) -> list[str]:
    """Attribute paths whose value differs between ``before`` and ``after`` (values dropped)."""
    if isinstance(before, dict) and isinstance(after, dict):
        paths: list[str] = []
        for key in sorted(set(before) | set(after)):
            paths += changed_paths(before.get(key), after.get(key), (*at, str(key)))
        return paths
    if before is None or after is None or before == after:
        # A create or a delete has no "changed attributes", only the whole object.
        return [] if before == after or not at else ["/".join(at)]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        paths = []
        for index, (b, a) in enumerate(zip(before, after, strict=True)):
            paths += changed_paths(b, a, (*at, str(index)))
        return paths
    return ["/".join(at)] if at else []


def _leaf_paths(unknown: Any, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if unknown is True:
        return [at] if at else []
    if isinstance(unknown, dict):
        return [p for k, v in unknown.items() for p in _leaf_paths(v, (*at, str(k)))]
    if isinstance(unknown, list):
        return [p for i, v in enumerate(unknown) for p in _leaf_paths(v, (*at, str(i)))]
    return []


def plan_hash(normalised: Mapping[str, Any]) -> str:
    """sha256 of the normalised plan's canonical JSON: equal plans, equal hashes."""
    text = json.dumps(normalised, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def destroys(normalised: Mapping[str, Any]) -> bool:
    """Whether the plan deletes or replaces any resource."""
    return any(r["action"] in DESTRUCTIVE for r in normalised.get("resources", ()))


def summary(normalised: Mapping[str, Any]) -> str:
    """ "2 to create, 1 to update, 1 to replace" (or "no changes")."""
    counts: dict[str, int] = {}
    for resource in normalised.get("resources", ()):
        verb = "replace" if resource["action"].startswith("replace") else resource["action"]
        counts[verb] = counts.get(verb, 0) + 1
    if not counts:
        return "no changes" + (" to resources" if normalised.get("outputs") else "")
    return ", ".join(f"{n} to {verb}" for verb, n in sorted(counts.items()))


@dataclass
class PlanGroup:
    """Targets whose normalised plans are identical."""

    hash: str
    plan: dict[str, Any]
    targets: list[str]
    channels: list[str]
    outlier: list[str] = field(default_factory=list)  # why it is one (empty: it is not)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "targets": self.targets,
            "channels": self.channels,
            "summary": summary(self.plan),
            "destroys": destroys(self.plan),
            "outlier": bool(self.outlier),
            "outlier_reasons": self.outlier,
            "resources": self.plan["resources"],
            "outputs": self.plan["outputs"],
        }


def group_plans(
    plans: Mapping[str, Mapping[str, Any]], channel_of: Mapping[str, str]
) -> list[PlanGroup]:
    """Group targets by plan hash, largest group first; flag the outliers.

    An outlier is a group whose plan destroys or replaces something, or one that differs from
    the plan most of its channel's targets have (the channel's majority, ties to the larger
    estate-wide group).
    """
    by_hash: dict[str, PlanGroup] = {}
    for target, plan in plans.items():
        digest = plan_hash(plan)
        group = by_hash.setdefault(digest, PlanGroup(digest, dict(plan), [], []))
        group.targets.append(target)
        if channel_of.get(target, "") not in group.channels:
            group.channels.append(channel_of.get(target, ""))
    groups = sorted(by_hash.values(), key=lambda g: (-len(g.targets), g.targets[0]))
    rank = {g.hash: index for index, g in enumerate(groups)}
    digest_of = {t: plan_hash(p) for t, p in plans.items()}
    majority: dict[str, str] = {}
    for channel in {channel_of.get(t, "") for t in plans}:
        members = [t for t in plans if channel_of.get(t, "") == channel]
        counts: dict[str, int] = {}
        for t in members:
            counts[digest_of[t]] = counts.get(digest_of[t], 0) + 1
        majority[channel] = min(counts, key=lambda h: (-counts[h], rank[h]))
    for group in groups:
        if destroys(group.plan):
            group.outlier.append("destroys or replaces resources")
        differs = sorted(
            {
                channel_of.get(t, "")
                for t in group.targets
                if majority[channel_of.get(t, "")] != group.hash
            }
        )
        if differs:
            group.outlier.append(f"differs from the rest of {', '.join(differs)}")
    return groups


# ---------------------------------------------------------------------------- showing plans

SYMBOL = {
    "create": "+",
    "delete": "-",
    "update": "~",
    "replace (destroy-first)": "-/+",
    "replace (create-first)": "+/-",
}


def change_lines(plan: Mapping[str, Any]) -> list[str]:
    """One line per resource change: symbol, address, action (reason), changed attribute paths."""
    lines = []
    for r in plan.get("resources", ()):
        why = f" ({r['reason']})" if r.get("reason") else ""
        paths = f"  [{', '.join(r['paths'])}]" if r.get("paths") else ""
        lines.append(f"{SYMBOL.get(r['action'], '?'):>3} {r['address']}  {r['action']}{why}{paths}")
    for o in plan.get("outputs", ()):
        lines.append(f"{SYMBOL.get(o['action'], '?'):>3} output.{o['name']}  {o['action']}")
    return lines


def group_lines(number: int, group: Mapping[str, Any]) -> list[str]:
    """A group (``PlanGroup.to_dict()``) as text: its head, its targets, its changes."""
    flag = f"  ⚠ OUTLIER: {'; '.join(group['outlier_reasons'])}" if group["outlier"] else ""
    head = (
        f"group {number} · {len(group['targets'])} target(s) · {group['summary']} · "
        f"{group['hash'][:12]}{flag}"
    )
    lines = [head, f"  targets: {', '.join(sorted(group['targets']))}"]
    return lines + [f"  {line}" for line in change_lines(group)]


def progress_of(line: str) -> str | None:
    """ "3/5 resources" from an apply's progress line (see :data:`PROGRESS_LINE`), else None."""
    found = PROGRESS_LINE.match(line)
    return f"{found[1]}/{found[2]} resources" if found else None
