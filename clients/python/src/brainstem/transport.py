"""The connection layer: one WebSocket to ``/bus`` that reconnects with
backoff and jitter and keeps itself alive; what it sends goes through the
``Outbox`` (bounded buffer while disconnected, receipts). It knows nothing of
topics or queues: the layers above restore their state through
``hooks.restore``."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from typing import Any, Awaitable, Callable, Dict, List, Optional, Protocol, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .binary_frame import decode_binary_frame
from .contract import CLOSE_GRACE, STABLE_CONNECTION, WELCOME_WAIT
from .errors import BrokerError, ClientClosed, ConnectFailed
from .outbox import Outbox
from .websocket import Connection, ConnectionClosed, connect, drop

log = logging.getLogger("brainstem")

Listener = Callable[..., Any]

_PING = json.dumps({"action": "ping"})

class TransportHooks(Protocol):
    """What the layers above give the transport: they own subscriptions, pulls and leases."""

    def restore(self, generation: int) -> List[str]:
        """A new connection: the frames that restore this client's state (sent before the buffer)."""

    def on_event(self, event: Any) -> None: ...

    def on_task(self, task: Any, key: Optional[str]) -> None: ...

    def on_answer(self, key: str, error: BrokerError) -> bool:
        """An error whose id the transport did not send (a pull's): True if the layer took it."""

    def on_revoke(self, revoke: Any) -> None:
        """``{"revoke": {taskId, queue, reason}}``: a task in hand was taken back."""

    def on_chunk(self, chunk: Any, body: Optional[bytes]) -> None:
        """``{"chunk": {…}}`` of a followed stream (v3), with the bytes of a binary one."""

    def connection_lost(self) -> None:
        """The connection closed: what was bound to it is gone."""

    def on_close(self, error: BrokerError) -> None:
        """close(): fail whatever waits."""


class Transport:
    def __init__(self, url: str, client_id: str, token: Optional[str], options: Dict[str, Any], hooks: TransportHooks, pid: Optional[int] = None) -> None:
        self.url = url
        self.pid = pid
        self.client_id = client_id
        self.token = token
        self.reconnect: bool = options["reconnect"]
        self.backoff_initial: float = options["backoff_initial"]
        self.backoff_max: float = options["backoff_max"]
        self.open_timeout: float = options["open_timeout"]
        self.keepalive: float = options["keepalive"]
        self.hooks = hooks
        self.outbox = Outbox(self, options["buffer_limit"], options["receipt_timeout"], options["max_frame_bytes"])

        self.ws: Optional[Connection] = None
        self.welcome: Optional[Dict[str, Any]] = None
        self.live = False
        self.closing = False
        self.generation = 0
        # Attempts since the last connection that lasted: the backoff's exponent.
        self._attempt = 0
        self._opened_at = 0.0
        self._last_received = 0.0
        self._background: set[asyncio.Task[Any]] = set()
        self._runner: Optional[asyncio.Task[None]] = None
        self._listeners: Dict[str, List[Listener]] = {"connected": [], "disconnected": [], "reconnecting": [], "revoked": [], "error": []}

    @property
    def buffered_frames(self) -> int:
        return self.outbox.buffered_frames

    def next_id(self) -> str:
        return self.outbox.next_id()

    def on(self, name: str, listener: Listener) -> None:
        if name not in self._listeners:
            raise ValueError(f"unknown listener {name!r}: expected connected, disconnected, reconnecting, revoked or error")
        self._listeners[name].append(listener)

    def emit(self, name: str, *args: Any) -> None:
        for listener in self._listeners[name]:
            try:
                result = listener(*args)
                if inspect.isawaitable(result):
                    self.spawn(result, f"{name} listener")
            except Exception:
                log.exception("%s listener failed", name)

    def spawn(self, work: Awaitable[Any], what: str) -> None:
        """Runs ``work`` in the background; its failure is logged, and close() cancels it."""

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

    # -- connection -------------------------------------------------------

    async def connect(self, retry: bool = False) -> None:
        if self._runner is not None and not self._runner.done():
            return
        self.closing = False
        while True:
            try:
                await self._open()
                break
            except Exception as err:
                if not retry:
                    raise ConnectFailed(f"cannot connect to {self.url}: {err}") from err
                if self._attempt == 0:
                    log.warning("cannot connect to %s (%s): retrying", self.url, err)
            await asyncio.sleep(self._next_delay())
        self._runner = asyncio.create_task(self._run(), name="brainstem-reader")

    async def close(self) -> None:
        self.closing = True
        ws = self.ws
        if ws is not None:
            await ws.close()
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
        self._runner = None
        if self.live:
            self._on_disconnect(1000)
        lost = ClientClosed()
        self.outbox.fail_all(lost)
        self.hooks.on_close(lost)
        for task in list(self._background):
            task.cancel()

    def connect_url(self) -> str:
        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query))
        query.setdefault("name", self.client_id)
        if self.token:
            query.setdefault("token", self.token)
        if self.pid is not None:
            query.setdefault("pid", str(self.pid))
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))

    def _next_delay(self) -> float:
        """The wait before the next attempt; emits ``reconnecting``."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** min(self._attempt, 30))
        # Equal jitter: never below half the ceiling, so a restarting gateway
        # is not hammered, and spread over the other half, so many services
        # do not return in step.
        delay = ceiling / 2 + random.random() * ceiling / 2
        self._attempt += 1
        self.emit("reconnecting", {"attempt": self._attempt, "delay": delay})
        return delay

    async def _open(self) -> None:
        ws = await connect(self.connect_url(), open_timeout=self.open_timeout, close_timeout=CLOSE_GRACE)
        try:
            # Cancelling recv() loses nothing: a late welcome is read by the reader.
            first: Optional[Union[str, bytes]] = await asyncio.wait_for(ws.recv(), WELCOME_WAIT)
        except asyncio.TimeoutError:
            # A server that sends no welcome (not this gateway) works all the same, without a clientId.
            first = None
        except BaseException:
            await ws.close()
            raise
        self.ws = ws
        self.welcome = None
        self.generation += 1
        generation = self.generation
        self._opened_at = self._last_received = asyncio.get_running_loop().time()
        if first is not None:
            self._receive(first)
        try:
            await self._restore(ws, generation)
        except ConnectionClosed:
            # Closed again at once: the reader sees it and reconnects.
            return
        self.live = True
        self.emit("connected", self.welcome)

    async def _restore(self, ws: Connection, generation: int) -> None:
        """Sends what the layers restore, then buffered frames, until none is left unsent."""
        while True:
            restoring = self.hooks.restore(generation)
            if not restoring and not self.outbox.buffered_frames:
                return
            for text in restoring:
                await ws.send(text)
            await self.outbox.flush(ws, generation)

    async def _run(self) -> None:
        while True:
            ws = self.ws
            # Started, and restarted, only once _open has set it.
            assert ws is not None
            keepalive = asyncio.create_task(self._keep_alive(ws), name="brainstem-keepalive") if self.keepalive > 0 else None
            try:
                async for raw in ws:
                    self._receive(raw)
            except ConnectionClosed:
                pass
            finally:
                if keepalive is not None:
                    keepalive.cancel()
            if asyncio.get_running_loop().time() - self._opened_at >= STABLE_CONNECTION:
                self._attempt = 0
            self._on_disconnect(ws.close_code)
            if self.closing or not self.reconnect:
                return
            await self._reopen()
            if self.closing:
                return

    async def _reopen(self) -> None:
        while not self.closing:
            await asyncio.sleep(self._next_delay())
            if self.closing:
                return
            try:
                await self._open()
                return
            except Exception as err:
                log.debug("reconnect to %s failed: %s", self.url, err)

    async def _keep_alive(self, ws: Connection) -> None:
        """Pings after ``keepalive`` seconds of silence, drops the connection after twice as long.

        An application ping, not the WebSocket protocol's: the TypeScript
        client must use it (browsers cannot send protocol pings), so both
        clients keep one behaviour; it goes only after silence (any frame
        counts as life); and its pong comes from the gateway's frame
        handling, the path receipts and events take, rather than from the
        WebSocket library alone.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.01, self.keepalive / 2))
            silent = loop.time() - self._last_received
            if silent >= 2 * self.keepalive:
                log.warning("the gateway at %s stopped answering: dropping the connection", self.url)
                drop(ws)
                return
            if silent >= self.keepalive:
                try:
                    await ws.send(_PING)
                except ConnectionClosed:
                    return

    def _on_disconnect(self, code: Optional[int]) -> None:
        was_live = self.live
        self.live = False
        self.outbox.connection_lost(code)
        self.hooks.connection_lost()
        if was_live:
            self.emit("disconnected", code)

    # -- incoming frames ----------------------------------------------------

    def _receive(self, raw: Union[str, bytes]) -> None:
        """One frame from the gateway: nothing in it stops the reader."""
        self._last_received = asyncio.get_running_loop().time()
        if not isinstance(raw, str):
            self._receive_binary(raw)
            return
        frame = self._parse(raw)
        if frame is None:
            return
        try:
            self._on_frame(frame)
        except Exception:
            log.exception("could not handle a frame from the gateway")

    def _receive_binary(self, raw: bytes) -> None:
        """A binary frame: a chunk of a followed stream, the only thing the gateway sends so."""
        decoded = decode_binary_frame(raw)
        if isinstance(decoded, str):
            error = BrokerError("INVALID_FRAME", f"the gateway sent a malformed binary frame: {decoded}")
            log.warning("%s", error)
            self.emit("error", error)
            return
        header, body = decoded
        if "chunk" in header:
            try:
                self.hooks.on_chunk(header["chunk"], body)
            except Exception:
                log.exception("could not handle a binary frame from the gateway")

    def _parse(self, raw: str) -> Optional[Dict[str, Any]]:
        try:
            frame = json.loads(raw)
        except (ValueError, RecursionError):
            # RecursionError: nested deeper than Python's parser goes.
            log.warning("ignored a frame that is not JSON, or nested too deeply")
            return None
        return frame if isinstance(frame, dict) else None

    def _on_frame(self, frame: Dict[str, Any]) -> None:
        frame_id = frame.get("id")
        key = str(frame_id) if frame_id is not None else None
        if "event" in frame:
            self.hooks.on_event(frame["event"])
        elif "task" in frame:
            self.hooks.on_task(frame["task"], key)
        elif "revoke" in frame:
            self.hooks.on_revoke(frame["revoke"])
        elif "chunk" in frame:
            self.hooks.on_chunk(frame["chunk"], None)
        elif "error" in frame:
            self._on_error(frame, key)
        elif key is not None and self.outbox.settle(key, frame):
            return
        elif isinstance(frame.get("welcome"), dict):
            self.welcome = frame["welcome"]

    def _on_error(self, frame: Dict[str, Any], key: Optional[str]) -> None:
        error = BrokerError(str(frame.get("code", "ERROR")), str(frame.get("error")))
        if key is not None and self.outbox.settle(key, None, error):
            return
        if key is not None and self.hooks.on_answer(key, error):
            return
        log.warning("gateway error %s: %s", error.code, error)
        self.emit("error", error)

    # -- outgoing frames ----------------------------------------------------

    async def send(self, frame: Dict[str, Any]) -> None:
        await self.outbox.send(frame)

    async def send_now(self, frame: Dict[str, Any]) -> None:
        await self.outbox.send_now(frame)

    async def call(self, frame: Dict[str, Any], timeout: Optional[float] = None, resend: bool = False) -> Dict[str, Any]:
        return await self.outbox.call(frame, timeout, resend)

    async def call_binary(self, header: Dict[str, Any], body: bytes) -> Dict[str, Any]:
        return await self.outbox.call_binary(header, body)
