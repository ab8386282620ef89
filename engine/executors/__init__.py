"""How an apply runs. Every kind implements :class:`sluice.engine.executors.base.Executor`."""

from __future__ import annotations

from sluice.engine.executors.base import ApplyResult, Executor, Job, OutputSink, create_executor

__all__ = ["ApplyResult", "Executor", "Job", "OutputSink", "create_executor"]
