"""Reads {cases: [[pattern, topic]], names: [...]} on stdin; prints the package's verdicts (and the name rule's reasons at 128 bytes)."""

import json
import sys

from brainstem import is_valid_pattern, is_valid_queue_name, is_valid_topic, pattern_matches
from brainstem.names import name_problem

request = json.loads(sys.stdin.readline())
print(
    json.dumps(
        {
            "matches": [is_valid_pattern(p) and pattern_matches(p, t) for p, t in request["cases"]],
            "topics": [is_valid_topic(n) for n in request["names"]],
            "patterns": [is_valid_pattern(n) for n in request["names"]],
            "queues": [is_valid_queue_name(n) for n in request["names"]],
            "problems": [name_problem(n, 128) for n in request["names"]],
        }
    )
)
