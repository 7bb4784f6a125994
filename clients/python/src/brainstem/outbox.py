"""What the client sends: frames are checked (size, serializable) before
anything goes out, wait in a bounded buffer while there is no connection,
and those sent with an ``id`` wait for their receipt (or ``TIMEOUT``)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional, Protocol, Union

from .binary_frame import encode_binary_frame
from .contract import HELD_RECEIPT_ACTIONS
from .errors import BrokerError, ClientClosed, ConnectionLost, InvalidArgument, RequestTimeout
from .websocket import Connection, ConnectionClosed

# Sending these twice changes nothing: in flight when the connection drops,
# they are sent again on the next one and their callers wait for that receipt.
_IDEMPOTENT_ACTIONS = frozenset({"subscribe", "unsubscribe"})


def encode(frame: Dict[str, Any]) -> str:
    """The frame as JSON text; ``InvalidArgument`` (INVALID_FRAME) for what JSON has no text for.

    Python's json writes NaN and Infinity, which are not JSON: the gateway
    would refuse the frame without reading its id, and its caller would wait
    for a receipt that never comes.
    """
    try:
        return json.dumps(frame, allow_nan=False)
    except ValueError as err:
        raise InvalidArgument("INVALID_FRAME", f"{frame.get('action')} frame is not JSON: {err}") from err


class TransportView(Protocol):
    """The transport as the outbox sees it."""

    live: bool
    closing: bool
    generation: int
    ws: Any


@dataclass(eq=False)
class _Call:
    """A frame sent with an ``id``, waiting for its receipt or error."""

    frame: Dict[str, Any]
    future: "asyncio.Future[Dict[str, Any]]"
    sent_on: int = -1
    # Sent again after a drop before its receipt (a publish with a msgId: the gateway keeps one).
    resend: bool = False


@dataclass(eq=False)
class _Outgoing:
    """A frame waiting for the connection, serialized when it was given (a bad payload fails its caller)."""

    # bytes: a binary frame (v3 stream chunks).
    text: Union[str, bytes]
    call: Optional[_Call] = None
    call_id: Optional[str] = None


class Outbox:
    def __init__(self, connection: TransportView, buffer_limit: int, receipt_timeout: Optional[float], max_frame_bytes: int) -> None:
        self.connection = connection
        self.buffer_limit = buffer_limit
        self.receipt_timeout = receipt_timeout
        self.max_frame_bytes = max_frame_bytes
        self._ids = itertools.count(1)
        self._calls: Dict[str, _Call] = {}
        self._buffer: Deque[_Outgoing] = deque()

    @property
    def buffered_frames(self) -> int:
        return len(self._buffer)

    def next_id(self) -> str:
        return f"py{next(self._ids)}"

    def _serialize(self, frame: Dict[str, Any]) -> str:
        """The frame's text; refused when closed or over the gateway's frame limit."""
        if self.connection.closing:
            raise ClientClosed()
        # json.dumps escapes everything outside ASCII: one character is one byte.
        text = encode(frame)
        if len(text) > self.max_frame_bytes:
            raise BrokerError("PAYLOAD_TOO_LARGE", f"{frame.get('action')} frame is larger than {self.max_frame_bytes} bytes")
        return text

    async def send(self, frame: Dict[str, Any]) -> None:
        """Sends a frame without an id (no receipt); it waits in the buffer while disconnected."""
        text = self._serialize(frame)
        if self.connection.live:
            try:
                await self.connection.ws.send(text)
                return
            except ConnectionClosed:
                pass
        self._enqueue(_Outgoing(text))

    async def send_now(self, frame: Dict[str, Any]) -> None:
        """Sends only while connected (pulls: restored by state, not buffered)."""
        try:
            await self.connection.ws.send(encode(frame))
        except ConnectionClosed:
            # The next connection restores it.
            pass

    def _enqueue(self, outgoing: _Outgoing) -> None:
        if self.connection.closing:
            raise ClientClosed()
        if len(self._buffer) >= self.buffer_limit:
            raise BrokerError("BUFFER_FULL", f"not connected and {len(self._buffer)} frames already wait: buffer full")
        self._buffer.append(outgoing)

    async def call(self, frame: Dict[str, Any], timeout: Optional[float] = None, resend: bool = False) -> Dict[str, Any]:
        """Sends a frame with an ``id`` and returns its receipt; raises ``BrokerError`` on an error frame."""
        call_id = self.next_id()
        frame = {**frame, "id": call_id}
        return await self._call(call_id, frame, self._serialize(frame), timeout, resend)

    async def call_binary(self, header: Dict[str, Any], body: bytes, timeout: Optional[float] = None) -> Dict[str, Any]:
        """As ``call``, for a binary frame: ``header`` (its action and fields) as JSON, then ``body`` (bus protocol v3)."""
        if self.connection.closing:
            raise ClientClosed()
        call_id = self.next_id()
        header = {**header, "id": call_id}
        data = encode_binary_frame(header, body)
        if len(data) > self.max_frame_bytes:
            raise BrokerError("PAYLOAD_TOO_LARGE", f"{header.get('action')} frame is larger than {self.max_frame_bytes} bytes")
        return await self._call(call_id, header, data, timeout, False)

    async def _call(self, call_id: str, frame: Dict[str, Any], text: Union[str, bytes], timeout: Optional[float], resend: bool) -> Dict[str, Any]:
        call = _Call(frame, asyncio.get_running_loop().create_future(), resend=resend)
        if self.connection.live:
            call.sent_on = self.connection.generation
            self._calls[call_id] = call
            try:
                await self.connection.ws.send(text)
            except ConnectionClosed:
                # connection_lost() settles the call (sent again, or lost).
                pass
        else:
            self._enqueue(_Outgoing(text, call, call_id))
        limit = self.receipt_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.shield(call.future), limit)
        except asyncio.TimeoutError:
            still_buffered = any(o.call is call for o in self._buffer)
            # A held receipt is not a lost one (contract row heldReceiptActions).
            if not still_buffered and frame["action"] in HELD_RECEIPT_ACTIONS and self._calls.get(call_id) is call:
                return await asyncio.shield(call.future)
            if still_buffered:
                self._buffer = deque(o for o in self._buffer if o.call is not call)
            self._calls.pop(call_id, None)
            state = "was never sent" if still_buffered else "may or may not have taken effect"
            raise RequestTimeout(f"no answer to {frame['action']} within {limit} s; it {state}") from None

    async def flush(self, ws: Connection, generation: int) -> None:
        """A connection opened: what waited goes out, in order."""
        while self._buffer:
            outgoing = self._buffer.popleft()
            if outgoing.call is not None and outgoing.call_id is not None:
                if outgoing.call.future.done():
                    continue
                outgoing.call.sent_on = generation
                self._calls[outgoing.call_id] = outgoing.call
            await ws.send(outgoing.text)

    def connection_lost(self, code: Optional[int]) -> None:
        """Idempotent frames in flight wait to be sent again; the others fail (``DISCONNECTED``, or ``CLOSED``)."""
        generation = self.connection.generation
        resend: List[_Outgoing] = []
        for call_id, call in list(self._calls.items()):
            if call.sent_on != generation:
                continue
            del self._calls[call_id]
            if call.future.done():
                continue
            action = call.frame.get("action")
            if self.connection.closing:
                call.future.set_exception(ClientClosed())
            elif action in _IDEMPOTENT_ACTIONS or call.resend:
                resend.append(_Outgoing(encode(call.frame), call, call_id))
            else:
                call.future.set_exception(
                    ConnectionLost(f"connection closed (code {code}) before the gateway answered {action}")
                )
        self._buffer.extendleft(reversed(resend))

    def fail_all(self, error: BrokerError) -> None:
        """close(): everything waiting fails."""
        for call in list(self._calls.values()):
            if not call.future.done():
                call.future.set_exception(error)
        self._calls.clear()
        for outgoing in self._buffer:
            if outgoing.call is not None and not outgoing.call.future.done():
                outgoing.call.future.set_exception(error)
        self._buffer.clear()

    def settle(self, key: str, receipt: Optional[Dict[str, Any]], error: Optional[BrokerError] = None) -> bool:
        """A receipt or error for ``key``: True if a call waited for it."""
        call = self._calls.pop(key, None)
        if call is None:
            return False
        if not call.future.done():
            if error is not None:
                call.future.set_exception(error)
            else:
                call.future.set_result(receipt or {})
        return True
