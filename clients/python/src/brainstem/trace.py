"""W3C trace context without the handler's help: what a handler publishes or
enqueues continues the trace of the event or task it handles (same trace
id, a new span id, flags kept); anything else starts a new trace. The
handled traceparent travels in a context variable, which asyncio tasks
created by the handler inherit."""

from __future__ import annotations

import contextvars
import re
import secrets
from contextlib import contextmanager
from typing import Any, Iterator, Optional

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_handled: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("brainstem_traceparent", default=None)


def new_traceparent() -> str:
    """The traceparent of a new trace (sampled)."""
    ids = secrets.token_hex(24)
    return f"00-{ids[:32]}-{ids[32:]}-01"


def child_of(parent: str) -> str:
    """A child span of ``parent``: same version, trace id and flags, a new span id."""
    return f"{parent[:36]}{secrets.token_hex(8)}{parent[52:]}"


def outgoing_traceparent(explicit: Optional[str] = None) -> str:
    """What an outgoing publish or enqueue carries: the explicit one, else a child of the handled one, else a new trace."""
    if explicit is not None:
        return explicit
    handled = _handled.get()
    return new_traceparent() if handled is None else child_of(handled)


@contextmanager
def handling(traceparent: Any) -> Iterator[None]:
    """Inside: the handler of something that carried ``traceparent`` (tasks created here inherit it)."""
    if not isinstance(traceparent, str) or not _TRACEPARENT.match(traceparent):
        yield
        return
    token = _handled.set(traceparent)
    try:
        yield
    finally:
        _handled.reset(token)
