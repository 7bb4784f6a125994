"""Property tests of the client's frames, both ways, against a real WebSocket
server (``scripted_gateway.py``).

The TypeScript fuzzer (``test/fuzz/``) sends hostile frames to the gateway;
these send them to the Python client, and look at what Python itself does
differently from JavaScript: its json module reads ``NaN`` and writes it,
turns lone surrogates into ``str`` values, refuses ints past its digit limit
and recurses when it parses, and websockets hands over binary frames as
``bytes``.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from brainstem import BrokerClient, BrokerError
from scripted_gateway import ScriptedGateway

# Each example starts a server and connects a client: fewer examples than
# Hypothesis's default, and no deadline (the machine is shared).
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- values ---------------------------------------------------------------

# Strings with the characters that differ between the languages: lone
# surrogates (Python keeps them in a str, JavaScript in its UTF-16), NUL,
# separators and the name rule's forbidden characters.
odd_text = st.text(
    alphabet=st.sampled_from(["a", ".", "*", ">", " ", "\x00", "\x1f", "\x7f", "\x85", "\ud800", "\udfff", "\ufffd", "é", "😀", "\u202e"]),
    max_size=8,
)
hostile_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**53 + 1, 2**64, -(2**63), 10**300]),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
    st.text(max_size=20),
)
hostile_value = st.recursive(
    hostile_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)),
    max_leaves=12,
)


# The client's first call ids, and near misses of them.
NEAR_IDS = ["py1", "py2", "py1 ", "PY1", "py01", "1"]


def shaped(fields: List[str]) -> st.SearchStrategy[Dict[str, Any]]:
    """Objects with some of the protocol's field names, each with a hostile value (or a plausible one)."""
    return st.dictionaries(st.sampled_from(fields), st.one_of(hostile_value, st.sampled_from(["t.x", "q", "1-0", "99999999999999-0", *NEAR_IDS])), max_size=len(fields))


EVENT_FIELDS = ["type", "payload", "offset", "correlationId", "replyTo", "traceparent", "source", "timestamp"]
TASK_FIELDS = ["id", "queue", "payload", "attempts", "traceparent", "createdAt"]
REVOKE_FIELDS = ["taskId", "queue", "reason"]

protocol_frame = st.one_of(
    st.fixed_dictionaries({"event": st.one_of(shaped(EVENT_FIELDS), hostile_value)}),
    st.fixed_dictionaries({"task": st.one_of(shaped(TASK_FIELDS), hostile_value)}, optional={"id": hostile_value}),
    st.fixed_dictionaries({"revoke": st.one_of(shaped(REVOKE_FIELDS), hostile_value)}),
    st.fixed_dictionaries({"error": hostile_value}, optional={"id": hostile_value, "code": hostile_value}),
    st.fixed_dictionaries({"welcome": hostile_value}),
    st.fixed_dictionaries({"id": hostile_value}, optional={"ok": hostile_value, "delivered": hostile_value}),
    shaped(["event", "task", "revoke", "error", "welcome", "id", "code"]),
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# What a text frame may carry: JSON of anything (lone surrogates escaped),
# what only Python's parser reads (NaN), or refuses (an int past its digit
# limit, nesting past its recursion limit), or no JSON at all.
text_frame = st.one_of(
    protocol_frame.map(json.dumps),
    hostile_value.map(json.dumps),
    st.sampled_from(
        [
            '{"event": {"type": "t.nan", "payload": NaN}}',
            '{"id": "py1", "ok": Infinity}',
            '{"id": ' + "7" * 5000 + "}",
            '{"event": ' + nested(5000) + "}",
            nested(100_000),
            "",
            "{",
            "null",
        ]
    ),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
)
# A binary frame carrying a well-formed event: the protocol has text frames only.
binary_frame = st.builds(
    lambda n: json.dumps({"event": {"type": "t.binary", "payload": {"binary": n}}}).encode(), st.integers(0, 9)
) | st.binary(max_size=30)
incoming_frame = st.one_of(text_frame, binary_frame)

# -- helpers ----------------------------------------------------------------


async def connected_client(gateway: ScriptedGateway, **options: Any) -> BrokerClient:
    client = BrokerClient(gateway.url, "prop", pid=False, reconnect=False, receipt_timeout=5, **options)
    await client.connect()
    return client


async def answered(gateway: ScriptedGateway, call: "asyncio.Future[Any]", action: str, **receipt: Any) -> Any:
    """Answers the client's next ``action`` frame with a receipt and returns what the call returned."""
    frame = await gateway.next_frame(action)
    await gateway.send(json.dumps({"id": frame["id"], "ok": True, **receipt}))
    return await asyncio.wait_for(call, 5)


def run(scenario: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario, 30))


# -- incoming ---------------------------------------------------------------


# After the junk: once its handler has it, the client has read everything before it.
END = {"type": "t.end", "payload": {"end": "e3c1b0"}}


@EXAMPLES
@given(junk=st.lists(incoming_frame, max_size=6))
# What the client once failed on: the first stopped its event handlers for good, the second its reader.
@example(junk=['{"event": {"type": null}}'])
@example(junk=['{"event": ' + nested(5000) + "}"])
def test_no_frame_stops_the_client(junk: List[Any]) -> None:
    """Whatever arrives, the connection stays, later events reach their handler and later calls get their receipts."""

    async def scenario() -> None:
        async with ScriptedGateway() as gateway:
            client = await connected_client(gateway)
            lost: List[Any] = []
            client.on("disconnected", lost.append)
            seen: List[Any] = []
            done = asyncio.Event()

            def handler(event: Any) -> None:
                seen.append(event)
                if event.get("payload") == END["payload"]:
                    done.set()

            await answered(gateway, asyncio.ensure_future(client.subscribe("t.>", handler)), "subscribe")
            for frame in junk:
                await gateway.send(frame)
            await gateway.send(json.dumps({"event": END}))
            await asyncio.wait_for(done.wait(), 5)
            receipt = await answered(gateway, asyncio.ensure_future(client.publish("t.after", {"n": 1})), "publish", delivered=3)

            assert receipt == 3
            assert lost == [], "no frame closes the connection"
            assert client.connected
            for event in seen:
                assert isinstance(event, dict) and isinstance(event["type"], str) and event["type"].startswith("t.")
                assert event["type"] != "t.binary", "binary frames are not read"
            assert client.welcome is None or isinstance(client.welcome, dict)
            await client.close()

    run(scenario())


@EXAMPLES
@given(
    junk=st.lists(
        st.fixed_dictionaries({"id": hostile_value | st.sampled_from([*NEAR_IDS, 1, 1.0, ["py1"], {"id": "py1"}])}, optional={"ok": hostile_value, "error": hostile_value}),
        max_size=6,
    )
)
def test_only_its_own_id_settles_a_call(junk: List[Dict[str, Any]]) -> None:
    """Receipts and errors for other ids (numbers, lists, near misses) leave a call waiting for its own."""

    async def scenario() -> None:
        async with ScriptedGateway() as gateway:
            client = await connected_client(gateway)
            read = asyncio.Event()
            await answered(gateway, asyncio.ensure_future(client.subscribe("t.end", lambda event: read.set())), "subscribe")
            call = asyncio.ensure_future(client.publish("t.x", {}))
            frame = await gateway.next_frame("publish")
            for other in junk:
                if str(other["id"]) == frame["id"]:
                    continue
                await gateway.send(json.dumps(other))
            await gateway.send(json.dumps({"event": END}))
            await asyncio.wait_for(read.wait(), 5)
            assert not call.done(), "settled by another id's answer"
            await gateway.send(json.dumps({"id": frame["id"], "ok": True, "delivered": 1}))
            assert await asyncio.wait_for(call, 5) == 1
            await client.close()

    run(scenario())


# -- outgoing ---------------------------------------------------------------

# What JSON has text for, and comes back equal after a round trip.
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), odd_text, st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)),
    max_leaves=12,
)
# What it has none for; each one somewhere inside an otherwise good payload.
not_json = st.sampled_from([math.nan, math.inf, -math.inf, 10**5000, {1, 2}, b"bytes", object()])


def as_utf16_reads_it(value: Any) -> Any:
    """``value`` with each surrogate pair written as two code points read as
    the one character it encodes: JSON escapes both halves, and every
    reader (JavaScript's strings are UTF-16) joins them; lone ones stay."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if isinstance(value, list):
        return [as_utf16_reads_it(item) for item in value]
    if isinstance(value, dict):
        return {as_utf16_reads_it(key): as_utf16_reads_it(item) for key, item in value.items()}
    return value


def inside(payload: Any, bad: Any) -> Any:
    return {"good": payload, "bad": [bad]}


@EXAMPLES
@given(payload=json_value)
def test_a_payload_arrives_as_strict_json_and_equal(payload: Any) -> None:
    async def scenario() -> None:
        async with ScriptedGateway() as gateway:
            client = await connected_client(gateway)
            call = asyncio.ensure_future(client.publish("t.x", payload))
            frame = await gateway.next_frame("publish")
            assert frame["message"]["payload"] == as_utf16_reads_it(payload)
            await gateway.send(json.dumps({"id": frame["id"], "ok": True, "delivered": 0}))
            await asyncio.wait_for(call, 5)
            await client.close()

    run(scenario())


@EXAMPLES
@given(payload=json_value, bad=not_json)
def test_a_payload_json_cannot_carry_fails_its_caller_and_sends_nothing(payload: Any, bad: Any) -> None:
    async def scenario() -> None:
        async with ScriptedGateway() as gateway:
            client = await connected_client(gateway)
            with pytest.raises((TypeError, ValueError)):
                await client.publish("t.bad", inside(payload, bad))
            # The next frame the gateway gets is the next call's: nothing went out in between.
            call = asyncio.ensure_future(client.publish("t.next", None))
            frame = await gateway.next_frame()
            assert frame["action"] == "publish" and frame["message"]["type"] == "t.next"
            await gateway.send(json.dumps({"id": frame["id"], "ok": True}))
            await asyncio.wait_for(call, 5)
            await client.close()

    run(scenario())


LIMIT = 400


@EXAMPLES
@given(text=st.text(alphabet=st.sampled_from(["a", "é", "😀", "\ud800", "\x00", '"', "\\"]), max_size=LIMIT))
def test_no_frame_over_the_limit_goes_out(text: str) -> None:
    """The limit holds in bytes on the wire, whatever the characters (the gateway counts bytes)."""

    async def scenario() -> None:
        async with ScriptedGateway() as gateway:
            client = await connected_client(gateway, max_frame_bytes=LIMIT)
            try:
                # No receipt asked: it returns once the frame is out.
                await client.publish("t.x", text, confirm=False)
            except BrokerError as refused:
                assert refused.code == "PAYLOAD_TOO_LARGE"
            else:
                raw = await asyncio.wait_for(gateway.received.get(), 5)
                assert isinstance(raw, str) and len(raw.encode("utf-8")) <= LIMIT
                assert json.loads(raw)["message"]["payload"] == as_utf16_reads_it(text)
            await client.close()

    run(scenario())
