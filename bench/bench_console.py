"""Console under load: a 1,000-target rollout streaming ≥ 200 events/s into the Textual console.

Run: ``.venv/bin/python bench/bench_console.py [--seconds S] [--presses N] [--strict]``

The estate has 1,000 targets in 4 channels (simulated applies that cost no CPU, simulated checks
every second, auto gates), so events arrive as fast as a real large rollout makes them: apply
starts, output lines, finishes, and hundreds of metric samples a second. The console runs in this
process (``App.run_test`` at 120×40: the real compositor, a headless terminal), recording to a
real SQLite history, so the CPU figure is the whole console process.

Measured, in one run:
- idle: CPU share of one core with the estate open and no rollout;
- load: events/s, repaints (coalesced frames), CPU share while the rollout streams;
- key → effect, median and worst: ``space`` until the engine is paused (or resumed), and ``down``
  until the tree's selection moved and the metrics and log panes follow it; ``m`` until the
  estate matrix, painted for this press, lists all 1,000 targets and a frame was drawn;
  ``enter`` on a target until its detail shows what history says of that target, its charts
  mounted, and a frame was drawn (both read from the history the rollout is writing);
  ``escape`` back. Keys go through the driver's message queue exactly as terminal input does.
  ``enter`` comes more than a second after the cursor last moved, so the console's read-ahead
  of the selected target is stale and the detail is read at the key (the slower path).
- host: the share of the CPUs' time the hypervisor gave to others (a busy host slows every key).

Goals (issue 5): key → effect < 100 ms; CPU < 50 % of a core under load; updates coalesced.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomli_w  # noqa: E402
from textual import events  # noqa: E402

from sluice.engine.model.estate import load_estate  # noqa: E402
from sluice.engine.support.clock import Clock  # noqa: E402
from sluice.tui.app import SluiceApp  # noqa: E402
from sluice.tui.driver import RolloutDriver, open_session  # noqa: E402
from sluice.tui.screens.matrix import MatrixScreen  # noqa: E402
from sluice.tui.screens.target_detail import TargetDetailScreen  # noqa: E402
from sluice.tui.widgets.measure_chart import MeasureChart  # noqa: E402
from sluice.tui.widgets.metrics import MetricsPanel  # noqa: E402
from sluice.tui.widgets.rollout_log import RolloutLog  # noqa: E402
from sluice.tui.widgets.rollout_view import RolloutView  # noqa: E402

TARGETS = 1000
CHANNELS = (  # name, share of the estate, waves (big ones: the load comes early)
    ("ephemeral", 0.1, ["100%"]),
    ("dev", 0.2, ["100%"]),
    ("staging", 0.3, ["50%", "100%"]),
    ("production", 0.4, ["50%", "100%"]),
)
GOAL_KEY_MS = 100.0
GOAL_CPU = 0.5
GOAL_EVENTS = 200.0


def write_estate(directory: Path) -> Path:
    doc: dict[str, Any] = {
        "estate": {"name": "bench-1000", "history": "history.db"},
        "channels": [
            {
                "name": name,
                "waves": waves,
                "max_parallel": 250,
                "max_failures": "5%",
                "soak": "4s",
                "gate": "auto",
                "checks": ["p99_latency", "error_rate", "restarts"],
            }
            for name, _, waves in CHANNELS
        ],
        "executors": {
            "sim": {"kind": "simulated", "duration": "1s..2s", "failure_rate": 0.01},
        },
        "checks": {
            "p99_latency": {
                "source": "simulated",
                "metric": "p99_latency",
                "max": 0.25,
                "interval": "1s",
            },
            "error_rate": {
                "source": "simulated",
                "metric": "error_rate",
                "max": 0.01,
                "interval": "1s",
            },
            "restarts": {"source": "simulated", "metric": "restarts", "max": 2, "interval": "1s"},
        },
        "modules": {"postgres-operator": {"versions": ["1.12.0", "2.0.1"], "initial": "1.12.0"}},
        "targets": {},
    }
    for name, share, _ in CHANNELS:
        for i in range(int(TARGETS * share)):
            doc["targets"][f"{name[:4]}-{i:04d}"] = {"channel": name, "executor": "sim"}
    path = directory / "estate.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def host_steal() -> tuple[int, int]:
    """(steal, total) jiffies of every CPU so far (/proc/stat; zeros elsewhere): the share of
    time a hypervisor gave this machine's CPUs to others — a busy host slows every key."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def cpu_share(seconds: float) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) baseline to diff against."""
    return time.process_time(), time.monotonic()


async def measure_key(
    app: SluiceApp, key: str, effect: Any, timeout: float = 30.0, painted: bool = False
) -> float:
    """Milliseconds from the key entering the driver's queue until ``effect()`` is true (and,
    with ``painted``, the screen has drawn a frame after that: what the operator sees)."""
    char = " " if key == "space" else None
    start = time.perf_counter()
    app._driver.send_message(events.Key(key, char))  # type: ignore[union-attr]
    while not effect():
        if time.perf_counter() - start > timeout:
            return timeout * 1000
        await asyncio.sleep(0.0005)
    if painted:
        await asyncio.wait_for(app.screen.wait_for_refresh(), timeout)
    return (time.perf_counter() - start) * 1000


def follows(view: RolloutView) -> bool:
    """The metrics and log panes show what the tree has selected."""
    metrics = view.query_one(MetricsPanel)
    target = view.selected_target()
    log = view.query_one(RolloutLog)
    return (
        metrics.target == target and metrics.wave == view.selected_wave() and log.source == target
    )


async def run(seconds: float, presses: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        estate = load_estate(write_estate(Path(tmp)))
        session = open_session(estate)
        driver = RolloutDriver(session, Clock(1.0))
        app = SluiceApp(driver, offer_resume=False)
        repaints = 0

        def hook(message: Any) -> None:
            nonlocal repaints
            if isinstance(message, RolloutView.Changed):
                repaints += 1

        try:
            async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
                await pilot.pause(1.0)
                cpu0, wall0 = cpu_share(0)
                await asyncio.sleep(min(5.0, seconds / 3))
                idle = (time.process_time() - cpu0) / (time.monotonic() - wall0)

                plan = driver.plan("postgres-operator", "2.0.1")
                counted = 0

                def count(_: Any) -> None:
                    nonlocal counted
                    counted += 1

                app.console_screen.start(plan)
                rollout = driver.rollout
                assert rollout is not None
                rollout.bus.listen(count)
                await asyncio.sleep(2.0)  # into the first big wave
                repaints, counted = 0, 0
                cpu0, wall0 = cpu_share(0)
                steal0 = host_steal()
                view = app.console_screen.query_one(RolloutView)
                pause_ms: list[float] = []
                select_ms: list[float] = []
                matrix_ms: list[float] = []
                detail_ms: list[float] = []
                gap = seconds / (2 * presses)
                for _ in range(presses):
                    if rollout.outcome is not None:
                        break  # the rollout ended: stop measuring under load
                    # Pause, then resume at once: the rollout keeps streaming between presses.
                    for _press in range(2):
                        paused = rollout.paused
                        pause_ms.append(
                            await measure_key(app, "space", lambda p=paused: rollout.paused != p)
                        )
                    await asyncio.sleep(gap)
                    before = view.selection
                    select_ms.append(
                        await measure_key(
                            app, "down", lambda b=before: view.selection != b and follows(view)
                        )
                    )
                    await asyncio.sleep(gap)
                    painted = matrix_paints(app)
                    matrix_ms.append(
                        await measure_key(
                            app, "m", lambda p=painted: matrix_shown(app, p), painted=True
                        )
                    )
                    await measure_key(app, "escape", lambda: app.screen is app.console_screen)
                    if view.selected_target() is not None:
                        target = view.selected_target()
                        detail_ms.append(
                            await measure_key(
                                app, "enter", lambda t=target: detail_shown(app, t), painted=True
                            )
                        )
                        await measure_key(app, "escape", lambda: app.screen is app.console_screen)
                if rollout.paused:
                    rollout.resume()
                wall = time.monotonic() - wall0
                steal1 = host_steal()
                steal = (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1])
                load = (time.process_time() - cpu0) / wall
                events_per_s = counted / wall
                frames = repaints
                state = rollout.state
        finally:
            session.close()
    return {
        "idle_cpu": idle,
        "load_cpu": load,
        "events": counted,
        "events_per_s": events_per_s,
        "repaints": frames,
        "seconds": wall,
        "pause_ms": pause_ms,
        "select_ms": select_ms,
        "matrix_ms": matrix_ms,
        "detail_ms": detail_ms,
        "state": state,
        "steal": steal,
    }


def matrix_paints(app: SluiceApp) -> int:
    """How often the console's (reused) matrix screen has been painted so far."""
    if not app.is_screen_installed("matrix"):
        return 0
    screen = app.get_screen("matrix")
    return getattr(screen, "painted", 0)


def matrix_shown(app: SluiceApp, painted_before: int) -> bool:
    """The matrix is up, painted for this press (it is reused), with every target's row."""
    screen = app.screen
    return (
        isinstance(screen, MatrixScreen)
        and getattr(screen, "painted", 1) > painted_before  # (a sluice that built it anew)
        and len(screen.rows) == TARGETS + len(CHANNELS)
    )


def detail_shown(app: SluiceApp, target: str | None) -> bool:
    """The detail of ``target`` shows what history says of it (read on a thread), its charts
    drawn — not only the screen with the estate file's part."""
    screen = app.screen
    return (
        isinstance(screen, TargetDetailScreen)
        and getattr(screen, "loaded", True)  # (a sluice that read history on the UI loop)
        and screen.detail.name == target
        and (not screen.detail.series or bool(list(screen.query(MeasureChart))))
    )


def summary(values: list[float]) -> str:
    if not values:
        return "not measured"
    return (
        f"median {statistics.median(values):6.1f} ms, worst {max(values):6.1f} ms (n={len(values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="length of the load window (≤ 35 s: the rollout ends)",
    )
    parser.add_argument("--presses", type=int, default=20, help="key presses of each kind")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.presses))
    load_avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"sluice console under load — {TARGETS} targets, 120×40, {os.cpu_count()} CPUs, load average {load_avg}"
    )
    print(
        f"  events      {result['events']} in {result['seconds']:.1f} s = "
        f"{result['events_per_s']:.0f}/s (goal ≥ {GOAL_EVENTS:.0f}/s)"
    )
    per_frame = result["events"] / max(1, result["repaints"])
    print(
        f"  repaints    {result['repaints']} coalesced frames = "
        f"{result['repaints'] / result['seconds']:.1f}/s, {per_frame:.0f} events per frame"
    )
    print(f"  key space → engine paused/resumed   {summary(result['pause_ms'])}")
    print(f"  key down  → selection + panes moved {summary(result['select_ms'])}")
    print(f"  key m     → estate matrix shown     {summary(result['matrix_ms'])}")
    print(f"  key enter → target detail shown     {summary(result['detail_ms'])}")
    floor = statistics.median(result["pause_ms"])  # the cheapest key: the machine's floor now
    for key, name in (("matrix_ms", "m"), ("detail_ms", "enter")):
        if result[key]:
            ratio = statistics.median(result[key]) / max(floor, 1e-3)
            print(f"  key {name:<5} median = {ratio:.1f}× the space key's (the floor in this run)")
    print(
        f"  CPU         idle {result['idle_cpu']:.1%} of a core, under load "
        f"{result['load_cpu']:.1%} of a core ({result['load_cpu'] / max(result['idle_cpu'], 1e-3):.0f}× idle)"
    )
    print(
        f"  host        {result['steal']:.0%} of the CPUs' time stolen by the hypervisor during "
        "the load window (a quiet machine: ~0 %)"
    )
    keys = [k for k in ("pause_ms", "select_ms", "matrix_ms", "detail_ms") if result[k]]
    worst = max(max(result[k]) for k in keys)
    medians = max(statistics.median(result[k]) for k in keys)
    goals = {
        f"events ≥ {GOAL_EVENTS:.0f}/s": result["events_per_s"] >= GOAL_EVENTS,
        f"key → effect median < {GOAL_KEY_MS:.0f} ms": medians < GOAL_KEY_MS,
        f"key → effect worst < {GOAL_KEY_MS:.0f} ms": worst < GOAL_KEY_MS,
        f"CPU under load < {GOAL_CPU:.0%} of a core": result["load_cpu"] < GOAL_CPU,
    }
    for goal, met in goals.items():
        print(f"  {'met ' if met else 'MISS'}  {goal}")
    return 1 if args.strict and not all(goals.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
