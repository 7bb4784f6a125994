"""A speech-to-text service on brainstem.start_service, for the tests.

Usage: service.py BUS_URL QUEUE HEARTBEAT_URL|default [sync]. Task payloads:
{"seconds": S} sleeps S seconds; {"fail": true} raises. "sync" makes both
handlers plain functions. Requests on voice.* are answered with a pong.
"""

import asyncio
import logging
import sys
import time

from brainstem import start_service
from stdio import emit

url, queue, heartbeat_url = sys.argv[1:4]
if heartbeat_url == "default":
    heartbeat_url = None  # beside the bus: the gateway's POST /heartbeat
sync = sys.argv[4:] == ["sync"]
# The service's log on stderr: the tests wait for what it says it is doing.
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")


def result_of(task):
    if task["payload"].get("fail"):
        raise ValueError(f"bad audio: {task['id']}")
    emit({"done": task["id"]})
    return {"text": f"transcript of {task['id']}"}


async def handle_task(task):
    emit({"started": task["id"]})
    await asyncio.sleep(task["payload"].get("seconds", 0))
    return result_of(task)


def handle_task_sync(task):
    emit({"started": task["id"]})
    time.sleep(task["payload"].get("seconds", 0))
    return result_of(task)


def handle_event(event):
    emit({"event": event["type"]})
    return {"pong": event["payload"]} if event.get("replyTo") else None


async def handle_event_async(event):
    return handle_event(event)


async def main():
    service = await start_service(
        "stt",
        queues=[queue],
        topics=["voice.*"],
        handle_event=handle_event if sync else handle_event_async,
        handle_task=handle_task_sync if sync else handle_task,
        concurrency=2,
        heartbeat=True,
        url=url,
        heartbeat_url=heartbeat_url,
        heartbeat_interval=0.2,
    )
    beating = service.heartbeat is not None and service.heartbeat.running
    emit({"exited": True, "inHand": service.in_hand, "connected": service.client.connected, "beating": beating})


asyncio.run(main())
