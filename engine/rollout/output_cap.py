"""What the event stream (and so history and the screen) keeps of one apply's output.

An apply may print gigabytes; its spool file keeps every byte (``sluice show --output``). The
stream keeps the first :data:`HEAD_BYTES` as they come and the last :data:`TAIL_BYTES`, sent when
the apply ends, with one line between them saying how many bytes were elided and where the full
output is. Memory stays bounded: the tail is a byte-bounded window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

HEAD_BYTES = 256 * 1024
TAIL_BYTES = 256 * 1024


class OutputCap:
    """Wraps ``emit(stream, line)``; call :meth:`finish` once the apply has ended."""

    def __init__(
        self,
        emit: Callable[[str, str], None],
        where: str,
        head: int = HEAD_BYTES,
        tail: int = TAIL_BYTES,
    ):
        self._emit = emit
        self._where = where
        self._head_left = head
        self._tail_limit = tail
        self._tail: deque[tuple[str, str, int]] = deque()
        self._tail_bytes = 0
        self.elided = 0

    def __call__(self, stream: str, line: str) -> None:
        size = len(line.encode("utf-8", "replace")) + 1
        if not self._tail and size <= self._head_left:
            self._head_left -= size
            self._emit(stream, line)
            return
        self._head_left = 0  # once the head is full, every later line goes through the window
        self._tail.append((stream, line, size))
        self._tail_bytes += size
        while self._tail_bytes > self._tail_limit:
            _, _, dropped = self._tail.popleft()
            self._tail_bytes -= dropped
            self.elided += dropped

    def finish(self) -> None:
        """Send the elision line (if any) and the tail."""
        if self.elided:
            self._emit(
                "stderr",
                f"sluice: {self.elided:,} bytes of output elided here; the full output: {self._where}",
            )
        while self._tail:
            stream, line, _ = self._tail.popleft()
            self._emit(stream, line)
        self._tail_bytes = 0
