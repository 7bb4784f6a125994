"""The Python client against a gateway whose heartbeat check lapses (see
test/client-liveness.test.ts): beats once, holds a task in an async
handler, and reports what the client saw as one JSON line."""

import asyncio
import json
import os
import sys
import urllib.request

from brainstem import BrokerClient
from stdio import emit


async def main(bus_url, http_url):
    client = BrokerClient(bus_url, "pylapser", backoff_initial=0.05, backoff_max=0.2)
    closes, revokes, seen = [], [], []
    client.on("disconnected", lambda code: closes.append(code))
    client.on("revoked", lambda revoke: revokes.append(revoke))
    await client.connect()
    beat = urllib.request.Request(
        http_url + "/heartbeat",
        data=json.dumps({"pid": os.getpid(), "name": "pylapser"}).encode(),
        headers={"content-type": "application/json"},
    )
    status = await asyncio.to_thread(lambda: urllib.request.urlopen(beat).status)
    queue = f"pylapse-{os.getpid()}"
    task_id = await client.enqueue(queue, {"n": 1})
    done = asyncio.get_running_loop().create_future()

    async def handler(task):
        if task["attempts"] > 1:
            seen.append({"attempts": task["attempts"], "cancelled": None})
            done.set_result(None)
            return "second time"
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append({"attempts": task["attempts"], "cancelled": task.revoke_reason})
            raise

    await client.work(queue, handler)
    try:
        await asyncio.wait_for(done, 10)
    except asyncio.TimeoutError:
        pass
    # The second delivery's ack: wait for it to be settled before reporting.
    await asyncio.sleep(0.2)
    emit({"status": status, "taskId": task_id, "queue": queue, "closes": closes, "revokes": revokes, "seen": seen})
    await client.close()


asyncio.run(main(sys.argv[1], sys.argv[2]))
