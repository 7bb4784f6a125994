"""Every default of the client, in one table.

The TypeScript client has the same table (``src/client/defaults.ts``, in
milliseconds); the conformance scenario ``20-defaults`` checks that both say
the same.
"""

from __future__ import annotations

from typing import Any, Dict

DEFAULT_URL = "ws://127.0.0.1:8080/bus"
"""Used when neither ``url`` nor the ``BRAINSTEM_URL`` environment variable is given."""

_DEFAULTS: Dict[str, Any] = {
    # First delay after a lost connection (s); doubles per failed attempt.
    "backoff_initial": 0.2,
    # Longest delay between attempts (s).
    "backoff_max": 10.0,
    # Frames kept while disconnected; past it, calls fail with BUFFER_FULL.
    "buffer_limit": 1000,
    # How long a frame sent with an id waits for its receipt (s).
    "receipt_timeout": 30.0,
    # Default timeout of request() (s).
    "request_timeout": 10.0,
    # How long one connection attempt may take (s).
    "open_timeout": 10.0,
    # WebSocket ping after this long; the connection is dropped when it stays unanswered as long again (s).
    "keepalive": 15.0,
    # Largest frame the client sends: the gateway's own default (BUS_MAX_FRAME_BYTES) closes the connection above it.
    "max_frame_bytes": 1024 * 1024,
    # Send opts.traceparent on every enqueue: off until the gateway accepts that option.
    "trace_tasks": True,
}


def default_options() -> Dict[str, Any]:
    """The defaults of every option, as one table (a fresh copy each call, as nats.js's ``defaultOptions()``)."""
    return dict(_DEFAULTS)
