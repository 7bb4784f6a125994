"""The pub/sub layer: subscriptions (restored on every connection),
publishing, and request/reply over a private inbox topic."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Set, Tuple

from .errors import BrokerError, ClientClosed, InvalidArgument, RequestTimeout
from .names import MAX_MSG_ID_BYTES, is_name
from .topics import is_valid_pattern, is_valid_topic, pattern_matches
from .transport import Transport
from .shapes import Event, EventHandler, call_handler
from .trace import handling, outgoing_traceparent

log = logging.getLogger("brainstem")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ignore_event(event: Event) -> None:
    return None


def _offset_key(offset: str) -> Tuple[float, float]:
    """Offsets are "MS-SEQ": compared as numbers, never as strings ("9-0" < "10-0")."""
    ms, _, seq = offset.partition("-")
    try:
        return (float(ms), float(seq or 0))
    except ValueError:
        return (float("inf"), float("inf"))


def _newer(offset: str, kept: Optional[str]) -> bool:
    return kept is None or _offset_key(offset) > _offset_key(kept)


def _resume_info(receipt: Dict[str, Any]) -> Dict[str, Any]:
    return {k: receipt[k] for k in ("offset", "replayed", "gap") if k in receipt}


class PubSub:
    def __init__(self, transport: Transport, request_timeout: float) -> None:
        self.transport = transport
        self.request_timeout = request_timeout
        self.event_handlers: Dict[str, List[EventHandler]] = {}
        self._subscribed_on: Dict[str, int] = {}
        # Patterns whose subscribe awaits its receipt: the transport sends that
        # frame again after a drop, so restore() does not.
        self._confirming: set[str] = set()
        # Per pattern whose events carry offsets: the newest one handed to its
        # handlers, where a new connection resumes (``since``).
        self._offsets: Dict[str, str] = {}
        # Restoring subscribes with ``since``, by id -> (pattern, connection); NOT_RETAINED: subscribe plainly.
        self._resuming: Dict[str, Tuple[str, int]] = {}
        self._requests: Dict[str, "asyncio.Future[Event]"] = {}
        self._inbox: Optional[str] = None
        self._inbox_lock: Optional[asyncio.Lock] = None
        # Each event with the patterns it is new for (None: all that match).
        self._events: Optional["asyncio.Queue[Tuple[Event, Optional[Set[str]]]]"] = None
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
        frames = []
        self._resuming = {key: entry for key, entry in self._resuming.items() if entry[1] == generation}
        for pattern in patterns:
            self._subscribed_on[pattern] = generation
            frame: Dict[str, Any] = {"action": "subscribe", "topic": pattern}
            since = self._offsets.get(pattern)
            if since is not None:
                frame["since"] = since
                frame["id"] = self.transport.next_id()
                self._resuming[frame["id"]] = (pattern, generation)
            frames.append(json.dumps(frame))
        return frames

    def on_answer(self, key: str, error: BrokerError) -> bool:
        """A restoring subscribe refused: NOT_RETAINED (the rules changed) subscribes plainly and stops tracking."""
        entry = self._resuming.pop(key, None)
        if entry is None:
            return False
        pattern = entry[0]
        if error.code == "NOT_RETAINED" and pattern in self.event_handlers:
            self._offsets.pop(pattern, None)
            self.transport.spawn(self.transport.call({"action": "subscribe", "topic": pattern}), f"subscribing to {pattern}")
        else:
            log.warning("could not resume %s (%s): %s", pattern, error.code, error)
            self.transport.emit("error", error)
        return True

    def _keep_offset(self, pattern: str, offset: Any) -> None:
        if isinstance(offset, str) and pattern in self.event_handlers and _newer(offset, self._offsets.get(pattern)):
            self._offsets[pattern] = offset

    async def subscribe(
        self, topic: str, handler: EventHandler, since: Optional[str] = None, last: Optional[int] = None
    ) -> Dict[str, Any]:
        if not is_valid_pattern(topic):
            raise InvalidArgument("INVALID_TOPIC", f"invalid topic pattern: {topic!r}")
        handlers = self.event_handlers.setdefault(topic, [])
        if any(h is handler for h in handlers):
            return {}
        handlers.append(handler)
        if len(handlers) > 1:
            return {}
        self._confirming.add(topic)
        frame: Dict[str, Any] = {"action": "subscribe", "topic": topic}
        if since is not None:
            frame["since"] = since
        if last is not None:
            frame["last"] = last
        try:
            receipt = await self.transport.call(frame)
            self._subscribed_on[topic] = self.transport.generation
            self._keep_offset(topic, receipt.get("offset"))
            return _resume_info(receipt)
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
        self._offsets.pop(topic, None)
        # Disconnected: the next connection simply does not subscribe it, unless a subscribe of it still waits to go out.
        if self.transport.live or topic in self._confirming:
            await self.transport.call({"action": "unsubscribe", "topic": topic})

    async def publish(self, type_: str, payload: Any = None, *, confirm: bool = True, **opts: Any) -> Optional[int]:
        if not is_valid_topic(type_):
            raise InvalidArgument("INVALID_TOPIC", f"invalid event type: {type_!r}")
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
        msg_id = opts.get("msgId", opts.get("msg_id"))
        if msg_id is None and not self.transport.live:
            # Buffered while disconnected: a msgId makes the resend after a reconnect count once.
            msg_id = str(uuid.uuid4())
        if msg_id is not None:
            if not is_name(msg_id, MAX_MSG_ID_BYTES):
                raise InvalidArgument(
                    "INVALID_FRAME",
                    f"msgId must be a name of 1 to {MAX_MSG_ID_BYTES} UTF-8 bytes without control characters: {msg_id!r}",
                )
            message["msgId"] = msg_id
        message["traceparent"] = outgoing_traceparent(opts.get("traceparent"))
        frame = {"action": "publish", "message": message}
        if not confirm:
            await self.transport.send(frame)
            return None
        # With a msgId, a publish in flight when the connection drops is sent again: the gateway keeps one.
        receipt = await self.transport.call(frame, resend=msg_id is not None)
        delivered = receipt.get("delivered")
        return delivered if isinstance(delivered, int) else 0

    async def request(self, type_: str, payload: Any = None, timeout: Optional[float] = None) -> Event:
        if not is_valid_topic(type_):
            raise InvalidArgument("INVALID_TOPIC", f"invalid event type: {type_!r}")
        limit = self.request_timeout if timeout is None else timeout
        inbox = await self._ensure_inbox()
        correlation = uuid.uuid4().hex
        reply: "asyncio.Future[Event]" = asyncio.get_running_loop().create_future()
        self._requests[correlation] = reply
        try:
            # A msgId: a request in flight when the connection drops is sent again, and waits on to its timeout.
            await self.publish(type_, payload, correlationId=correlation, replyTo=inbox, msgId=correlation)
            event = await asyncio.wait_for(reply, limit)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no reply to {type_} within {limit} s") from None
        finally:
            self._requests.pop(correlation, None)
        return event

    async def reply(self, event: Event, payload: Any) -> None:
        reply_to = event.get("replyTo")
        if not reply_to:
            raise InvalidArgument("INVALID_FRAME", "the event has no replyTo: nobody waits for a reply")
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
                # From "0" (a new inbox has nothing yet): the receipt's offset is where a
                # reconnect resumes, so a reply published meanwhile still arrives.
                try:
                    await self.subscribe(inbox, _ignore_event, since="0")
                except BrokerError as err:
                    if err.code != "NOT_RETAINED":
                        raise
                    await self.subscribe(inbox, _ignore_event)
                self._inbox = inbox
        return self._inbox

    def _fresh_patterns(self, event: Dict[str, Any]) -> Optional[Set[str]]:
        """The patterns this event is new for (None: it carries no offset, all of them).

        An event at or below a pattern's kept offset is a replay overlapping what it already handed out.
        """
        offset = event.get("offset")
        if not isinstance(offset, str):
            return None
        fresh: Set[str] = set()
        topic = event.get("type", "")
        for pattern in self.event_handlers:
            if pattern_matches(pattern, topic) and _newer(offset, self._offsets.get(pattern)):
                self._offsets[pattern] = offset
                fresh.add(pattern)
        return fresh

    def on_event(self, event: Any) -> None:
        # An event with no topic matches no pattern (and would stop the pump).
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return
        fresh = self._fresh_patterns(event)
        if fresh is not None and not fresh:
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
            self._events.put_nowait((event, fresh))  # type: ignore[arg-type]

    async def _pump_events(self) -> None:
        """Runs event handlers one event at a time, in arrival order."""
        assert self._events is not None
        while True:
            event, fresh = await self._events.get()
            topic = event.get("type", "")
            called: List[EventHandler] = []
            for pattern, handlers in list(self.event_handlers.items()):
                if not pattern_matches(pattern, topic) or (fresh is not None and pattern not in fresh):
                    continue
                for handler in handlers:
                    # Each handler sees an event once, however many of its patterns match.
                    if any(handler is seen for seen in called):
                        continue
                    called.append(handler)
                    try:
                        with handling(event.get("traceparent")):
                            await call_handler(handler, event)
                    except Exception:
                        log.exception("event handler for %s failed", topic)
