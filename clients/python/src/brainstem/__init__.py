"""brainstem: the Python client of the brainstem gateway (pub/sub, request/reply, work queues)."""

from .client import (
    DEFAULT_URL,
    BrokerClient,
    BrokerError,
    ClientClosed,
    ConnectFailed,
    ConnectionLost,
    InvalidArgument,
    LeaseLost,
    Event,
    EventHandler,
    RequestTimeout,
    StreamChunk,
    Task,
    TaskHandler,
    Worker,
)
from .defaults import default_options
from .heartbeat import HeartbeatClient, heartbeat_url_for
from .service import Service, start_service
from .topics import is_valid_pattern, is_valid_queue_name, is_valid_topic, pattern_matches

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "BrokerClient",
    "BrokerError",
    "ClientClosed",
    "ConnectFailed",
    "ConnectionLost",
    "InvalidArgument",
    "LeaseLost",
    "Event",
    "EventHandler",
    "HeartbeatClient",
    "RequestTimeout",
    "StreamChunk",
    "Service",
    "Task",
    "TaskHandler",
    "Worker",
    "heartbeat_url_for",
    "is_valid_pattern",
    "is_valid_queue_name",
    "is_valid_topic",
    "pattern_matches",
    "start_service",
    "default_options",
]
