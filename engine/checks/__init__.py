"""Where health comes from. Every source implements :class:`engine.checks.base.CheckSource`."""

from __future__ import annotations

from engine.checks.base import CheckSource, Reading, create_check

__all__ = ["CheckSource", "Reading", "create_check"]
