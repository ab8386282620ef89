"""How an apply runs. Every kind implements :class:`engine.executors.base.Executor`."""

from __future__ import annotations

from engine.executors.base import ApplyResult, Executor, Job, OutputSink, create_executor

__all__ = ["ApplyResult", "Executor", "Job", "OutputSink", "create_executor"]
