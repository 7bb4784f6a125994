"""The seed's broker_client.py, unchanged, against the gateway: only the URL is given.

Usage: seed_pubsub.py BUS_URL. Prints one JSON line per step and obeys
"publish", "unsubscribe" and "quit" on stdin (the seed client sends no
receipts, so the test watches the gateway to know when a frame has landed).
"""

import asyncio
import sys

from shared.py.broker_client import BrokerClient
from stdio import emit, stdin_lines


async def main():
    url = sys.argv[1]
    tts = BrokerClient(url=url, client_id="tts")
    cephalon = BrokerClient(url=url, client_id="cephalon")
    await tts.connect()
    await cephalon.connect()

    async def on_reply(event):
        emit({"event": event})

    await tts.subscribe("agent.reply", on_reply)
    emit({"subscribed": "agent.reply"})

    async for command in stdin_lines():
        if command == "publish":
            await cephalon.publish("agent.reply", {"text": "hello"}, correlationId="c-1", replyTo="tts.done")
        elif command == "unsubscribe":
            await tts.unsubscribe("agent.reply")
            emit({"unsubscribed": "agent.reply"})
        elif command == "quit":
            break
    await tts.ws.close()
    await cephalon.ws.close()


asyncio.run(main())
