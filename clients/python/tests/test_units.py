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
