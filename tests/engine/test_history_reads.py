"""Reading a rollout's events incrementally: what a watching console polls for."""

from __future__ import annotations

from sluice.engine.rollout.events import ApplyOutput, EventBus, SampleTaken, WaveStarted
from sluice.engine.store.history import History
from sluice.engine.store.recorder import Recorder


def test_events_after_a_seq_are_only_the_newer_ones_samples_included(tmp_path):
    history = History.open(tmp_path / "h.db")
    try:
        rollout_id = history.create_rollout(
            estate="e",
            module="op",
            version="2.0",
            from_versions="1.0",
            actor="t",
            host="h",
            plan={"waves": []},
            started=1.0,
        )
        bus = EventBus()
        recorder = Recorder(history, rollout_id, "op")
        bus.listen(recorder)
        first = bus.emit(WaveStarted, wave=1, channel="dev", name="dev 1/1", targets=("a",))
        recorder.flush()
        seen = history.events(rollout_id)
        assert seen == [first]
        later = [
            bus.emit(ApplyOutput, target="a", stream="stdout", line="one"),
            bus.emit(
                SampleTaken,
                wave=1,
                check="lat",
                target="a",
                phase="soak",
                value=0.2,
                baseline=0.1,
                outcome="pass",
            ),
            bus.emit(ApplyOutput, target="a", stream="stdout", line="two"),
        ]
        recorder.flush()
        assert history.events(rollout_id, after=seen[-1].seq) == later
        assert history.events(rollout_id, after=later[-1].seq) == []
        assert history.events(rollout_id) == [first, *later]
    finally:
        history.close()
