"""The asyncio client of the brainstem gateway's ``/bus``, with the seed client's names.

Three layers, as in the TypeScript client: the transport (one WebSocket,
reopened with backoff whenever it drops; frames sent while disconnected wait
in a bounded buffer), pub/sub with request/reply, and work with leases.
Subscriptions and open pulls are restored on every new connection.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, AsyncIterator, Dict, List, Optional, Union

from .defaults import DEFAULT_URL, default_options
from .names import MAX_SERVICE_NAME_BYTES, is_name
from .errors import BrokerError, ClientClosed, ConnectFailed, ConnectionLost, InvalidArgument, LeaseLost, RequestTimeout
from .progress import ProgressCallback
from .pubsub import PubSub
from .streams import StreamChunk, StreamFollows
from .transport import Listener, Transport
from .shapes import Event, EventHandler, Task, TaskHandler, call_handler, call_task_handler, is_async_callable
from .work import Worker, Work

__all__ = [
    "DEFAULT_URL",
    "BrokerClient",
    "BrokerError",
    "ClientClosed",
    "ConnectFailed",
    "ConnectionLost",
    "InvalidArgument",
    "LeaseLost",
    "Event",
    "EventHandler",
    "RequestTimeout",
    "StreamChunk",
    "Task",
    "TaskHandler",
    "Worker",
    "call_handler",
    "call_task_handler",
    "default_options",
    "is_async_callable",
]


class _Hooks:
    """The transport's view of the layers above it."""

    def __init__(self, client: "BrokerClient") -> None:
        self.client = client

    def restore(self, generation: int) -> List[str]:
        return self.client._pubsub.restore(generation) + self.client._work.restore(generation) + self.client._follows.restore(generation)

    def on_event(self, event: Any) -> None:
        self.client._pubsub.on_event(event)

    def on_task(self, task: Any, key: Optional[str]) -> None:
        self.client._work.on_task(task, key)

    def on_answer(self, key: str, error: BrokerError) -> bool:
        return self.client._work.on_answer(key, error) or self.client._pubsub.on_answer(key, error) or self.client._follows.on_answer(key, error)

    def on_revoke(self, revoke: Any) -> None:
        self.client._work.on_revoke(revoke)

    def on_chunk(self, chunk: Any, body: Optional[bytes]) -> None:
        self.client._follows.on_chunk(chunk, body)

    def connection_lost(self) -> None:
        self.client._work.connection_lost()

    def on_close(self, error: BrokerError) -> None:
        self.client._work.on_close(error)
        self.client._pubsub.on_close(error)
        self.client._follows.on_close(error)


class BrokerClient:
    """A client of the gateway's ``/bus`` with the seed client's names.

    ``client_id`` names the service: it is sent as the connection's ``name``
    and as the ``source`` of what it publishes. Every option's default is in
    ``default_options()`` (``brainstem/defaults.py``).
    """

    def __init__(
        self,
        url: Optional[str] = None,
        client_id: Optional[str] = None,
        *,
        token: Optional[str] = None,
        pid: Union[int, bool, None] = None,
        trace_tasks: Optional[bool] = None,
        reconnect: bool = True,
        backoff_initial: Optional[float] = None,
        backoff_max: Optional[float] = None,
        buffer_limit: Optional[int] = None,
        receipt_timeout: Optional[float] = None,
        request_timeout: Optional[float] = None,
        open_timeout: Optional[float] = None,
        keepalive: Optional[float] = None,
        max_frame_bytes: Optional[int] = None,
    ) -> None:
        given = {
            "backoff_initial": backoff_initial,
            "backoff_max": backoff_max,
            "buffer_limit": buffer_limit,
            "receipt_timeout": receipt_timeout,
            "request_timeout": request_timeout,
            "open_timeout": open_timeout,
            "keepalive": keepalive,
            "max_frame_bytes": max_frame_bytes,
            "trace_tasks": trace_tasks,
        }
        options: Dict[str, Any] = {**default_options(), **{k: v for k, v in given.items() if v is not None}}
        options["reconnect"] = reconnect
        self.url = url or os.environ.get("BRAINSTEM_URL") or DEFAULT_URL
        # The gateway refuses the upgrade for such a name: refused here, where the caller can see why.
        if client_id is not None and not is_name(client_id, MAX_SERVICE_NAME_BYTES):
            raise InvalidArgument(
                "INVALID_FRAME",
                f"client_id (the service's name) must be 1 to {MAX_SERVICE_NAME_BYTES} UTF-8 bytes"
                f" without control characters: {client_id!r}",
            )
        self.client_id = client_id or str(uuid.uuid4())
        self.token = token if token is not None else os.environ.get("BRAINSTEM_TOKEN")
        # Sent as ``?pid=``: the gateway links the connection to this process's heartbeat.
        self.pid: Optional[int] = os.getpid() if pid is None or pid is True else (None if pid is False else int(pid))
        self._transport = Transport(self.url, self.client_id, self.token, options, _Hooks(self), self.pid)
        self._pubsub = PubSub(self._transport, options["request_timeout"])
        # An explicit opts.traceparent is always sent.
        self._work = Work(self._transport, self._pubsub, options["trace_tasks"])
        self._follows = StreamFollows(self._transport)

    # -- connection -------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a connection is open and restored."""
        return self._transport.live

    @property
    def welcome(self) -> Optional[Dict[str, Any]]:
        """The gateway's welcome frame of the current connection (``clientId``, ``name``, ``protocol``)."""
        return self._transport.welcome

    @property
    def ws(self) -> Any:
        return self._transport.ws

    @property
    def buffered_frames(self) -> int:
        """Frames waiting for a connection."""
        return self._transport.buffered_frames

    @property
    def backoff_initial(self) -> float:
        return self._transport.backoff_initial

    @property
    def backoff_max(self) -> float:
        return self._transport.backoff_max

    @property
    def event_handlers(self) -> Dict[str, List[EventHandler]]:
        return self._pubsub.event_handlers

    @property
    def task_handler(self) -> Optional[TaskHandler]:
        return self._work.task_handler

    def on(self, name: str, listener: Listener) -> None:
        """Adds a listener: ``connected`` (welcome dict, ``None`` from a server that sends none),
        ``disconnected`` (close code; 4001: the gateway saw this process's heartbeat lapse, the
        client reconnects as after any drop; 1006: dropped, e.g. by the keepalive),
        ``reconnecting`` (``{"attempt", "delay"}``, seconds: the wait before the next attempt),
        ``revoked`` (``{"taskId", "queue", "reason"}``: the gateway took back a task in hand) or
        ``error`` (BrokerError)."""
        self._transport.on(name, listener)

    async def connect(self, retry: bool = False) -> None:
        """Opens the connection; raises ``ConnectFailed`` (code ``CONNECT_FAILED``, also a
        ``ConnectionError``) if the first attempt fails,
        unless ``retry`` (then it keeps trying, with backoff).

        Once connected, the client reconnects by itself until ``close()``.
        """
        self._pubsub.start()
        await self._transport.connect(retry)

    async def close(self) -> None:
        """Closes the connection for good; pending and later calls fail with ``ClientClosed`` (code ``CLOSED``)."""
        await self._transport.close()
        await self._pubsub.stop()

    async def drain(self) -> None:
        """Stops every worker, waits for the tasks in hand to be settled, then closes."""
        await self._work.drain()
        await self.close()

    def _connect_url(self) -> str:
        return self._transport.connect_url()

    async def ping(self, timeout: Optional[float] = None) -> int:
        """Round trip to the gateway; returns its clock in ms."""
        answer = await self._transport.call({"action": "ping"}, timeout)
        return int(answer.get("pong", 0))

    # -- pub/sub --------------------------------------------------------------

    async def subscribe(
        self, topic: str, handler: EventHandler, since: Optional[str] = None, last: Optional[int] = None
    ) -> Dict[str, Any]:
        """Calls ``handler`` for every event whose type matches ``topic`` (``*`` and ``>`` wildcards).

        Returns the receipt's ``offset``, ``replayed``, ``gap`` on a retained topic; ``since``
        (an offset, ``"0"`` for all) or ``last`` (N) replay retained events first. After a
        reconnect it resumes from the last offset handed to the handler: nothing missed, nothing twice.
        """
        return await self._pubsub.subscribe(topic, handler, since, last)

    async def unsubscribe(self, topic: str, handler: Optional[EventHandler] = None) -> None:
        """Removes ``handler`` (all handlers when ``None``) from ``topic``; unsubscribes when none is left."""
        await self._pubsub.unsubscribe(topic, handler)

    async def publish(self, type_: str, payload: Any = None, *, confirm: bool = True, **opts: Any) -> Optional[int]:
        """Publishes an event and returns how many connections it was delivered to (the gateway's receipt).

        ``opts`` may set ``correlationId``, ``replyTo``, ``timestamp``,
        ``source``, ``msgId`` (dedup key: sent twice, counted once; publishes
        buffered while disconnected get one), ``traceparent``. With ``confirm=False`` it asks for no receipt: it returns
        ``None`` once the frame is sent or waits in the buffer.
        """
        return await self._pubsub.publish(type_, payload, confirm=confirm, **opts)

    async def request(self, type_: str, payload: Any = None, timeout: Optional[float] = None) -> Event:
        """Publishes ``type_`` with a ``replyTo`` and ``correlationId`` and returns the reply event.

        Raises ``RequestTimeout`` when no reply arrives within ``timeout`` seconds.
        """
        return await self._pubsub.request(type_, payload, timeout)

    async def reply(self, event: Event, payload: Any) -> None:
        """Answers a request: publishes ``payload`` to the event's ``replyTo`` with its ``correlationId``."""
        await self._pubsub.reply(event, payload)

    async def respond(self, topic: str, handler: EventHandler) -> None:
        """Subscribes ``handler`` to ``topic``; what it returns for a request is published as the reply."""
        await self._pubsub.respond(topic, handler)

    # -- work queues ----------------------------------------------------------

    async def enqueue(
        self, queue: str, task: Any, opts: Optional[Dict[str, Any]] = None, *, on_progress: Optional[ProgressCallback] = None
    ) -> str:
        """Stores a task durably and returns its ``taskId`` once the gateway has stored it.

        ``opts``: ``priority``, ``delay`` (ms), ``attempts``, ``backoff``, ``jobId``, ``replyTo``.
        ``on_progress(progress, event)`` (needs ``replyTo``) is called with each progress the
        worker reports, until the task's result arrives.
        """
        return await self._work.enqueue(queue, task, opts, on_progress)

    async def progress(self, task_id: str, value: Any) -> None:
        """Reports how far a task in hand got (as ``task.progress``); raises ``BrokerError``
        ``UNKNOWN_TASK`` once the gateway revoked it, ``LeaseLost`` once its connection closed."""
        await self._work.progress(task_id, value)

    async def pull(self, queue: str) -> None:
        """Asks for one task from ``queue``; it arrives at the ``on_task`` handler, now or when one is enqueued."""
        await self._work.pull(queue)

    async def ack(self, task_id: str, result: Any = None) -> bool:
        """Marks a task done (returns True once the gateway confirmed); with
        ``result``, the gateway publishes it to the task's ``replyTo``.

        Raises ``LeaseLost`` (code ``LEASE_LOST``), sending nothing, when the
        gateway revoked the task or the connection that received it has closed: the gateway has put it
        back and delivers it again (at-least-once). Raises ``BrokerError``
        when the gateway refuses (``UNKNOWN_TASK``: not held by this connection).
        """
        return await self._work.ack(task_id, result)

    async def fail(self, task_id: str, reason: str = "") -> bool:
        """Reports a failed attempt: the gateway retries the task with backoff, then dead-letters it.

        Raises ``LeaseLost`` when the task was lost with its connection, as ``ack``.
        """
        return await self._work.fail(task_id, reason)

    def follow(self, task_id: str, from_seq: int = 1) -> AsyncIterator[StreamChunk]:
        """The output a streamed task's worker writes (``task.write``; bus protocol v3), in order,
        from seq ``from_seq``, as it exists and as it comes: ``async for chunk in client.follow(task_id)``.
        The last item has ``end`` (and ``result``); a refusal (``UNKNOWN_TASK``, ``FORBIDDEN``) is raised
        by the loop. It resumes by itself after a reconnect, from the seq after the last one it
        delivered. Leaving the loop early unfollows."""
        return self._follows.follow(task_id, from_seq)

    def on_task(self, handler: TaskHandler) -> None:
        """Sets the handler of tasks that ``pull`` asks for (sync or async)."""
        self._work.task_handler = handler

    async def work(self, queue: str, handler: TaskHandler, concurrency: int = 1) -> Worker:
        """Processes ``queue`` with at most ``concurrency`` tasks in hand.

        ``handler(task)`` may be a coroutine function or a plain function (run
        in a worker thread): its return value acks the task (as the ack's
        ``result``), an exception fails it with its message.
        """
        return await self._work.work(queue, handler, concurrency)
