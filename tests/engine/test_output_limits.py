"""Output is never silently dropped (issue 12, item 5): long lines are split, not discarded, and
what the event stream (so history) keeps of one apply is capped — its head and its tail, with one
line saying how many bytes were elided; the apply's spool file holds all of it."""

from __future__ import annotations

import re

import pytest
from rollout_helpers import Events, build_estate, channel, make_rollout

from sluice.engine.rollout.events import ApplyFinished, ApplyOutput


def estate_printing(tmp_path, command):
    return build_estate(
        tmp_path,
        channels=[channel("dev")],
        targets={"dev-1": {"channel": "dev", "executor": "shell"}},
        executors={"shell": {"kind": "local", "apply": command}},
    )


@pytest.mark.timeout(60)
async def test_a_300_kb_line_without_newline_reaches_the_stream_whole(tmp_path):
    # Before the fix asyncio's readline dropped its buffer past the limit: 157 KB of 300 KB kept.
    estate = estate_printing(tmp_path, "yes x | head -c 600000 | tr -d '\\n'")
    rollout = make_rollout(estate)
    events = Events(rollout)
    await rollout.run()
    [finished] = events.of(ApplyFinished)
    assert finished.outcome == "ok", finished.reason
    text = "".join(e.line for e in events.of(ApplyOutput, stream="stdout"))
    assert text == "x" * 300_000
    assert all(len(e.line) <= 65536 for e in events.of(ApplyOutput))


@pytest.mark.timeout(120)
async def test_what_the_stream_keeps_of_one_apply_is_capped_head_and_tail(tmp_path):
    # 8 MB of short lines: the stream keeps the first and the last lines and says what it elided.
    estate = estate_printing(tmp_path, "seq 1 1000000")
    rollout = make_rollout(estate)
    events = Events(rollout)
    await rollout.run()
    [finished] = events.of(ApplyFinished)
    assert finished.outcome == "ok", finished.reason
    lines = [e.line for e in events.of(ApplyOutput)]
    kept = sum(len(line) + 1 for line in lines)
    assert kept < 1_200_000  # far below the 6.9 MB printed
    assert lines[:3] == ["1", "2", "3"]
    assert lines[-1] == "1000000"
    [elided] = [line for line in lines if "elided" in line]
    printed = sum(len(str(n)) + 1 for n in range(1, 1_000_001))
    count = int(re.search(r"(\d[\d,]*) bytes", elided).group(1).replace(",", ""))
    stdout_kept = sum(len(e.line) + 1 for e in events.of(ApplyOutput) if "elided" not in e.line)
    assert count + stdout_kept == printed
