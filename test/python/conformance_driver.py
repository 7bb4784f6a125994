"""The conformance scenarios' driver for the Python client (test/conformance/).

Usage: conformance_driver.py BUS_URL SETTINGS_JSON. Reads one command per
line on stdin, ``{"n", "op", "args"}``, runs each as its own asyncio task
(a scenario may leave a call pending while it does other things), and
prints ``{"n", "ok": VALUE}`` or ``{"n", "error": {"code", "brokerError",
"message"}}`` when it ends. What the client does on its own (events and
tasks handed to handlers, connection changes, errors it reports) is printed
as ``{"note": {...}}`` in the order it happens.
"""

import asyncio
import json
import logging
import os
import sys

import brainstem
from brainstem import BrokerClient, BrokerError, contract
from stdio import emit, stdin_lines


def note(**fields):
    emit({"note": fields})


def build_client(url, settings):
    options = {}
    mapping = {
        "reconnectInitialDelayMs": "backoff_initial",
        "reconnectMaxDelayMs": "backoff_max",
        "receiptTimeoutMs": "receipt_timeout",
        "keepaliveMs": "keepalive",
    }
    for neutral, name in mapping.items():
        if neutral in settings:
            options[name] = settings[neutral] / 1000
    if "maxBufferedFrames" in settings:
        options["buffer_limit"] = settings["maxBufferedFrames"]
    if "pid" in settings:
        options["pid"] = settings["pid"]
    if "traceTasks" in settings:
        options["trace_tasks"] = settings["traceTasks"]
    return BrokerClient(url, settings["name"], **options)


class Driver:
    def __init__(self, client):
        self.client = client
        self.workers = {}
        self.held = {}
        self.tasks = {}
        self.calls = {}

    async def op_connect(self, a):
        await self.client.connect()
        return {"connected": self.client.connected}

    async def op_close(self, a):
        await self.client.close()

    async def op_drain(self, a):
        await self.client.drain()

    async def op_defaults(self, a):
        # What the client uses, by the contract's row names.
        d = brainstem.default_options()

        def ms(seconds):
            return round(seconds * 1000)

        return {
            "reconnectInitialDelayMs": ms(d["backoff_initial"]),
            "reconnectMaxDelayMs": ms(d["backoff_max"]),
            "stableConnectionMs": ms(contract.STABLE_CONNECTION),
            "connectTimeoutMs": ms(d["open_timeout"]),
            "welcomeWaitMs": ms(contract.WELCOME_WAIT),
            "keepaliveMs": ms(d["keepalive"]),
            "closeGraceMs": ms(contract.CLOSE_GRACE),
            "maxBufferedFrames": d["buffer_limit"],
            "maxFrameBytes": d["max_frame_bytes"],
            "receiptTimeoutMs": ms(d["receipt_timeout"]),
            "requestTimeoutMs": ms(d["request_timeout"]),
            "pullRetryInitialMs": ms(contract.PULL_RETRY_INITIAL),
            "pullRetryMaxMs": ms(contract.PULL_RETRY_MAX),
            "pullRetryCodes": sorted(contract.PULL_RETRY_CODES),
            "heldReceiptActions": sorted(contract.HELD_RECEIPT_ACTIONS),
            "traceTasks": d["trace_tasks"],
        }

    async def op_state(self, a):
        return {"connected": self.client.connected, "bufferedFrames": self.client.buffered_frames}

    async def op_ping(self, a):
        return {"pong": await self.client.ping()}

    async def op_subscribe(self, a):
        tag = a.get("tag", a["pattern"])

        def handler(event):
            note(kind="event", tag=tag, event=event)

        return await self.client.subscribe(a["pattern"], handler, a.get("since"), a.get("last"))

    async def op_unsubscribe(self, a):
        await self.client.unsubscribe(a["pattern"])

    async def op_publish(self, a):
        options = dict(a.get("opts", {}))
        if "confirm" in a:
            options["confirm"] = a["confirm"]
        delivered = await self.client.publish(a["type"], a.get("payload"), **options)
        return {"delivered": delivered}

    async def op_request(self, a):
        options = {} if "timeoutMs" not in a else {"timeout": a["timeoutMs"] / 1000}
        reply = await self.client.request(a["type"], a.get("payload"), **options)
        return {"reply": reply}

    async def op_respond(self, a):
        await self.client.respond(a["pattern"], lambda event: {"echo": event.get("payload")})

    async def op_enqueue(self, a):
        on_progress = None
        if a.get("onProgress"):
            def on_progress(progress, event):
                note(kind="progress", taskId=str(event.get("correlationId")), progress=progress)
        return {"taskId": await self.client.enqueue(a["queue"], a.get("payload"), a.get("opts"), on_progress=on_progress)}

    async def op_pid(self, a):
        return {"pid": str(os.getpid())}

    async def op_progress(self, a):
        task = self.tasks.get(a["taskId"])
        if task is not None:
            await task.progress(a.get("value"))
        else:
            await self.client.progress(a["taskId"], a.get("value"))

    async def op_write(self, a):
        data = bytes(a["bytes"]) if "bytes" in a else a.get("data")
        return {"seq": await self.tasks[a["taskId"]].write(data)}

    async def op_follow(self, a):
        # The neutral item: camelCase names, a binary chunk's bytes as a list of ints.
        chunks = []
        async for chunk in self.client.follow(a["taskId"], from_seq=a.get("from", 1)):
            item = {"taskId": chunk.task_id, "seq": chunk.seq}
            if chunk.attempt is not None:
                item["attempt"] = chunk.attempt
            if chunk.traceparent is not None:
                item["traceparent"] = chunk.traceparent
            if chunk.gap:
                item["gap"] = True
            elif chunk.end is not None:
                item["end"] = chunk.end
                if chunk.end == "ok":
                    item["result"] = chunk.result
            elif isinstance(chunk.data, bytes):
                item["bytes"] = list(chunk.data)
            else:
                item["data"] = chunk.data
            chunks.append(item)
        return {"chunks": chunks}

    async def op_pull(self, a):
        await self.client.pull(a["queue"])

    async def op_ack(self, a):
        return {"settled": await self.client.ack(a["taskId"], a.get("result"))}

    async def op_fail(self, a):
        return {"settled": await self.client.fail(a["taskId"], a.get("reason", ""))}

    async def op_work(self, a):
        name = a.get("worker", a["queue"])
        mode = a.get("mode", "hold")

        async def handler(task):
            note(kind="task", worker=name, task=task)
            if mode == "ack":
                return a.get("result")
            if mode == "publish":
                await self.client.publish(a["publishType"], task.get("payload"))
                return None
            if mode == "fail":
                raise RuntimeError(a.get("reason", "failed"))
            held = asyncio.get_running_loop().create_future()
            self.held[task["id"]] = held
            self.tasks[task["id"]] = task
            try:
                outcome = await held
            finally:
                self.tasks.pop(task["id"], None)
            if "fail" in outcome:
                raise RuntimeError(outcome["fail"])
            return outcome.get("result")

        def thread_handler(task):
            # A plain function, run in a thread: it watches task.revoked, then returns normally.
            note(kind="task", worker=name, task=task)
            task.revoked.wait(10)
            return {"done": task.revoke_reason}

        chosen = thread_handler if mode == "until-revoked" else handler
        self.workers[name] = await self.client.work(a["queue"], chosen, a.get("concurrency", 1))

    async def op_release(self, a):
        held = self.held.pop(a["taskId"])
        held.set_result(a)

    async def op_stop(self, a):
        await self.workers[a["worker"]].stop()

    async def op_settled(self, a):
        return {"settled": self.calls[a["call"]].done()}

    async def run(self, n, op, args):
        try:
            ok = await getattr(self, "op_" + op)(args)
            emit({"n": n, "ok": {} if ok is None else ok})
        except Exception as err:
            emit({"n": n, "error": {
                "code": getattr(err, "code", None),
                "brokerError": isinstance(err, BrokerError),
                "message": f"{type(err).__name__}: {err}",
            }})


async def main():
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("BRAINSTEM_DEBUG") else logging.ERROR,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    client = build_client(sys.argv[1], json.loads(sys.argv[2]))
    client.on("connected", lambda welcome: note(kind="connected"))
    client.on("disconnected", lambda code: note(kind="disconnected", code=code))
    client.on("revoked", lambda revoke: note(kind="revoked", **revoke))
    client.on("reconnecting", lambda retry: note(kind="reconnecting", attempt=retry["attempt"]))
    client.on("error", lambda err: note(kind="error", code=getattr(err, "code", None)))
    client.on_task(lambda task: note(kind="task", worker=None, task=task))
    driver = Driver(client)
    emit({"ready": True})
    async for line in stdin_lines():
        if not line:
            continue
        command = json.loads(line)
        if command["op"] == "settled":
            # Answered at once, in line order: it sees the client as it is now.
            await driver.run(command["n"], "settled", command["args"])
            continue
        driver.calls[command["n"]] = asyncio.create_task(driver.run(command["n"], command["op"], command["args"]))
    await client.close()


asyncio.run(main())
