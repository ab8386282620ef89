"""Things a rollout shares among its executors and checks, opened lazily and closed once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp


class Resources:
    """One aiohttp ``ClientSession`` per rollout (created on first use) and friends."""

    def __init__(self) -> None:
        self._http: aiohttp.ClientSession | None = None
        self.extras: dict[str, Any] = {}

    def http(self) -> aiohttp.ClientSession:
        """The rollout's shared HTTP session. Per-request timeouts are the caller's job."""
        if self._http is None or self._http.closed:
            import aiohttp

            self._http = aiohttp.ClientSession(trust_env=False)
        return self._http

    async def close(self) -> None:
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._http = None
