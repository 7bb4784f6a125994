"""``Worker``: runs a task handler over one queue (``BrokerClient.work``)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Dict, List, Optional, Protocol

from .contract import PULL_RETRY_CODES, pull_retry_delay
from .errors import BrokerError, ConnectionLost
from .leases import LeasedTask
from .pulls import Pull
from .shapes import Task, TaskHandler, call_task_handler, is_async_callable
from .trace import handling
from .transport import Transport

log = logging.getLogger("brainstem")

# The task is no longer ours (its connection closed, or the gateway says so):
# the gateway delivers it again. Nothing to report.
LEASE_GONE = frozenset({"LEASE_LOST", "DISCONNECTED", "CLOSED", "UNKNOWN_TASK"})
# The ack's result could not be sent: ack without it rather than leave the task hanging.
_RESULT_REFUSED = frozenset({"INVALID_FRAME", "PAYLOAD_TOO_LARGE"})


class TaskSource(Protocol):
    """What a Worker needs of the client's work side: pulls and settlements."""

    transport: Transport

    def open_pull(self, queue: str, future: Optional["asyncio.Future[Task]"] = None) -> Pull: ...

    async def ack(self, task_id: str, result: Any = None, lease: Optional[LeasedTask] = None) -> bool: ...

    async def fail(self, task_id: str, reason: str = "", lease: Optional[LeasedTask] = None) -> bool: ...

    def hand_back(self, task: Any, reason: str) -> None: ...


@dataclass(eq=False)
class Worker:
    """Runs a task handler over one queue; see ``BrokerClient.work``."""

    work: TaskSource
    queue: str
    handler: TaskHandler
    concurrency: int
    processed: int = 0
    failed: int = 0
    in_hand: int = 0
    _stopping: bool = False
    _slots: List["asyncio.Task[None]"] = field(default_factory=list)
    _waiting: Dict[int, Pull] = field(default_factory=dict)
    # Plain-function handlers get threads of their own, one per slot: they
    # never wait behind other thread work (the heartbeat, to_thread calls).
    _threads: Optional[ThreadPoolExecutor] = None

    def _start(self) -> None:
        if not is_async_callable(self.handler):
            self._threads = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"brainstem-{self.queue}")
        self._slots = [
            asyncio.create_task(self._slot(index), name=f"brainstem-work-{self.queue}-{index}")
            for index in range(self.concurrency)
        ]

    async def _slot(self, index: int) -> None:
        # Pulls refused since one last brought a task: the retry delay doubles with each.
        refused_in_row = 0
        while not self._stopping:
            future: "asyncio.Future[Task]" = asyncio.get_running_loop().create_future()
            try:
                pull = self.work.open_pull(self.queue, future)
            except ConnectionLost:
                return
            self._waiting[index] = pull
            try:
                task = await future
            except ConnectionLost:
                return
            except BrokerError as err:
                log.warning("pull from %s refused (%s): %s", self.queue, err.code, err)
                self.work.transport.emit("error", BrokerError(err.code, f"pull from {self.queue} refused: {err}"))
                if err.code not in PULL_RETRY_CODES:
                    # Asking again would be refused again: this slot's credit is given up.
                    return
                await asyncio.sleep(pull_retry_delay(refused_in_row))
                refused_in_row += 1
                continue
            finally:
                self._waiting.pop(index, None)
            refused_in_row = 0
            await self._process(task)

    async def _process(self, task: Task) -> None:
        if isinstance(task, LeasedTask) and task.revoked.is_set():
            # Revoked before its handler started: nothing to run, nothing to settle.
            return
        self.in_hand += 1
        try:
            with handling(task.get("traceparent")):
                # The handler's task copies the context now: what it sends continues the task's trace.
                runner = asyncio.ensure_future(call_task_handler(self.handler, task, self._threads))
            if isinstance(task, LeasedTask) and self._threads is None:
                task.cancel_handler = runner.cancel
            try:
                result = await runner
            except asyncio.CancelledError:
                if not (isinstance(task, LeasedTask) and task.revoked.is_set()):
                    raise
                # Revoked: the gateway took the task back; it is neither acked nor failed.
                return
            except Exception as err:
                if isinstance(task, LeasedTask) and task.revoked.is_set():
                    return
                self.failed += 1
                reason = str(err) or type(err).__name__
                log.warning("task %s from %s failed: %s", task.get("id"), self.queue, reason)
                await self._report(self.work.fail(task["id"], reason, self._lease(task)))
            else:
                if isinstance(task, LeasedTask) and task.revoked.is_set():
                    return
                self.processed += 1
                await self._report(self._ack(task, result))
        finally:
            self.in_hand -= 1

    async def _ack(self, task: Task, result: Any) -> bool:
        try:
            return await self.work.ack(task["id"], result, self._lease(task))
        except BrokerError as err:
            if result is None or err.code not in _RESULT_REFUSED:
                raise
            log.warning("result of task %s not sent (%s): %s", task["id"], err.code, err)
            return await self.work.ack(task["id"], None, self._lease(task))

    async def _report(self, settle: Awaitable[bool]) -> None:
        try:
            await settle
        except BrokerError as err:
            # At-least-once: the gateway delivers the task again.
            if err.code not in LEASE_GONE:
                log.warning("could not settle a task from %s (%s): %s", self.queue, err.code, err)

    @staticmethod
    def _lease(task: Task) -> Optional[LeasedTask]:
        return task if isinstance(task, LeasedTask) else None

    def _late_task(self, task: Task) -> None:
        """A task granted to a pull of this stopped worker: not processed, handed back."""
        self.work.hand_back(task, "worker stopped")

    async def stop(self) -> None:
        """Stops pulling and returns when the tasks in hand are settled."""
        self._stopping = True
        for index, pull in list(self._waiting.items()):
            pull.orphan_handler = self._late_task
            if pull.future is not None and not pull.future.done():
                pull.future.cancel()
            self._slots[index].cancel()
        for slot in self._slots:
            try:
                await slot
            except asyncio.CancelledError:
                pass
        if self._threads is not None:
            self._threads.shutdown(wait=False)

    async def wait(self) -> None:
        """Returns when every slot has ended (after ``stop()`` or ``client.close()``)."""
        await asyncio.gather(*self._slots, return_exceptions=True)
