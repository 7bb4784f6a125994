"""Periodic heartbeats to the gateway, as the user's ``HeartbeatClient`` sends them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Optional
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("brainstem.heartbeat")


def heartbeat_url_for(bus_url: str) -> str:
    """The gateway's ``POST /heartbeat`` beside its ``/bus`` (``ws://h:p/bus`` → ``http://h:p/heartbeat``)."""
    parts = urlsplit(bus_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "/heartbeat", "", ""))


class HeartbeatClient:
    """POSTs ``{pid, name}`` every ``interval`` seconds; failures are logged and retried on the next beat."""

    def __init__(
        self,
        url: str,
        name: Optional[str] = None,
        *,
        pid: Optional[int] = None,
        interval: float = 3.0,
        on_heartbeat: Optional[Callable[[Dict[str, Any]], Any]] = None,
        token: Optional[str] = None,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.name = name or os.environ.get("name")
        self.pid = pid if pid is not None else os.getpid()
        self.interval = interval
        self.on_heartbeat = on_heartbeat
        self.token = token
        self.timeout = timeout
        self._task: Optional[asyncio.Task[None]] = None
        # Its own thread: a beat never waits behind blocking task handlers.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="brainstem-heartbeat")
        if not self.name:
            raise ValueError("name required for HeartbeatClient")

    def _post(self) -> Dict[str, Any]:
        body = json.dumps({"pid": self.pid, "name": self.name}).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"heartbeat failed with status {err.code}") from None
        return answer if isinstance(answer, dict) else {}

    async def send_once(self) -> Dict[str, Any]:
        """Sends one beat and returns the gateway's answer; raises on failure."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._post)

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Beats now and then every ``interval`` seconds, until ``stop()``."""
        if self._task is None:
            self._task = asyncio.create_task(self._beat(), name="brainstem-heartbeat")

    async def _beat(self) -> None:
        failing = False
        while True:
            try:
                answer = await self.send_once()
                if failing:
                    log.info("heartbeats to %s go through again", self.url)
                failing = False
                if self.on_heartbeat is not None:
                    self.on_heartbeat(answer)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if not failing:
                    log.warning("heartbeat to %s failed: %s", self.url, err)
                failing = True
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
