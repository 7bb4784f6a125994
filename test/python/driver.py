"""A BrokerClient of the brainstem package, remote-controlled by the tests.

Usage: driver.py BUS_URL NAME. Reads one JSON command per line on stdin and
prints one JSON object per line on stdout: the answer to each command
(``{"n": N, ...}`` or ``{"n": N, "error", "code"}``) and what happens
meanwhile (events, tasks, connection changes).
"""

import asyncio
import json
import logging
import os
import signal
import sys
import time

from brainstem import BrokerClient, BrokerError, RequestTimeout
from stdio import emit, stdin_lines


class Driver:
    def __init__(self, client):
        self.client = client
        self.workers = {}
        self.in_hand = 0
        self.max_in_hand = 0

    async def op_subscribe(self, cmd):
        tag = cmd.get("tag", cmd["topic"])

        def handler(event):
            emit({"event": event, "tag": tag})

        await self.client.subscribe(cmd["topic"], handler)
        return {}

    async def op_subscribe_many(self, cmd):
        """One handler for several patterns: it must see each event once."""
        tag = cmd["tag"]

        def handler(event):
            emit({"event": event, "tag": tag})

        for topic in cmd["topics"]:
            await self.client.subscribe(topic, handler)
        return {}

    async def op_unsubscribe(self, cmd):
        await self.client.unsubscribe(cmd["topic"])
        return {}

    async def op_publish(self, cmd):
        options = dict(cmd.get("opts", {}))
        if "confirm" in cmd:
            options["confirm"] = cmd["confirm"]
        delivered = await self.client.publish(cmd["type"], cmd.get("payload"), **options)
        return {"delivered": delivered}

    async def op_request(self, cmd):
        started = time.monotonic()
        reply = await self.client.request(cmd["type"], cmd.get("payload"), timeout=cmd.get("timeout", 5))
        return {"reply": reply, "seconds": time.monotonic() - started}

    async def op_respond(self, cmd):
        """Answers requests on a topic with the payload echoed and this client's name."""

        def responder(event):
            return {"echo": event.get("payload"), "by": self.client.client_id}

        await self.client.respond(cmd["topic"], responder)
        return {}

    async def op_enqueue(self, cmd):
        task_id = await self.client.enqueue(cmd["queue"], cmd.get("task"), cmd.get("opts"))
        return {"taskId": task_id}

    async def op_produce(self, cmd):
        """Enqueues `count` tasks one after the other; reports each receipt or failure."""
        for i in range(cmd["count"]):
            try:
                task_id = await self.client.enqueue(cmd["queue"], {"i": i}, cmd.get("opts"))
                emit({"receipted": task_id, "i": i})
            except (BrokerError, ConnectionError) as err:
                emit({"unreceipted": i, "code": getattr(err, "code", None), "message": str(err)})
            await asyncio.sleep(cmd.get("interval", 0))
        return {"produced": cmd["count"]}

    async def op_work(self, cmd):
        """Works a queue: each task sleeps `delay` s; `fail` makes the handler raise."""
        delay = cmd.get("delay", 0)
        fail = cmd.get("fail", False)
        sync = cmd.get("sync", False)

        def finish(task):
            if fail:
                emit({"raising": task["id"], "attempts": task["attempts"], "payload": task["payload"]})
                raise RuntimeError(f"cannot process {task['id']}")
            emit({"done": task["id"], "attempts": task["attempts"], "payload": task["payload"]})
            return {"processedBy": self.client.client_id}

        async def async_handler(task):
            self.in_hand += 1
            self.max_in_hand = max(self.max_in_hand, self.in_hand)
            emit({"started": task["id"], "inHand": self.in_hand})
            try:
                await asyncio.sleep(delay)
                return finish(task)
            finally:
                self.in_hand -= 1

        def sync_handler(task):
            emit({"started": task["id"], "inHand": 1})
            time.sleep(delay)
            return finish(task)

        worker = await self.client.work(
            cmd["queue"], sync_handler if sync else async_handler, cmd.get("concurrency", 1)
        )
        self.workers[cmd["queue"]] = worker
        return {}

    async def op_stop_work(self, cmd):
        worker = self.workers.pop(cmd["queue"])
        await worker.stop()
        return {"processed": worker.processed, "failed": worker.failed, "maxInHand": self.max_in_hand}

    async def op_pull(self, cmd):
        def on_task(task):
            emit({"task": task})

        self.client.on_task(on_task)
        await self.client.pull(cmd["queue"])
        return {}

    async def op_ack(self, cmd):
        return {"settled": await self.client.ack(cmd["taskId"], cmd.get("result"))}

    async def op_fail(self, cmd):
        return {"settled": await self.client.fail(cmd["taskId"], cmd.get("reason", ""))}

    async def op_status(self, cmd):
        return {"connected": self.client.connected, "maxInHand": self.max_in_hand}

    async def op_ping(self, cmd):
        return {"pong": await self.client.ping()}

    async def op_close(self, cmd):
        await self.client.close()
        return {}

    async def run(self, cmd):
        n = cmd.get("n")
        try:
            answer = await getattr(self, "op_" + cmd["op"])(cmd)
            emit({"n": n, **answer})
        except RequestTimeout as err:
            emit({"n": n, "error": str(err), "code": err.code, "kind": "RequestTimeout"})
        except BrokerError as err:
            emit({"n": n, "error": str(err), "code": err.code, "kind": type(err).__name__})
        except Exception as err:
            emit({"n": n, "error": str(err), "code": None, "kind": type(err).__name__})


def dump_tasks():
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


async def main():
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("BRAINSTEM_DEBUG") else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    client = BrokerClient(sys.argv[1], sys.argv[2], backoff_initial=0.05, backoff_max=0.5)
    client.on("connected", lambda welcome: emit({"connected": welcome}))
    client.on("disconnected", lambda code: emit({"disconnected": code}))
    client.on("error", lambda err: emit({"gatewayError": str(err), "code": err.code}))
    await client.connect()
    # SIGUSR1: where every task of this process waits, for a test that hangs.
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    driver = Driver(client)
    emit({"ready": True, "welcome": client.welcome})

    running = set()
    async for line in stdin_lines():
        if not line:
            continue
        task = asyncio.create_task(driver.run(json.loads(line)))
        running.add(task)
        task.add_done_callback(running.discard)
    await client.close()


asyncio.run(main())
