"""The work layer: enqueue, pulls (restored on every connection), leases
(revoked ones included), progress; ``Worker`` (worker.py) runs a handler over a queue."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional

from .errors import BrokerError, ClientClosed, InvalidArgument, LeaseLost
from .leases import LeasedTask
from .progress import ProgressCallback, ProgressListeners
from .pubsub import PubSub
from .topics import is_valid_queue_name
from .trace import handling, outgoing_traceparent
from .transport import Transport
from .shapes import Task, TaskHandler, call_task_handler
from .pulls import Pull
from .worker import LEASE_GONE, Worker

log = logging.getLogger("brainstem")


def _check_queue(queue: str) -> None:
    if not is_valid_queue_name(queue):
        raise InvalidArgument("INVALID_QUEUE", f"invalid queue name: {queue!r}")


class Work:
    def __init__(self, transport: Transport, pubsub: PubSub, trace_tasks: bool = False) -> None:
        self.transport = transport
        # Send opts.traceparent on every enqueue (not only an explicit one).
        self.trace_tasks = trace_tasks
        self.task_handler: Optional[TaskHandler] = None
        self.workers: List["Worker"] = []
        self.draining = False
        self._pulls: Dict[str, Pull] = {}
        # Tasks in hand, by id (the latest delivery; each knows its connection).
        self._leased: Dict[str, LeasedTask] = {}
        # Tasks the gateway revoked on this connection, by id: an ack or fail by id is refused, never sent.
        self._revoked: Dict[str, LeasedTask] = {}
        self._progress = ProgressListeners(pubsub)

    def restore(self, generation: int) -> List[str]:
        """A new connection: reopen every pull not yet sent on it (a stopped worker's are dropped)."""
        frames: List[str] = []
        for pull in list(self._pulls.values()):
            if pull.sent_on == generation:
                continue
            if pull.orphan_handler is not None:
                # A stopped worker's credit: the new connection need not grant it again.
                self._pulls.pop(pull.id, None)
                continue
            pull.sent_on = generation
            frames.append(json.dumps({"action": "pull", "queue": pull.queue, "id": pull.id}))
        return frames

    def connection_lost(self) -> None:
        """Its leases, revoked or not, are LEASE_LOST by generation now."""
        self._revoked.clear()

    def on_revoke(self, revoke: Any) -> None:
        """The gateway took a task back: cancel its handler, forget it, never ack it."""
        if not isinstance(revoke, dict) or revoke.get("taskId") is None:
            return
        key = str(revoke["taskId"])
        reason = revoke.get("reason") if isinstance(revoke.get("reason"), str) else "revoked"
        task = self._leased.pop(key, None) or self._lease({"id": key, "queue": revoke.get("queue", "")})
        self._revoked[key] = task
        task.revoke(reason)
        self.transport.emit("revoked", {"taskId": key, "queue": revoke.get("queue", ""), "reason": reason})

    def on_close(self, error: BrokerError) -> None:
        for pull in self._pulls.values():
            if pull.future is not None and not pull.future.done():
                pull.future.set_exception(error)
        self._pulls.clear()

    def on_answer(self, key: str, error: BrokerError) -> bool:
        pull = self._pulls.get(key)
        if pull is None:
            return False
        del self._pulls[key]
        if pull.future is not None and not pull.future.done():
            pull.future.set_exception(error)
            return True
        return False

    async def enqueue(
        self, queue: str, task: Any, opts: Optional[Dict[str, Any]] = None, on_progress: Optional[ProgressCallback] = None
    ) -> str:
        _check_queue(queue)
        frame: Dict[str, Any] = {"action": "enqueue", "queue": queue, "task": task}
        if self.trace_tasks:
            opts = {**(opts or {}), "traceparent": outgoing_traceparent((opts or {}).get("traceparent"))}
        if opts:
            frame["opts"] = opts
        reply_to = (opts or {}).get("replyTo")
        if on_progress is not None:
            if not reply_to:
                raise InvalidArgument("INVALID_FRAME", "on_progress needs replyTo: progress is published to REPLYTO.progress")
            await self._progress.prepare(reply_to)
        receipt = await self.transport.call(frame)
        task_id = str(receipt.get("taskId"))
        if on_progress is not None:
            self._progress.add(reply_to, task_id, on_progress)
        return task_id

    async def progress(self, task_id: str, value: Any, lease: Optional[LeasedTask] = None) -> None:
        """Reports progress of a task in hand; ``UNKNOWN_TASK`` once revoked, ``LEASE_LOST`` once its connection closed."""
        key = str(task_id)
        self._check_lease(key, lease or self._by_id(key), "UNKNOWN_TASK")
        await self.transport.call({"action": "progress", "taskId": key, "progress": value})

    async def write(self, task_id: str, data: Any, lease: LeasedTask) -> int:
        """Streams output of a task in hand (v3): JSON data, or bytes as a binary frame; returns its seq once stored."""
        key = str(task_id)
        self._check_lease(key, lease, "NOT_LEASED")
        if isinstance(data, (bytes, bytearray, memoryview)):
            receipt = await self.transport.call_binary({"action": "chunk", "taskId": key}, bytes(data))
        else:
            receipt = await self.transport.call({"action": "chunk", "taskId": key, "data": data})
        return int(receipt.get("seq", 0))

    async def pull(self, queue: str) -> None:
        self.open_pull(queue)

    def open_pull(self, queue: str, future: Optional["asyncio.Future[Task]"] = None) -> Pull:
        _check_queue(queue)
        if self.transport.closing:
            raise ClientClosed()
        pull = Pull(self.transport.next_id(), queue, future)
        self._pulls[pull.id] = pull
        if self.transport.live:
            pull.sent_on = self.transport.generation
            self.transport.spawn(
                self.transport.send_now({"action": "pull", "queue": pull.queue, "id": pull.id}), f"pull from {queue}"
            )
        return pull

    async def ack(self, task_id: str, result: Any = None, lease: Optional[LeasedTask] = None) -> bool:
        frame: Dict[str, Any] = {"action": "ack", "taskId": task_id}
        if result is not None:
            frame["result"] = result
        return await self._settle(task_id, frame, lease)

    async def fail(self, task_id: str, reason: str = "", lease: Optional[LeasedTask] = None) -> bool:
        return await self._settle(task_id, {"action": "fail", "taskId": task_id, "reason": reason}, lease)

    async def _settle(self, task_id: str, frame: Dict[str, Any], lease: Optional[LeasedTask]) -> bool:
        """``lease``: the delivery being settled (a Worker's); by id, the latest or the revoked one."""
        key = str(task_id)
        lease = lease or self._by_id(key)
        if lease is not None and self._leased.get(key) is lease:
            del self._leased[key]
        self._check_lease(key, lease, "LEASE_LOST")
        await self.transport.call(frame)
        return True

    def _by_id(self, key: str) -> Optional[LeasedTask]:
        return self._leased.get(key) or self._revoked.get(key)

    def _lease(self, fields: Dict[str, Any]) -> LeasedTask:
        task = LeasedTask(fields, self.transport.generation)
        task.report = lambda value: self.progress(str(fields["id"]), value, task)
        task.stream_write = lambda data: self.write(str(fields["id"]), data, task)
        return task

    def _check_lease(self, key: str, lease: Optional[LeasedTask], revoked_code: str) -> None:
        """Raises when the task is no longer ours: revoked, or its connection closed."""
        if lease is None:
            return
        if lease.revoke_reason is not None:
            message = f"task {key} was revoked by the gateway ({lease.revoke_reason})"
            raise LeaseLost(message) if revoked_code == "LEASE_LOST" else BrokerError(revoked_code, message)
        held_on = lease.generation
        if held_on != self.transport.generation or not self.transport.live:
            raise LeaseLost(f"task {key} came on a connection that closed: the gateway gave it back to the queue")

    async def work(self, queue: str, handler: TaskHandler, concurrency: int = 1) -> "Worker":
        _check_queue(queue)
        if concurrency < 1:
            raise InvalidArgument("INVALID_FRAME", "concurrency must be at least 1")
        if self.transport.closing:
            raise ClientClosed()
        worker = Worker(self, queue, handler, concurrency)
        self.workers.append(worker)
        worker._start()
        return worker

    async def drain(self) -> None:
        """Stops every worker and waits for the tasks in hand; tasks arriving meanwhile are left to the closing connection."""
        self.draining = True
        await asyncio.gather(*(worker.stop() for worker in list(self.workers)))

    def on_task(self, task: Any, key: Optional[str]) -> None:
        if not isinstance(task, dict):
            return
        queue = task.get("queue")
        pull = self._pulls.pop(key, None) if key is not None else None
        if pull is None:
            pull = next((p for p in self._pulls.values() if p.queue == queue), None)
            if pull is not None:
                del self._pulls[pull.id]
        if "id" in task:
            key = str(task["id"])
            task = self._lease(task)
            self._leased[key] = task
            self._revoked.pop(key, None)
        if pull is not None and pull.orphan_handler is not None:
            pull.orphan_handler(task)  # type: ignore[arg-type]
        elif pull is not None and pull.future is not None and not pull.future.done():
            pull.future.set_result(task)  # type: ignore[arg-type]
        elif self.task_handler is not None:
            with handling(task.get("traceparent")):
                self.transport.spawn(call_task_handler(self.task_handler, task), f"task handler for {queue}")
        else:
            error = BrokerError("UNKNOWN_TASK", f"task {task.get('id')} of {queue} arrived with no handler: handed back")
            log.warning("%s", error)
            self.transport.emit("error", error)
            self.hand_back(task, "no handler for this task")

    def hand_back(self, task: Any, reason: str) -> None:
        """Fails a task nobody will process, so the gateway retries it now rather than when the connection ends."""
        if self.draining:
            # Closing the connection hands it back without a retry delay.
            return
        self.transport.spawn(self._quietly(self.fail(str(task.get("id")), reason)), f"handing back task {task.get('id')}")

    @staticmethod
    async def _quietly(settle: Awaitable[bool]) -> None:
        try:
            await settle
        except BrokerError as err:
            if err.code not in LEASE_GONE:
                raise
