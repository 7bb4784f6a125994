"""``enqueue(..., on_progress=)``: the gateway publishes a task's progress as
``REPLYTO.progress`` (correlationId = task id) and its result to ``REPLYTO``.
One subscription to each per replyTo; a task's callback ends with its result."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict

from .pubsub import PubSub
from .shapes import Event, call_handler

log = logging.getLogger("brainstem")

ProgressCallback = Callable[[Any, Event], Any]


class ProgressListeners:
    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub
        self._callbacks: Dict[str, Dict[str, ProgressCallback]] = {}
        self._lock = asyncio.Lock()

    async def prepare(self, reply_to: str) -> None:
        """Subscribes before the task exists, so no progress can pass unseen."""
        async with self._lock:
            if reply_to in self._callbacks:
                return
            callbacks: Dict[str, ProgressCallback] = {}

            async def on_progress(event: Event) -> None:
                callback = callbacks.get(str(event.get("correlationId")))
                if callback is None:
                    return
                try:
                    await call_handler(callback, event.get("payload"), event)
                except Exception:
                    log.exception("progress callback for task %s failed", event.get("correlationId"))

            def on_result(event: Event) -> None:
                callbacks.pop(str(event.get("correlationId")), None)

            await self.pubsub.subscribe(f"{reply_to}.progress", on_progress)
            await self.pubsub.subscribe(reply_to, on_result)
            self._callbacks[reply_to] = callbacks

    def add(self, reply_to: str, task_id: str, callback: ProgressCallback) -> None:
        self._callbacks.setdefault(reply_to, {})[task_id] = callback
