"""The seed's service_template.start_service, unchanged, working a queue through the gateway.

Usage: seed_service.py BUS_URL QUEUE [package].

Without "package" it runs the seed's own template and client. The template
builds its client with the seed's default URL (ws://localhost:7000, the old
broker); the one change is that default, set here to the gateway's /bus.

With "package" it runs the seed's template copied beside this script with
its import line changed to the brainstem package, which takes the URL from
BRAINSTEM_URL.

A task whose payload has "fail" makes handle_task raise.
"""

import asyncio
import sys

from stdio import emit

url, queue = sys.argv[1], sys.argv[2]
if sys.argv[3:] == ["package"]:
    from service_template import start_service
else:
    import shared.py.broker_client as broker_client
    from shared.py.service_template import start_service

    broker_client.BrokerClient.__init__.__defaults__ = (url, None)


async def handle_task(task):
    if task["payload"].get("fail"):
        emit({"raising": task["id"], "attempts": task["attempts"]})
        raise RuntimeError("transcription failed")
    emit({"done": task["id"], "payload": task["payload"], "attempts": task["attempts"]})


async def handle_event(event):
    emit({"event": event["type"], "payload": event["payload"]})


async def main():
    await start_service(
        id="stt",
        queues=[queue],
        topics=["voice.input"],
        handle_event=handle_event,
        handle_task=handle_task,
    )
    emit({"started": True})
    await asyncio.Event().wait()


asyncio.run(main())
