"""The pub/sub layer: subscriptions (restored on every connection),
publishing, and request/reply over a private inbox topic."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from .errors import BrokerError, ClientClosed, InvalidArgument, RequestTimeout
from .topics import is_valid_pattern, is_valid_topic, pattern_matches
from .transport import Transport
from .shapes import Event, EventHandler, call_handler

log = logging.getLogger("brainstem")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ignore_event(event: Event) -> None:
    return None


class PubSub:
    def __init__(self, transport: Transport, request_timeout: float) -> None:
        self.transport = transport
        self.request_timeout = request_timeout
        self.event_handlers: Dict[str, List[EventHandler]] = {}
        self._subscribed_on: Dict[str, int] = {}
        # Patterns whose subscribe awaits its receipt: the transport sends that
        # frame again after a drop, so restore() does not.
        self._confirming: set[str] = set()
        self._requests: Dict[str, "asyncio.Future[Event]"] = {}
        self._inbox: Optional[str] = None
        self._inbox_lock: Optional[asyncio.Lock] = None
        self._events: Optional["asyncio.Queue[Event]"] = None
        self._event_pump: Optional[asyncio.Task[None]] = None

    def start(self) -> None:
        """Called by connect(), inside the event loop."""
        self._events = asyncio.Queue()
        self._inbox_lock = asyncio.Lock()
        if self._event_pump is None or self._event_pump.done():
            self._event_pump = asyncio.create_task(self._pump_events(), name="brainstem-events")

    async def stop(self) -> None:
        if self._event_pump is not None and not self._event_pump.done():
            self._event_pump.cancel()
            try:
                await self._event_pump
            except asyncio.CancelledError:
                pass
        self._event_pump = None

    def on_close(self, error: BrokerError) -> None:
        for request in self._requests.values():
            if not request.done():
                request.set_exception(error)

    def restore(self, generation: int) -> List[str]:
        """A new connection: subscribe to every pattern not yet subscribed on it."""
        patterns = [
            p for p in self.event_handlers if self._subscribed_on.get(p) != generation and p not in self._confirming
        ]
        for pattern in patterns:
            self._subscribed_on[pattern] = generation
        return [json.dumps({"action": "subscribe", "topic": pattern}) for pattern in patterns]

    async def subscribe(self, topic: str, handler: EventHandler) -> None:
        if not is_valid_pattern(topic):
            raise InvalidArgument(f"invalid topic pattern: {topic!r}", "INVALID_TOPIC")
        handlers = self.event_handlers.setdefault(topic, [])
        if any(h is handler for h in handlers):
            return
        handlers.append(handler)
        if len(handlers) > 1:
            return
        self._confirming.add(topic)
        try:
            await self.transport.call({"action": "subscribe", "topic": topic})
            self._subscribed_on[topic] = self.transport.generation
        except ClientClosed:
            raise
        except BrokerError:
            handlers.remove(handler)
            if not handlers:
                self.event_handlers.pop(topic, None)
                self._subscribed_on.pop(topic, None)
            raise
        finally:
            self._confirming.discard(topic)

    async def unsubscribe(self, topic: str, handler: Optional[EventHandler] = None) -> None:
        handlers = self.event_handlers.get(topic)
        if handlers is None:
            return
        if handler is not None:
            handlers[:] = [h for h in handlers if h is not handler]
            if handlers:
                return
        self.event_handlers.pop(topic, None)
        self._subscribed_on.pop(topic, None)
        # Disconnected: the next connection simply does not subscribe it, unless a subscribe of it still waits to go out.
        if self.transport.live or topic in self._confirming:
            await self.transport.call({"action": "unsubscribe", "topic": topic})

    async def publish(self, type_: str, payload: Any = None, *, confirm: bool = True, **opts: Any) -> Optional[int]:
        if not is_valid_topic(type_):
            raise InvalidArgument(f"invalid event type: {type_!r}", "INVALID_TOPIC")
        message: Dict[str, Any] = {
            "type": type_,
            "payload": payload,
            "source": opts.get("source") or self.transport.client_id,
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
            await self.transport.send(frame)
            return None
        receipt = await self.transport.call(frame)
        delivered = receipt.get("delivered")
        return delivered if isinstance(delivered, int) else 0

    async def request(self, type_: str, payload: Any = None, timeout: Optional[float] = None) -> Event:
        if not is_valid_topic(type_):
            raise InvalidArgument(f"invalid event type: {type_!r}", "INVALID_TOPIC")
        limit = self.request_timeout if timeout is None else timeout
        inbox = await self._ensure_inbox()
        correlation = uuid.uuid4().hex
        reply: "asyncio.Future[Event]" = asyncio.get_running_loop().create_future()
        self._requests[correlation] = reply
        try:
            await self.publish(type_, payload, correlationId=correlation, replyTo=inbox)
            event = await asyncio.wait_for(reply, limit)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no reply to {type_} within {limit} s") from None
        finally:
            self._requests.pop(correlation, None)
        return event

    async def reply(self, event: Event, payload: Any) -> None:
        reply_to = event.get("replyTo")
        if not reply_to:
            raise InvalidArgument("the event has no replyTo: nobody waits for a reply", "INVALID_FRAME")
        await self.publish(reply_to, payload, correlationId=event.get("correlationId"))

    async def respond(self, topic: str, handler: EventHandler) -> None:
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

    def on_event(self, event: Any) -> None:
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
