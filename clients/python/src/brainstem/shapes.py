"""Shapes shared by the client's layers."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from concurrent.futures import Executor
from typing import Any, Callable, Optional, TypedDict, Union


class Event(TypedDict, total=False):
    """An event as subscribers receive it (``type``, ``source``, ``payload`` and ``timestamp`` are always set)."""

    type: str
    source: str
    payload: Any
    timestamp: str
    correlationId: Union[str, int]
    replyTo: str


class Task(TypedDict):
    """A pulled task: ``attempts`` counts its deliveries, this one included."""

    id: str
    queue: str
    payload: Any
    createdAt: str
    attempts: int


EventHandler = Callable[[Event], Any]
"""Called with each matching event; may be a plain function or a coroutine function."""
TaskHandler = Callable[[Task], Any]
"""Called with each task; a coroutine function, or a plain function (run in a worker thread)."""


async def call_handler(handler: Callable[..., Any], *args: Any) -> Any:
    """Calls a sync or async handler and returns its result."""
    result = handler(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def is_async_callable(handler: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None))


async def call_task_handler(handler: Callable[..., Any], task: Any, executor: Optional[Executor] = None) -> Any:
    """Calls a task handler: a plain function runs in a thread (of
    ``executor``, else the loop's default), so that blocking work (a model,
    a file) does not stall the connection, the heartbeats or the other tasks."""
    if is_async_callable(handler):
        return await handler(task)
    # The thread runs in a copy of this context: the handled traceparent goes along.
    context = contextvars.copy_context()
    result = await asyncio.get_running_loop().run_in_executor(executor, context.run, handler, task)
    if inspect.isawaitable(result):
        result = await result
    return result
