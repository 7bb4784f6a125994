"""Tasks in hand: what a handler gets besides the task's fields (a way to
report progress, a sign that the gateway took the task back)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, Optional


async def _unset(value: Any) -> None:
    raise RuntimeError("this task was not delivered by the gateway")


class LeasedTask(dict):  # type: ignore[type-arg]
    """A delivered task (a dict, as before) with ``revoked``, ``revoke_reason`` and ``progress``.

    ``revoked`` is a ``threading.Event``, set when the gateway revokes the
    task (``revoke_reason``: ``cancelled``, ``timeout``, ``heartbeat
    lapsed``): a plain-function handler running in a thread checks it; an
    async handler is cancelled instead.
    """

    def __init__(self, fields: Any, generation: int) -> None:
        super().__init__(fields)
        self.revoked = threading.Event()
        self.revoke_reason: Optional[str] = None
        # The connection it came on: settled after that one closed, it is LEASE_LOST.
        self.generation = generation
        # Sends the progress frame of this delivery (set by the work layer).
        self.report: Callable[[Any], Awaitable[None]] = _unset
        # Sends a chunk of this delivery's stream, returns its seq (set by the work layer).
        self.stream_write: Callable[[Any], Awaitable[int]] = _unset  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        # Cancels the async handler's task (set by the Worker running it).
        self.cancel_handler: Optional[Callable[[], Any]] = None

    def progress(self, value: Any) -> Any:
        """Reports how far the task got; the gateway's receipt is awaited.

        In the event loop it returns an awaitable; from a handler's thread it
        blocks until the receipt. Raises ``BrokerError`` ``UNKNOWN_TASK`` once revoked.
        """
        return self._in_loop(self.report(value))

    def write(self, data: Any) -> Any:
        """Streams one chunk of output (bus protocol v3; the task was enqueued with ``{"stream": True}``):
        JSON data, or ``bytes`` as a binary frame. Returns its seq once the gateway stored it, later
        while a follower lags (backpressure); in the event loop an awaitable, from a handler's thread
        it blocks. Raises ``BrokerError`` ``NOT_LEASED`` once revoked, ``LeaseLost`` once its connection closed."""
        return self._in_loop(self.stream_write(data))

    def _in_loop(self, report: Awaitable[Any]) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return report
        return asyncio.run_coroutine_threadsafe(report, self._loop).result()  # type: ignore[arg-type]

    def revoke(self, reason: str) -> None:
        self.revoke_reason = reason
        self.revoked.set()
        if self.cancel_handler is not None:
            self._loop.call_soon(self.cancel_handler)
