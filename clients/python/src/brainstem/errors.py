"""The client's errors: one ``BrokerError`` with the protocol's ``code``, as in the TypeScript client."""

from __future__ import annotations

import asyncio
import re
from typing import Optional

_CODE = re.compile(r"[A-Z][A-Z0-9_]*")


def _is_code(text: object) -> bool:
    return isinstance(text, str) and _CODE.fullmatch(text) is not None


class BrokerError(Exception):
    """The gateway refused a frame (``code`` is the protocol's error code), or the client could not send it.

    ``BrokerError(code, message)``, the TypeScript client's order. The order
    this client had before, ``BrokerError(message, code)`` or
    ``BrokerError(message)`` (code ``ERROR``), still works where it can be
    told apart: a code is upper case (``UNKNOWN_TASK``), a message is not;
    the keywords (``code=``, ``message=``) work as before.
    """

    def __init__(self, code: Optional[str] = None, message: Optional[str] = None) -> None:
        if code is None:
            code = "ERROR"
        elif message is None and not _is_code(code):
            code, message = "ERROR", code
        elif message is not None and not _is_code(code) and _is_code(message):
            code, message = message, code
        super().__init__(code if message is None else message)
        self.code = code


class ConnectionLost(BrokerError):
    """The connection closed before the gateway answered: the frame may or may not have taken effect."""

    def __init__(self, message: str) -> None:
        super().__init__("DISCONNECTED", message)


class RequestTimeout(BrokerError, asyncio.TimeoutError):
    """No receipt or reply arrived in time."""

    def __init__(self, message: str) -> None:
        super().__init__("TIMEOUT", message)


class ClientClosed(ConnectionLost):
    """The client was closed (``close()`` or ``drain()``): the call was not, or may not have been, carried out."""

    def __init__(self, message: str = "the client is closed") -> None:
        super().__init__(message)
        self.code = "CLOSED"


class LeaseLost(BrokerError):
    """``ack``/``fail`` of a task whose connection has closed: the gateway already gave it back to its queue."""

    def __init__(self, message: str) -> None:
        super().__init__("LEASE_LOST", message)


class InvalidArgument(BrokerError, ValueError):
    """Refused before anything was sent (``INVALID_TOPIC``, ``INVALID_QUEUE``, ``INVALID_FRAME``).

    Also a ``ValueError``, which is what these calls raised before they had codes."""


class ConnectFailed(BrokerError, ConnectionError):
    """``connect()`` could not open the first connection (code ``CONNECT_FAILED``); also a ``ConnectionError``."""

    def __init__(self, message: str) -> None:
        super().__init__("CONNECT_FAILED", message)
