"""A scripted ``/bus`` for the property tests: a real WebSocket server on
127.0.0.1 that says welcome, then sends exactly what the test gives it and
keeps every frame the client sends (as ``test/conformance/fake-bus.ts``
does for the conformance scenarios)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, Optional, Union

try:
    # websockets 13 and later.
    from websockets.asyncio.server import serve
except ImportError:
    # websockets 10 to 12 (Debian's 10.4).
    from websockets.server import serve  # type: ignore[no-redef]

WELCOME = {"welcome": {"clientId": "scripted-1", "name": "scripted", "protocol": 1}}


class ScriptedGateway:
    def __init__(self) -> None:
        self.received: "asyncio.Queue[Union[str, bytes]]" = asyncio.Queue()
        self.connections = 0
        self._peer: Any = None
        self._connected = asyncio.Event()
        self._server: Any = None
        self.url = ""

    async def __aenter__(self) -> "ScriptedGateway":
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/bus"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: Any) -> None:
        self.connections += 1
        self._peer = ws
        await ws.send(json.dumps(WELCOME))
        self._connected.set()
        try:
            async for message in ws:
                self.received.put_nowait(message)
        except Exception:
            # The client went away mid-frame: the test sees it as a disconnect.
            pass

    async def send(self, frame: Union[str, bytes]) -> None:
        """A text frame (str) or a binary one (bytes), as given."""
        await self._connected.wait()
        await self._peer.send(frame)

    async def next_frame(self, action: Optional[str] = None, timeout: float = 5.0) -> Dict[str, Any]:
        """The next frame the client sent (with that action: others are passed over), parsed."""
        while True:
            raw = await asyncio.wait_for(self.received.get(), timeout)
            frame = json.loads(raw, parse_constant=_not_json)
            if action is None or frame.get("action") == action:
                return frame


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
