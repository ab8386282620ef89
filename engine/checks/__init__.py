"""Where health comes from. Every source implements :class:`sluice.engine.checks.base.CheckSource`."""

from __future__ import annotations

from sluice.engine.checks.base import CheckSource, Reading, create_check

__all__ = ["CheckSource", "Reading", "create_check"]
