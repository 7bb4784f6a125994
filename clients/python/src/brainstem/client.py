"""The asyncio client of the brainstem gateway's ``/bus``.

One WebSocket, reopened with backoff whenever it drops; subscriptions and
open pulls are restored on every new connection, and frames sent while
disconnected wait in a bounded buffer.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import os
import random
import uuid
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, TypedDict, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed

from .topics import is_valid_pattern, is_valid_queue_name, is_valid_topic, pattern_matches

DEFAULT_URL = "ws://127.0.0.1:8080/bus"
"""Used when neither ``url`` nor the ``BRAINSTEM_URL`` environment variable is given."""

log = logging.getLogger("brainstem")

# websockets before 11 exports `connect` lazily, out of type checkers' sight;
# from 14 on it is the new asyncio client. Both take the arguments used here.
_ws_connect: Callable[..., Any] = getattr(websockets, "connect")


class Event(TypedDict, total=False):
    """An event as subscribers receive it (``type``, ``source``, ``payload`` and ``timestamp`` are always set)."""

    type: str
    source: str
    payload: Any
    timestamp: str
    correlationId: Union[str, int]
    replyTo: str


class Task(TypedDict):
    """A pulled task: ``attempts`` counts its deliveries, this one included."""

    id: str
    queue: str
    payload: Any
    createdAt: str
    attempts: int


EventHandler = Callable[[Event], Any]
"""Called with each matching event; may be a plain function or a coroutine function."""
TaskHandler = Callable[[Task], Any]
"""Called with each task; a coroutine function, or a plain function (run in a worker thread)."""
Listener = Callable[..., Any]


class BrokerError(Exception):
    """The gateway refused a frame (``code`` is the protocol's error code), or the client could not send it."""

    def __init__(self, message: str, code: str = "ERROR") -> None:
        super().__init__(message)
        self.code = code


class ConnectionLost(BrokerError):
    """The connection closed before the gateway answered: the frame may or may not have taken effect."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "DISCONNECTED")


class RequestTimeout(BrokerError, asyncio.TimeoutError):
    """No receipt or reply arrived in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "TIMEOUT")


async def call_handler(handler: Callable[..., Any], *args: Any) -> Any:
    """Calls a sync or async handler and returns its result."""
    result = handler(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def is_async_callable(handler: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None))


async def call_task_handler(handler: Callable[..., Any], task: Any, executor: Optional[Executor] = None) -> Any:
    """Calls a task handler: a plain function runs in a thread (of
    ``executor``, else the loop's default), so that blocking work (a model,
    a file) does not stall the connection, the heartbeats or the other tasks."""
    if is_async_callable(handler):
        return await handler(task)
    result = await asyncio.get_running_loop().run_in_executor(executor, handler, task)
    if inspect.isawaitable(result):
        result = await result
    return result


@dataclass(eq=False)
class _Pull:
    """One credit granted to the gateway on a queue; answered by one task frame."""

    id: str
    queue: str
    future: Optional["asyncio.Future[Task]"] = None
    sent_on: int = -1
    # Left behind by a stopped Worker: a task that still arrives goes here.
    orphan_handler: Optional[Callable[[Task], None]] = None


@dataclass(eq=False)
class _Call:
    """A frame sent with an ``id``, waiting for its receipt or error."""

    frame: Dict[str, Any]
    future: "asyncio.Future[Dict[str, Any]]"
    sent_on: int = -1


@dataclass(eq=False)
class _Outgoing:
    """A frame waiting for the connection, serialized when it was given (a bad payload fails its caller)."""

    text: str
    call: Optional[_Call] = None
    call_id: Optional[str] = None


# Subscriptions and pulls are restored on every connection, so a receipt
# lost with a connection does not mean the frame was lost.
_RESTORED_ACTIONS = frozenset({"subscribe", "unsubscribe"})


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_options() -> Dict[str, Any]:
    """The defaults of every option, as one table (a fresh copy each call)."""
    return {
        "backoff_initial": 0.1,
        "backoff_max": 5.0,
        "buffer_limit": 10_000,
        "receipt_timeout": 30.0,
        "request_timeout": 10.0,
        "open_timeout": 10.0,
        "keepalive": 20.0,
        "max_frame_bytes": 64 * 1024 * 1024,
    }


class BrokerClient:
    """A client of the gateway's ``/bus`` with the seed client's names.

    ``client_id`` names the service: it is sent as the connection's ``name``
    and as the ``source`` of what it publishes.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        client_id: Optional[str] = None,
        *,
        token: Optional[str] = None,
        reconnect: bool = True,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        buffer_limit: int = 10_000,
        receipt_timeout: Optional[float] = 30.0,
        open_timeout: float = 10.0,
        max_frame_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.url = url or os.environ.get("BRAINSTEM_URL") or DEFAULT_URL
        self.client_id = client_id or str(uuid.uuid4())
        self.token = token if token is not None else os.environ.get("BRAINSTEM_TOKEN")
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.buffer_limit = buffer_limit
        self.receipt_timeout = receipt_timeout
        self.open_timeout = open_timeout
        self.max_frame_bytes = max_frame_bytes

        self.ws: Any = None
        self.event_handlers: Dict[str, List[EventHandler]] = {}
        self.task_handler: Optional[TaskHandler] = None
        self.welcome: Optional[Dict[str, Any]] = None

        self._live = False
        self._closing = False
        self._generation = 0
        self._ids = itertools.count(1)
        self._subscribed_on: Dict[str, int] = {}
        self._pulls: Dict[str, _Pull] = {}
        self._calls: Dict[str, _Call] = {}
        self._buffer: Deque[_Outgoing] = deque()
        self._held: Dict[str, int] = {}
        self._requests: Dict[str, "asyncio.Future[Event]"] = {}
        self._inbox: Optional[str] = None
        self._inbox_lock: Optional[asyncio.Lock] = None
        self._events: Optional["asyncio.Queue[Event]"] = None
        self._background: set[asyncio.Task[Any]] = set()
        self._runner: Optional[asyncio.Task[None]] = None
        self._workers: List["Worker"] = []
        self._event_pump: Optional[asyncio.Task[None]] = None
        self._listeners: Dict[str, List[Listener]] = {"connected": [], "disconnected": [], "error": []}

    # -- connection -------------------------------------------------------

    @property
    def buffered_frames(self) -> int:
        """Frames waiting for a connection."""
        return len(self._buffer)

    async def drain(self) -> None:
        """Stops every worker, waits for the tasks in hand to be settled, then closes."""
        await asyncio.gather(*(worker.stop() for worker in list(self._workers)))
        await self.close()

    @property
    def connected(self) -> bool:
        """True while a connection is open and restored."""
        return self._live

    def on(self, name: str, listener: Listener) -> None:
        """Adds a listener: ``connected`` (welcome dict), ``disconnected`` (close code) or ``error`` (BrokerError)."""
        if name not in self._listeners:
            raise ValueError(f"unknown listener {name!r}: expected connected, disconnected or error")
        self._listeners[name].append(listener)

    async def connect(self, retry: bool = False) -> None:
        """Opens the connection; raises ``ConnectionError`` if the first attempt fails,
        unless ``retry`` (then it keeps trying, with backoff).

        Once connected, the client reconnects by itself until ``close()``.
        """
        if self._runner is not None and not self._runner.done():
            return
        self._closing = False
        self._events = asyncio.Queue()
        self._inbox_lock = asyncio.Lock()
        delay = self.backoff_initial
        while True:
            try:
                await self._open()
                break
            except Exception as err:
                if not retry:
                    raise ConnectionError(f"cannot connect to {self.url}: {err}") from err
                if delay == self.backoff_initial:
                    log.warning("cannot connect to %s (%s): retrying", self.url, err)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.backoff_max)
        self._runner = asyncio.create_task(self._run(), name="brainstem-reader")
        self._event_pump = asyncio.create_task(self._pump_events(), name="brainstem-events")

    async def close(self) -> None:
        """Closes the connection for good; pending calls fail with ``ConnectionLost``."""
        self._closing = True
        ws = self.ws
        if ws is not None:
            await ws.close()
        for task in (self._runner, self._event_pump):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._runner = None
        self._event_pump = None
        if self._live:
            self._on_disconnect(1000)
        lost = ConnectionLost("the client was closed")
        for call in list(self._calls.values()):
            if not call.future.done():
                call.future.set_exception(lost)
        self._calls.clear()
        for outgoing in self._buffer:
            if outgoing.call is not None and not outgoing.call.future.done():
                outgoing.call.future.set_exception(lost)
        self._buffer.clear()
        for pull in self._pulls.values():
            if pull.future is not None and not pull.future.done():
                pull.future.set_exception(lost)
        self._pulls.clear()
        for request in self._requests.values():
            if not request.done():
                request.set_exception(lost)
        for task in list(self._background):
            task.cancel()

    def _connect_url(self) -> str:
        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query))
        query.setdefault("name", self.client_id)
        if self.token:
            query.setdefault("token", self.token)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))

    async def _open(self) -> None:
        ws = await _ws_connect(
            self._connect_url(),
            open_timeout=self.open_timeout,
            max_size=self.max_frame_bytes,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
            compression=None,
        )
        try:
            first = await asyncio.wait_for(ws.recv(), self.open_timeout)
        except BaseException:
            await ws.close()
            raise
        self.ws = ws
        self._generation += 1
        generation = self._generation
        frame = self._parse(first)
        if frame is not None and "welcome" in frame:
            self.welcome = frame["welcome"]
        elif frame is not None:
            self._on_frame(frame)
        try:
            await self._restore(ws, generation)
        except ConnectionClosed:
            # Closed again at once: the reader sees it and reconnects.
            return
        self._live = True
        self._emit("connected", self.welcome)

    async def _restore(self, ws: Any, generation: int) -> None:
        """Sends subscriptions, open pulls, then buffered frames, until none is left unsent."""
        while True:
            patterns = [p for p in self.event_handlers if self._subscribed_on.get(p) != generation]
            pulls = [p for p in self._pulls.values() if p.sent_on != generation]
            if not patterns and not pulls and not self._buffer:
                return
            for pattern in patterns:
                self._subscribed_on[pattern] = generation
                await ws.send(json.dumps({"action": "subscribe", "topic": pattern}))
            for pull in pulls:
                if pull.orphan_handler is not None:
                    # A stopped worker's credit: the new connection need not grant it again.
                    self._pulls.pop(pull.id, None)
                    continue
                pull.sent_on = generation
                await ws.send(json.dumps({"action": "pull", "queue": pull.queue, "id": pull.id}))
            while self._buffer:
                outgoing = self._buffer.popleft()
                if outgoing.call is not None and outgoing.call_id is not None:
                    if outgoing.call.future.done():
                        continue
                    outgoing.call.sent_on = generation
                    self._calls[outgoing.call_id] = outgoing.call
                await ws.send(outgoing.text)

    async def _run(self) -> None:
        while True:
            ws = self.ws
            try:
                async for raw in ws:
                    frame = self._parse(raw)
                    if frame is None:
                        continue
                    try:
                        self._on_frame(frame)
                    except Exception:
                        log.exception("could not handle a frame from the gateway")
            except ConnectionClosed:
                pass
            self._on_disconnect(ws.close_code)
            if self._closing or not self.reconnect:
                return
            await self._reopen()
            if self._closing:
                return

    async def _reopen(self) -> None:
        delay = self.backoff_initial
        while not self._closing:
            # Full jitter, so that many services do not return in step.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            if self._closing:
                return
            try:
                await self._open()
                return
            except Exception as err:
                log.debug("reconnect to %s failed: %s", self.url, err)
                delay = min(delay * 2, self.backoff_max)

    def _on_disconnect(self, code: Optional[int]) -> None:
        was_live = self._live
        self._live = False
        generation = self._generation
        for call_id, call in list(self._calls.items()):
            if call.sent_on != generation:
                continue
            del self._calls[call_id]
            if call.future.done():
                continue
            if call.frame.get("action") in _RESTORED_ACTIONS:
                call.future.set_result({"ok": True, "id": call_id, "restored": True})
            else:
                action = call.frame.get("action")
                call.future.set_exception(
                    ConnectionLost(f"connection closed (code {code}) before the gateway answered {action}")
                )
        if was_live:
            self._emit("disconnected", code)

    # -- incoming frames ----------------------------------------------------

    def _parse(self, raw: Union[str, bytes]) -> Optional[Dict[str, Any]]:
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("ignored a frame that is not JSON")
            return None
        return frame if isinstance(frame, dict) else None

    def _on_frame(self, frame: Dict[str, Any]) -> None:
        frame_id = frame.get("id")
        key = str(frame_id) if frame_id is not None else None
        if "event" in frame:
            self._on_event(frame["event"])
        elif "task" in frame:
            self._on_task(frame["task"], key)
        elif "error" in frame:
            self._on_error(frame, key)
        elif key is not None and key in self._calls:
            call = self._calls.pop(key)
            if not call.future.done():
                call.future.set_result(frame)
        elif "welcome" in frame:
            self.welcome = frame["welcome"]

    def _on_event(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        correlation = event.get("correlationId")
        if (
            correlation is not None
            and event.get("type") == self._inbox
            and str(correlation) in self._requests
        ):
            # Replies bypass the event queue, so a handler that awaits a
            # request cannot block its own reply.
            request = self._requests.pop(str(correlation))
            if not request.done():
                request.set_result(event)  # type: ignore[arg-type]
            return
        if self._events is not None:
            self._events.put_nowait(event)  # type: ignore[arg-type]

    async def _pump_events(self) -> None:
        """Runs event handlers one event at a time, in arrival order."""
        assert self._events is not None
        while True:
            event = await self._events.get()
            topic = event.get("type", "")
            called: List[EventHandler] = []
            for pattern, handlers in list(self.event_handlers.items()):
                if not pattern_matches(pattern, topic):
                    continue
                for handler in handlers:
                    # Each handler sees an event once, however many of its patterns match.
                    if any(handler is seen for seen in called):
                        continue
                    called.append(handler)
                    try:
                        await call_handler(handler, event)
                    except Exception:
                        log.exception("event handler for %s failed", topic)

    def _on_task(self, task: Any, key: Optional[str]) -> None:
        if not isinstance(task, dict):
            return
        queue = task.get("queue")
        pull = self._pulls.pop(key, None) if key is not None else None
        if pull is None:
            pull = next((p for p in self._pulls.values() if p.queue == queue), None)
            if pull is not None:
                del self._pulls[pull.id]
        if "id" in task:
            self._held[str(task["id"])] = self._generation
        if pull is not None and pull.orphan_handler is not None:
            pull.orphan_handler(task)  # type: ignore[arg-type]
        elif pull is not None and pull.future is not None and not pull.future.done():
            pull.future.set_result(task)  # type: ignore[arg-type]
        elif self.task_handler is not None:
            self._spawn(call_task_handler(self.task_handler, task), f"task handler for {queue}")
        else:
            log.warning("task %s from %s arrived with no on_task handler", task.get("id"), queue)

    def _on_error(self, frame: Dict[str, Any], key: Optional[str]) -> None:
        error = BrokerError(str(frame.get("error")), str(frame.get("code", "ERROR")))
        if key is not None and key in self._calls:
            call = self._calls.pop(key)
            if not call.future.done():
                call.future.set_exception(error)
            return
        if key is not None and key in self._pulls:
            pull = self._pulls.pop(key)
            if pull.future is not None and not pull.future.done():
                pull.future.set_exception(error)
                return
        log.warning("gateway error %s: %s", error.code, error)
        self._emit("error", error)

    def _emit(self, name: str, *args: Any) -> None:
        for listener in self._listeners[name]:
            try:
                result = listener(*args)
                if inspect.isawaitable(result):
                    self._spawn(result, f"{name} listener")
            except Exception:
                log.exception("%s listener failed", name)

    def _spawn(self, work: Awaitable[Any], what: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed", what)

        task = asyncio.ensure_future(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- outgoing frames ----------------------------------------------------

    async def _send(self, frame: Dict[str, Any]) -> None:
        """Sends a frame without waiting for an answer; buffered while disconnected."""
        text = json.dumps(frame)
        if self._live:
            try:
                await self.ws.send(text)
                return
            except ConnectionClosed:
                pass
        self._enqueue_outgoing(_Outgoing(text))

    def _enqueue_outgoing(self, outgoing: _Outgoing) -> None:
        if self._closing:
            raise ConnectionLost("the client is closed")
        if len(self._buffer) >= self.buffer_limit:
            raise BrokerError(
                f"{len(self._buffer)} frames wait for the connection to come back: buffer full", "BUFFER_FULL"
            )
        self._buffer.append(outgoing)

    async def _call(self, frame: Dict[str, Any], timeout: Optional[float] = None) -> Dict[str, Any]:
        """Sends a frame with an ``id`` and returns its receipt; raises ``BrokerError`` on an error frame."""
        if self._closing:
            raise ConnectionLost("the client is closed")
        call_id = f"py{next(self._ids)}"
        frame = {**frame, "id": call_id}
        text = json.dumps(frame)
        call = _Call(frame, asyncio.get_running_loop().create_future())
        if self._live:
            call.sent_on = self._generation
            self._calls[call_id] = call
            try:
                await self.ws.send(text)
            except ConnectionClosed:
                # The disconnect handler settles the call (restored or lost).
                pass
        else:
            self._enqueue_outgoing(_Outgoing(text, call, call_id))
        limit = self.receipt_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.shield(call.future), limit)
        except asyncio.TimeoutError:
            still_buffered = any(o.call is call for o in self._buffer)
            if still_buffered:
                self._buffer = deque(o for o in self._buffer if o.call is not call)
            self._calls.pop(call_id, None)
            state = "was never sent" if still_buffered else "may or may not have taken effect"
            raise RequestTimeout(f"no answer to {frame['action']} within {limit} s; it {state}") from None

    # -- pub/sub --------------------------------------------------------------

    async def subscribe(self, topic: str, handler: EventHandler) -> None:
        """Calls ``handler`` for every event whose type matches ``topic`` (``*`` and ``>`` wildcards)."""
        if not is_valid_pattern(topic):
            raise ValueError(f"invalid topic pattern: {topic!r}")
        handlers = self.event_handlers.setdefault(topic, [])
        if any(h is handler for h in handlers):
            return
        handlers.append(handler)
        if len(handlers) > 1 or not self._live:
            # Already subscribed, or the next connection subscribes it.
            return
        self._subscribed_on[topic] = self._generation
        try:
            await self._call({"action": "subscribe", "topic": topic})
        except ConnectionLost:
            raise
        except BrokerError:
            handlers.remove(handler)
            if not handlers:
                self.event_handlers.pop(topic, None)
                self._subscribed_on.pop(topic, None)
            raise

    async def unsubscribe(self, topic: str, handler: Optional[EventHandler] = None) -> None:
        """Removes ``handler`` (all handlers when ``None``) from ``topic``; unsubscribes when none is left."""
        handlers = self.event_handlers.get(topic)
        if handlers is None:
            return
        if handler is not None:
            handlers[:] = [h for h in handlers if h is not handler]
            if handlers:
                return
        self.event_handlers.pop(topic, None)
        self._subscribed_on.pop(topic, None)
        if self._live:
            await self._call({"action": "unsubscribe", "topic": topic})

    async def publish(self, type_: str, payload: Any = None, *, confirm: bool = False, **opts: Any) -> Optional[int]:
        """Publishes an event; ``opts`` may set ``correlationId``, ``replyTo``, ``timestamp``, ``source``.

        With ``confirm=True`` it waits for the receipt and returns how many
        connections the event was delivered to.
        """
        if not is_valid_topic(type_):
            raise ValueError(f"invalid event type: {type_!r}")
        message: Dict[str, Any] = {
            "type": type_,
            "payload": payload,
            "source": opts.get("source") or self.client_id,
            "timestamp": opts.get("timestamp") or _now_iso(),
        }
        correlation = opts.get("correlationId", opts.get("correlation_id"))
        if correlation is not None:
            message["correlationId"] = correlation
        reply_to = opts.get("replyTo", opts.get("reply_to"))
        if reply_to is not None:
            message["replyTo"] = reply_to
        frame = {"action": "publish", "message": message}
        if not confirm:
            await self._send(frame)
            return None
        receipt = await self._call(frame)
        delivered = receipt.get("delivered")
        return delivered if isinstance(delivered, int) else None

    async def request(self, type_: str, payload: Any = None, timeout: float = 10.0) -> Event:
        """Publishes ``type_`` with a ``replyTo`` and ``correlationId`` and returns the reply event.

        Raises ``RequestTimeout`` when no reply arrives within ``timeout`` seconds.
        """
        inbox = await self._ensure_inbox()
        correlation = uuid.uuid4().hex
        reply: "asyncio.Future[Event]" = asyncio.get_running_loop().create_future()
        self._requests[correlation] = reply
        try:
            await self.publish(type_, payload, correlationId=correlation, replyTo=inbox)
            event = await asyncio.wait_for(reply, timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no reply to {type_} within {timeout} s") from None
        finally:
            self._requests.pop(correlation, None)
        return event

    async def reply(self, event: Event, payload: Any) -> None:
        """Answers a request: publishes ``payload`` to the event's ``replyTo`` with its ``correlationId``."""
        reply_to = event.get("replyTo")
        if not reply_to:
            raise ValueError("the event has no replyTo: nobody waits for a reply")
        await self.publish(reply_to, payload, correlationId=event.get("correlationId"))

    async def respond(self, topic: str, handler: EventHandler) -> None:
        """Subscribes ``handler`` to ``topic``; what it returns for a request is published as the reply."""

        async def responder(event: Event) -> None:
            result = await call_handler(handler, event)
            if event.get("replyTo"):
                await self.reply(event, result)

        await self.subscribe(topic, responder)

    async def _ensure_inbox(self) -> str:
        assert self._inbox_lock is not None, "connect() first"
        async with self._inbox_lock:
            if self._inbox is None:
                inbox = f"_inbox.{uuid.uuid4().hex}"
                # Replies are taken off before the event queue; this handler never runs.
                await self.subscribe(inbox, _ignore_event)
                self._inbox = inbox
        return self._inbox

    # -- work queues ----------------------------------------------------------

    async def enqueue(self, queue: str, task: Any, opts: Optional[Dict[str, Any]] = None) -> str:
        """Stores a task durably and returns its ``taskId`` once the gateway has stored it.

        ``opts``: ``priority``, ``delay`` (ms), ``attempts``, ``backoff``, ``jobId``, ``replyTo``.
        """
        _check_queue(queue)
        frame: Dict[str, Any] = {"action": "enqueue", "queue": queue, "task": task}
        if opts:
            frame["opts"] = opts
        receipt = await self._call(frame)
        return str(receipt.get("taskId"))

    async def pull(self, queue: str) -> None:
        """Asks for one task from ``queue``; it arrives at the ``on_task`` handler, now or when one is enqueued."""
        self._open_pull(queue)

    def _open_pull(self, queue: str, future: Optional["asyncio.Future[Task]"] = None) -> _Pull:
        _check_queue(queue)
        if self._closing:
            raise ConnectionLost("the client is closed")
        pull = _Pull(f"py{next(self._ids)}", queue, future)
        self._pulls[pull.id] = pull
        if self._live:
            pull.sent_on = self._generation
            self._spawn(self._send_pull(pull), f"pull from {queue}")
        return pull

    async def _send_pull(self, pull: _Pull) -> None:
        try:
            await self.ws.send(json.dumps({"action": "pull", "queue": pull.queue, "id": pull.id}))
        except ConnectionClosed:
            # The next connection sends it again (its sent_on is stale).
            pass

    async def ack(self, task_id: str, result: Any = None) -> bool:
        """Marks a task done; with ``result``, the gateway publishes it to the task's ``replyTo``.

        Returns False, without raising, when the connection that received
        the task has closed: the gateway has put it back and delivers it
        again (at-least-once). Raises ``BrokerError`` when the gateway refuses.
        """
        frame: Dict[str, Any] = {"action": "ack", "taskId": task_id}
        if result is not None:
            frame["result"] = result
        return await self._settle(task_id, frame)

    async def fail(self, task_id: str, reason: str = "") -> bool:
        """Reports a failed attempt: the gateway retries the task with backoff, then dead-letters it.

        Returns False when the task was lost with its connection, as ``ack``.
        """
        return await self._settle(task_id, {"action": "fail", "taskId": task_id, "reason": reason})

    async def _settle(self, task_id: str, frame: Dict[str, Any]) -> bool:
        key = str(task_id)
        held_on = self._held.get(key)
        if held_on is not None and (held_on != self._generation or not self._live):
            del self._held[key]
            log.warning("task %s went back to its queue when its connection closed: %s dropped", task_id, frame["action"])
            return False
        try:
            await self._call(frame)
        except ConnectionLost:
            self._held.pop(key, None)
            log.warning("connection closed before the gateway confirmed %s of task %s", frame["action"], task_id)
            return False
        finally:
            if key in self._held and self._held[key] == held_on:
                self._held.pop(key, None)
        return True

    def on_task(self, handler: TaskHandler) -> None:
        """Sets the handler of tasks that ``pull`` asks for (sync or async)."""
        self.task_handler = handler

    async def work(self, queue: str, handler: TaskHandler, concurrency: int = 1) -> "Worker":
        """Processes ``queue`` with at most ``concurrency`` tasks in hand.

        ``handler(task)`` may be a coroutine function or a plain function (run
        in a worker thread): its return value acks the task (as the ack's
        ``result``), an exception fails it with its message.
        """
        _check_queue(queue)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        worker = Worker(self, queue, handler, concurrency)
        self._workers.append(worker)
        worker._start()
        return worker

    async def ping(self, timeout: Optional[float] = None) -> int:
        """Round trip to the gateway; returns its clock in ms."""
        answer = await self._call({"action": "ping"}, timeout)
        return int(answer.get("pong", 0))


def _ignore_event(event: Event) -> None:
    return None


def _check_queue(queue: str) -> None:
    if not is_valid_queue_name(queue):
        raise ValueError(f"invalid queue name: {queue!r}")


@dataclass(eq=False)
class Worker:
    """Runs a task handler over one queue; see ``BrokerClient.work``."""

    client: BrokerClient
    queue: str
    handler: TaskHandler
    concurrency: int
    processed: int = 0
    failed: int = 0
    in_hand: int = 0
    _stopping: bool = False
    _slots: List["asyncio.Task[None]"] = field(default_factory=list)
    _waiting: Dict[int, _Pull] = field(default_factory=dict)
    _late: set["asyncio.Task[None]"] = field(default_factory=set)
    # Plain-function handlers get threads of their own, one per slot: they
    # never wait behind other thread work (the heartbeat, to_thread calls).
    _threads: Optional[ThreadPoolExecutor] = None

    def _start(self) -> None:
        if not is_async_callable(self.handler):
            self._threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"brainstem-{self.queue}")
        self._slots = [
            asyncio.create_task(self._slot(index), name=f"brainstem-work-{self.queue}-{index}")
            for index in range(self.concurrency)
        ]

    async def _slot(self, index: int) -> None:
        refused_delay = self.client.backoff_initial
        while not self._stopping:
            future: "asyncio.Future[Task]" = asyncio.get_running_loop().create_future()
            try:
                pull = self.client._open_pull(self.queue, future)
            except ConnectionLost:
                return
            self._waiting[index] = pull
            try:
                task = await future
            except ConnectionLost:
                return
            except BrokerError as err:
                log.warning("pull from %s refused (%s): %s", self.queue, err.code, err)
                await asyncio.sleep(refused_delay)
                refused_delay = min(refused_delay * 2, self.client.backoff_max)
                continue
            finally:
                self._waiting.pop(index, None)
            refused_delay = self.client.backoff_initial
            await self._process(task)

    async def _process(self, task: Task) -> None:
        self.in_hand += 1
        try:
            try:
                result = await call_task_handler(self.handler, task, self._threads)
            except Exception as err:
                self.failed += 1
                reason = str(err) or type(err).__name__
                log.warning("task %s from %s failed: %s", task.get("id"), self.queue, reason)
                await self._report(self.client.fail(task["id"], reason))
            else:
                self.processed += 1
                await self._report(self.client.ack(task["id"], result))
        finally:
            self.in_hand -= 1

    async def _report(self, settle: Awaitable[bool]) -> None:
        try:
            await settle
        except BrokerError as err:
            # At-least-once: the gateway delivers the task again.
            log.warning("could not settle a task from %s (%s): %s", self.queue, err.code, err)

    def _late_task(self, task: Task) -> None:
        """A task granted to a pull this stopped worker no longer waits on: finish it too."""
        late = asyncio.ensure_future(self._process(task))
        self._late.add(late)
        late.add_done_callback(self._late.discard)

    async def stop(self) -> None:
        """Stops pulling and returns when the tasks in hand are settled."""
        self._stopping = True
        for index, pull in list(self._waiting.items()):
            pull.orphan_handler = self._late_task
            if pull.future is not None and not pull.future.done():
                pull.future.cancel()
            self._slots[index].cancel()
        for slot in self._slots:
            try:
                await slot
            except asyncio.CancelledError:
                pass
        while self._late:
            await asyncio.gather(*list(self._late), return_exceptions=True)
        if self._threads is not None:
            self._threads.shutdown(wait=False)

    async def wait(self) -> None:
        """Returns when every slot has ended (after ``stop()`` or ``client.close()``)."""
        await asyncio.gather(*self._slots, return_exceptions=True)
