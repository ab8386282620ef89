"""The sluice rollout engine: pure asyncio, never imports textual."""

__version__ = "0.1.0"
