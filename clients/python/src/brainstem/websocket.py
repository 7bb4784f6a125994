"""The one module that knows which ``websockets`` is installed.

Debian's python3-websockets is 10.4, whose only asyncio client is the one
websockets now calls legacy; 14 made its new asyncio client the default, and
from 15 on that one goes through a proxy named in the environment. The rest
of the client opens connections with ``connect`` and uses what
``Connection`` lists, which both clients have, and catches
``ConnectionClosed``, which both raise.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, AsyncIterator, Callable, Dict, Optional, Protocol, Tuple, Union

from websockets.exceptions import ConnectionClosed
from websockets.version import version as _installed

__all__ = ["Connection", "ConnectionClosed", "connect", "describe", "drop"]


def _version(text: str) -> Tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


VERSION = _version(_installed)
# Before 14 the new client lacked keepalive; the original one is complete in every version.
NEW_CLIENT = VERSION >= (14, 0)

_connect: Callable[..., Any]
if NEW_CLIENT:
    from websockets.asyncio.client import connect as _connect
else:
    from websockets.legacy.client import connect as _connect


class Connection(Protocol):
    """What the client uses of an open connection."""

    @property
    def close_code(self) -> Optional[int]:
        """The close code once closed (1006 when it ended without a close frame)."""

    async def send(self, message: Union[str, bytes]) -> None: ...

    async def recv(self) -> Union[str, bytes]: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    def __aiter__(self) -> AsyncIterator[Union[str, bytes]]: ...


async def connect(url: str, *, open_timeout: float, close_timeout: float) -> Connection:
    """Opens a connection: no size limit on what arrives (the gateway bounds it), no compression.

    No protocol pings either: the transport keeps the connection alive with
    the application's ``ping`` (the gateway's own pings are still answered).
    """
    options: Dict[str, Any] = {
        "open_timeout": open_timeout,
        "max_size": None,
        "ping_interval": None,
        "ping_timeout": None,
        "close_timeout": close_timeout,
        "compression": None,
    }
    if VERSION >= (15, 0):
        # Straight to the gateway, whatever websockets is installed: it is
        # usually on this machine, and an HTTP(S)_PROXY set for the web must
        # not catch it.
        options["proxy"] = None
    connection: Connection = await _connect(url, **options)
    return connection


def drop(connection: Connection) -> None:
    """Ends the connection at once, without a closing handshake (the peer stopped answering): the reader sees it closed, code 1006."""
    # Both clients' connections keep their asyncio transport there.
    transport: Optional[asyncio.Transport] = getattr(connection, "transport", None)
    if transport is not None:
        transport.abort()


def describe() -> str:
    """Which websockets, and which of its clients, this process uses."""
    return f"websockets {_installed} ({'asyncio' if NEW_CLIENT else 'legacy'} client)"
