"""Unit tests of the parts that need no gateway (the rest run from test/python*.test.ts)."""

import asyncio
import os
import unittest

from brainstem import BrokerClient, HeartbeatClient, Service, heartbeat_url_for, pattern_matches


class UrlTests(unittest.TestCase):
    def test_connect_url_names_the_client_and_carries_the_token(self):
        client = BrokerClient("ws://127.0.0.1:9000/bus", "stt", token="s3cret")
        self.assertEqual(client._connect_url(), f"ws://127.0.0.1:9000/bus?name=stt&token=s3cret&pid={os.getpid()}")

    def test_connect_url_keeps_a_name_and_pid_given_in_the_url(self):
        client = BrokerClient("ws://h/bus?name=other&pid=7", "stt")
        self.assertEqual(client._connect_url(), "ws://h/bus?name=other&pid=7")

    def test_pid_option(self):
        self.assertEqual(BrokerClient("ws://h/bus", "stt", pid=False)._connect_url(), "ws://h/bus?name=stt")
        self.assertEqual(BrokerClient("ws://h/bus", "stt", pid=42)._connect_url(), "ws://h/bus?name=stt&pid=42")

    def test_heartbeat_url_sits_beside_the_bus(self):
        self.assertEqual(heartbeat_url_for("ws://127.0.0.1:8080/bus?name=x"), "http://127.0.0.1:8080/heartbeat")
        self.assertEqual(heartbeat_url_for("wss://gw.local/bus"), "https://gw.local/heartbeat")

    def test_service_heartbeats_to_its_gateway_under_its_id(self):
        service = Service("tts", url="ws://127.0.0.1:8123/bus")
        self.assertIsNotNone(service.heartbeat)
        self.assertEqual(service.heartbeat.url, "http://127.0.0.1:8123/heartbeat")
        self.assertEqual(service.heartbeat.name, "tts")

    def test_heartbeat_needs_a_name(self):
        with self.assertRaises(ValueError):
            HeartbeatClient("http://127.0.0.1:1/heartbeat", "")


class ValidationTests(unittest.TestCase):
    def test_bad_names_fail_before_anything_is_sent(self):
        client = BrokerClient("ws://127.0.0.1:1/bus", "x")

        async def attempts():
            for call in (
                client.subscribe("a..b", print),
                client.publish("a.*", {}),
                client.enqueue("bad queue", {}),
                client.pull("q.>"),
                client.work("", print),
            ):
                with self.assertRaises(ValueError):
                    await call
            with self.assertRaises(ValueError):
                await client.work("q", print, concurrency=0)

        asyncio.run(attempts())

    def test_first_connect_failure_is_a_connection_error(self):
        client = BrokerClient("ws://127.0.0.1:1/bus", "x", open_timeout=2)
        with self.assertRaises(ConnectionError):
            asyncio.run(client.connect())

    def test_wildcards(self):
        self.assertTrue(pattern_matches("agent.>", "agent.a.b"))
        self.assertFalse(pattern_matches("agent.>", "agent"))
        self.assertTrue(pattern_matches("*.ping", "heartbeat.ping"))
        self.assertFalse(pattern_matches("*.ping", "a.heartbeat.ping"))


class ResumeAndTraceTests(unittest.TestCase):
    def test_offsets_compare_as_numbers_not_strings(self):
        from brainstem.pubsub import _newer

        self.assertTrue(_newer("10-0", "9-5"))
        self.assertTrue(_newer("9-10", "9-9"))
        self.assertFalse(_newer("9-5", "10-0"))
        self.assertFalse(_newer("9-5", "9-5"))

    def test_a_child_span_keeps_trace_id_and_flags(self):
        from brainstem.trace import child_of, handling, outgoing_traceparent

        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        child = child_of(parent)
        self.assertEqual(child[:36], parent[:36])
        self.assertEqual(child[52:], "-00")
        self.assertNotEqual(child[36:52], parent[36:52])
        with handling(parent):
            self.assertEqual(outgoing_traceparent()[:36], parent[:36])
        self.assertNotEqual(outgoing_traceparent()[:36], parent[:36])
        self.assertEqual(outgoing_traceparent("explicit"), "explicit")


if __name__ == "__main__":
    unittest.main()


class ContractTests(unittest.TestCase):
    """The client contract (clients/contract.json), which the TypeScript client reads too."""

    def test_the_package_ships_the_contract_file_unchanged(self):
        from importlib import resources

        repository_copy = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "contract.json")
        with open(repository_copy, encoding="utf-8") as file:
            self.assertEqual(resources.files("brainstem").joinpath("contract.json").read_text("utf-8"), file.read())

    def test_every_option_default_comes_from_the_contract_in_seconds(self):
        from brainstem import contract, default_options

        options = {row["python"]: row for row in contract.ROWS if row["python"] is not None}
        self.assertEqual(set(default_options()), set(options))
        for name, row in options.items():
            expected = row["value"] / 1000 if row["unit"] == "ms" else row["value"]
            self.assertEqual(default_options()[name], expected, name)

    def test_a_refused_pull_waits_doubling_up_to_the_cap(self):
        from brainstem.contract import PULL_RETRY_INITIAL, PULL_RETRY_MAX, pull_retry_delay

        delays = [pull_retry_delay(n) for n in range(12)]
        self.assertEqual(delays[0], PULL_RETRY_INITIAL)
        self.assertEqual(delays[1], PULL_RETRY_INITIAL * 2)
        self.assertEqual(delays[-1], PULL_RETRY_MAX)
        self.assertEqual(delays, sorted(delays))
        self.assertEqual(pull_retry_delay(10_000), PULL_RETRY_MAX)

    def test_reconnect_delays_double_with_equal_jitter_and_announce_each_attempt(self):
        client = BrokerClient("ws://127.0.0.1:1/bus", "x", backoff_initial=0.1, backoff_max=0.8)
        announced = []
        client.on("reconnecting", announced.append)
        transport = client._transport
        for attempt in range(6):
            ceiling = min(0.8, 0.1 * 2**attempt)
            delay = transport._next_delay()
            self.assertGreaterEqual(delay, ceiling / 2)
            self.assertLessEqual(delay, ceiling)
        self.assertEqual([a["attempt"] for a in announced], [1, 2, 3, 4, 5, 6])


class BrokerErrorTests(unittest.TestCase):
    """``BrokerError(code, message)``, as in TypeScript; the old order still works where it can be told apart."""

    def test_code_first(self):
        from brainstem import BrokerError

        err = BrokerError("UNKNOWN_TASK", "task 7 is not held")
        self.assertEqual((err.code, str(err)), ("UNKNOWN_TASK", "task 7 is not held"))

    def test_the_old_order_and_the_message_alone(self):
        from brainstem import BrokerError, InvalidArgument

        err = BrokerError("task 7 is not held", "UNKNOWN_TASK")
        self.assertEqual((err.code, str(err)), ("UNKNOWN_TASK", "task 7 is not held"))
        err = BrokerError("something failed")
        self.assertEqual((err.code, str(err)), ("ERROR", "something failed"))
        err = InvalidArgument("bad topic", "INVALID_TOPIC")
        self.assertEqual((err.code, str(err)), ("INVALID_TOPIC", "bad topic"))

    def test_keywords(self):
        from brainstem import BrokerError

        err = BrokerError(message="task 7 is not held", code="UNKNOWN_TASK")
        self.assertEqual((err.code, str(err)), ("UNKNOWN_TASK", "task 7 is not held"))
        self.assertEqual(BrokerError(message="x").code, "ERROR")

    def test_the_clients_own_errors_keep_their_codes(self):
        from brainstem import ClientClosed, ConnectFailed, ConnectionLost, LeaseLost, RequestTimeout

        self.assertEqual(
            [e.code for e in (ConnectionLost("m"), RequestTimeout("m"), ClientClosed(), LeaseLost("m"), ConnectFailed("m"))],
            ["DISCONNECTED", "TIMEOUT", "CLOSED", "LEASE_LOST", "CONNECT_FAILED"],
        )
        self.assertEqual(str(ConnectionLost("the connection closed")), "the connection closed")


class BinaryFrameTest(unittest.TestCase):
    """The v3 binary layout (src/bus/binary-frame.ts): 4-byte big-endian header length, JSON header, raw bytes."""

    def test_round_trip_in_the_spec_layout(self):
        from brainstem.binary_frame import decode_binary_frame, encode_binary_frame

        frame = encode_binary_frame({"action": "chunk", "taskId": "7", "id": "py1"}, b"\x01\x02\xff")
        header = b'{"action": "chunk", "taskId": "7", "id": "py1"}'
        self.assertEqual(frame, len(header).to_bytes(4, "big") + header + b"\x01\x02\xff")
        self.assertEqual(decode_binary_frame(frame), ({"action": "chunk", "taskId": "7", "id": "py1"}, b"\x01\x02\xff"))

    def test_malformed_frames_are_named(self):
        from brainstem.binary_frame import decode_binary_frame

        self.assertIsInstance(decode_binary_frame(b"\x00\x00"), str)
        self.assertIsInstance(decode_binary_frame(b"\x00\x00\x00\x09{}"), str)
        self.assertIsInstance(decode_binary_frame(b"\x00\x00\x00\x02[]"), str)
