"""The client's errors: one ``BrokerError`` with the protocol's ``code``, as in the TypeScript client."""

from __future__ import annotations

import asyncio


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


class ClientClosed(ConnectionLost):
    """The client was closed (``close()`` or ``drain()``): the call was not, or may not have been, carried out."""

    def __init__(self, message: str = "the client is closed") -> None:
        super().__init__(message)
        self.code = "CLOSED"


class LeaseLost(BrokerError):
    """``ack``/``fail`` of a task whose connection has closed: the gateway already gave it back to its queue."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "LEASE_LOST")


class InvalidArgument(BrokerError, ValueError):
    """Refused before anything was sent (``INVALID_TOPIC``, ``INVALID_QUEUE``, ``INVALID_FRAME``).

    Also a ``ValueError``, which is what these calls raised before they had codes."""


class ConnectFailed(BrokerError, ConnectionError):
    """``connect()`` could not open the first connection (code ``CONNECT_FAILED``); also a ``ConnectionError``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "CONNECT_FAILED")
