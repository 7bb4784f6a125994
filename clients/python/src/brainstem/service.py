"""The service template: the seed's ``start_service``, made robust."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any, Iterable, List, Optional

from .client import BrokerClient, Event, EventHandler, TaskHandler, Worker, call_handler
from .heartbeat import HeartbeatClient, heartbeat_url_for

log = logging.getLogger("brainstem.service")


class Service:
    """One service on the bus: its topics, its queues, its heartbeat.

    ``handle_event(event)`` and ``handle_task(task)`` may be sync or async.
    A task handler's return value acks the task (as its result); its
    exception fails the task with the exception's message. An event
    handler's return value, when not ``None``, answers an event that carries
    a ``replyTo`` (a request).
    """

    def __init__(
        self,
        id: str,
        queues: Optional[Iterable[str]] = None,
        topics: Optional[Iterable[str]] = None,
        handle_event: Optional[EventHandler] = None,
        handle_task: Optional[TaskHandler] = None,
        concurrency: int = 1,
        heartbeat: bool = True,
        *,
        url: Optional[str] = None,
        token: Optional[str] = None,
        heartbeat_url: Optional[str] = None,
        heartbeat_interval: float = 3.0,
        client: Optional[BrokerClient] = None,
    ) -> None:
        self.id = id
        self.queues = list(queues or [])
        self.topics = list(topics or [])
        self.handle_event = handle_event
        self.handle_task = handle_task
        self.concurrency = concurrency
        self.client = client or BrokerClient(url, client_id=id, token=token)
        self.heartbeat: Optional[HeartbeatClient] = None
        if heartbeat:
            self.heartbeat = HeartbeatClient(
                heartbeat_url or heartbeat_url_for(self.client.url),
                id,
                interval=heartbeat_interval,
                token=self.client.token,
            )
        self.workers: List[Worker] = []
        self._stop_requested: Optional[asyncio.Event] = None

    async def start(self) -> None:
        """Connects, subscribes to the topics, works the queues, starts the heartbeat."""
        if self.queues and self.handle_task is None:
            raise ValueError("queues given without handle_task")
        # Services often start before the gateway (a PM2 boot): wait for it.
        await self.client.connect(retry=True)
        log.info("[%s] connected to %s", self.id, self.client.url)
        for topic in self.topics:
            await self.client.subscribe(topic, self._on_event)
        if self.handle_task is not None:
            for queue in self.queues:
                self.workers.append(await self.client.work(queue, self.handle_task, self.concurrency))
        if self.heartbeat is not None:
            self.heartbeat.start()

    async def _on_event(self, event: Event) -> None:
        if self.handle_event is None:
            return
        try:
            result = await call_handler(self.handle_event, event)
        except Exception:
            log.exception("[%s] error handling event %s", self.id, event.get("type"))
            return
        if result is not None and event.get("replyTo"):
            await self.client.reply(event, result)

    def request_stop(self) -> None:
        """Asks ``run()`` to stop (what SIGINT and SIGTERM do)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def stop(self) -> None:
        """Stops pulling, waits for the tasks in hand to be settled, then disconnects."""
        await asyncio.gather(*(worker.stop() for worker in self.workers))
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        await self.client.close()
        log.info("[%s] stopped", self.id)

    async def run(self) -> None:
        """Starts, runs until SIGINT or SIGTERM (or ``request_stop()``), then stops gracefully."""
        self._stop_requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: List[signal.Signals] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError):
                # Not the main thread, or no signals on this platform.
                pass
        try:
            try:
                await self.start()
            except BaseException:
                await self.client.close()
                raise
            await self._stop_requested.wait()
            log.info("[%s] stopping: finishing %d task(s) in hand", self.id, self.in_hand)
            await self.stop()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        if self._stop_requested is not None and self._stop_requested.is_set():
            # A second signal: leave now; the gateway puts the tasks in hand back.
            log.warning("[%s] second signal: exiting without finishing the tasks in hand", self.id)
            os._exit(128 + signum)
        self.request_stop()

    @property
    def in_hand(self) -> int:
        return sum(worker.in_hand for worker in self.workers)


async def start_service(
    id: str,
    queues: Optional[Iterable[str]] = None,
    topics: Optional[Iterable[str]] = None,
    handle_event: Optional[EventHandler] = None,
    handle_task: Optional[TaskHandler] = None,
    concurrency: int = 1,
    heartbeat: bool = True,
    **options: Any,
) -> Service:
    """Runs a service until SIGINT or SIGTERM, then stops it gracefully and returns it.

    ``options``: ``url``, ``token``, ``heartbeat_url``, ``heartbeat_interval``,
    ``client`` (see ``Service``). The gateway URL defaults to
    ``$BRAINSTEM_URL``, else ``ws://127.0.0.1:8080/bus``.
    """
    service = Service(id, queues, topics, handle_event, handle_task, concurrency, heartbeat, **options)
    await service.run()
    return service
