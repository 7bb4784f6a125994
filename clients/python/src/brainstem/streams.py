"""Follows of task streams (bus protocol v3), as ``src/client/task-stream.ts``:
one per task, sent again on every new connection from the seq after the
last one delivered, so a reconnect neither loses nor repeats a chunk (a
repeat the gateway sends while the follow is replaced is dropped by its seq)."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator, Deque, Dict, List, Optional

from .errors import BrokerError, ClientClosed, InvalidArgument
from .transport import Transport


@dataclass(frozen=True)
class StreamChunk:
    """One item of a followed stream: ``data`` is JSON data, or ``bytes`` for a binary chunk;
    the last item has ``end`` (``ok``, ``failed``, ``cancelled``) and, on ``ok``, ``result``;
    ``gap``: the chunks before ``seq`` are no longer kept; ``traceparent``: the task's trace
    context (its enqueue's), on every item of a traced task's stream."""

    task_id: str
    seq: int
    attempt: Optional[int] = None
    data: Any = None
    end: Optional[str] = None
    result: Any = None
    gap: bool = False
    traceparent: Optional[str] = None


class _Follow:
    def __init__(self, task_id: str, next_seq: int, key: str) -> None:
        self.task_id = task_id
        self.next = next_seq
        self.key = key
        self.sent_on = -1
        self.ended = False
        # Sent on the first frame of each follow of a traced task.
        self.traceparent: Optional[str] = None
        self.items: Deque[StreamChunk] = deque()
        self.failure: Optional[BaseException] = None
        self.wake = asyncio.Event()

    def push(self, item: StreamChunk) -> None:
        self.items.append(item)
        self.wake.set()

    def fail(self, error: BaseException) -> None:
        self.failure = error
        self.wake.set()


class StreamFollows:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._follows: Dict[str, _Follow] = {}

    def follow(self, task_id: str, from_seq: int = 1) -> AsyncIterator[StreamChunk]:
        if isinstance(from_seq, bool) or not isinstance(from_seq, int) or from_seq < 1:
            raise InvalidArgument("INVALID_FRAME", f"from_seq must be a whole number from 1, not {from_seq!r}")
        key = str(task_id)
        if key in self._follows:
            raise InvalidArgument("INVALID_FRAME", f"task {key} is already followed by this client")
        if self.transport.closing:
            raise ClientClosed()
        follow = _Follow(key, from_seq, self.transport.next_id())
        self._follows[key] = follow
        if self.transport.live:
            follow.sent_on = self.transport.generation
            self.transport.spawn(self.transport.send_now(self._frame(follow)), f"follow of {key}")
        return self._iterate(follow)

    def restore(self, generation: int) -> List[str]:
        """A new connection: every follow goes again from where it got to."""
        frames: List[str] = []
        for follow in self._follows.values():
            if follow.sent_on == generation:
                continue
            follow.sent_on = generation
            frames.append(json.dumps(self._frame(follow)))
        return frames

    def on_chunk(self, raw: Any, body: Optional[bytes]) -> None:
        if not isinstance(raw, dict) or isinstance(raw.get("seq"), bool) or not isinstance(raw.get("seq"), int):
            return
        follow = self._follows.get(str(raw.get("taskId")))
        seq: int = raw["seq"]
        if follow is None or follow.ended or seq < follow.next:
            return
        if isinstance(raw.get("traceparent"), str):
            follow.traceparent = raw["traceparent"]
        trace = follow.traceparent
        if raw.get("gap") is True:
            follow.next = seq
            follow.push(StreamChunk(follow.task_id, seq, gap=True, traceparent=trace))
            return
        attempt = raw.get("attempt") if isinstance(raw.get("attempt"), int) else None
        if isinstance(raw.get("end"), str):
            follow.ended = True
            item = StreamChunk(follow.task_id, seq, attempt, end=raw["end"], result=raw.get("result"), traceparent=trace)
        else:
            item = StreamChunk(follow.task_id, seq, attempt, data=body if body is not None else raw.get("data"), traceparent=trace)
        follow.next = seq + 1
        follow.push(item)

    def on_answer(self, key: str, error: BrokerError) -> bool:
        """The gateway refused a follow (``UNKNOWN_TASK``, ``FORBIDDEN``, …): its iterator raises it."""
        for follow in self._follows.values():
            if follow.key == key:
                follow.fail(error)
                return True
        return False

    def on_close(self, error: BrokerError) -> None:
        for follow in self._follows.values():
            follow.fail(error)

    @staticmethod
    def _frame(follow: _Follow) -> Dict[str, Any]:
        return {"action": "follow", "taskId": follow.task_id, "from": follow.next, "id": follow.key}

    async def _iterate(self, follow: _Follow) -> AsyncIterator[StreamChunk]:
        try:
            while True:
                if follow.items:
                    item = follow.items.popleft()
                    yield item
                    if item.end is not None:
                        return
                    continue
                if follow.failure is not None:
                    raise follow.failure
                follow.wake.clear()
                await follow.wake.wait()
        finally:
            if self._follows.get(follow.task_id) is follow:
                del self._follows[follow.task_id]
            if not follow.ended and follow.failure is None and self.transport.live:
                self.transport.spawn(self.transport.send_now({"action": "unfollow", "taskId": follow.task_id}), "unfollow")
