"""A speech-to-text service written for the seed's broker_client.py.

The tests run it as it is (on the seed's client) and with its import line
changed to the brainstem package, and expect the same behaviour.
Usage: seed_style_service.py BUS_URL.
"""

import asyncio
import json
import sys

from shared.py.broker_client import BrokerClient


async def main():
    client = BrokerClient(sys.argv[1], "stt")
    await client.connect()

    async def on_voice(event):
        text = event["payload"]["audio"].upper()
        await client.publish("transcript.final", {"text": text}, correlationId=event["correlationId"])

    async def on_task(task):
        text = task["payload"]["audio"].upper()
        await client.publish("transcript.final", {"text": text, "task": task["id"]})
        await client.ack(task["id"])
        await client.pull(task["queue"])

    await client.subscribe("voice.input", on_voice)
    client.on_task(on_task)
    await client.pull("transcribe.audio")
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
