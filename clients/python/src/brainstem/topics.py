"""Topic, pattern and queue-name rules of the /bus protocol.

The same rules as the gateway's ``src/bus/topic.ts``: segments separated by
``.``, each one or more characters with no whitespace, ``.``, ``*`` or
``>``; in a subscription pattern ``*`` stands for exactly one segment and a
final ``>`` for one or more.
"""

from __future__ import annotations

import re

MAX_TOPIC_LENGTH = 256
MAX_QUEUE_NAME_LENGTH = 128

# JavaScript's \s, spelled out: Python's \s differs (\x1c-\x1f in, \ufeff out).
_FORBIDDEN_IN_SEGMENT = re.compile(
    "[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff.*>]"
)


def _segments_are_valid(segments: list[str], allow_wildcards: bool) -> bool:
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if allow_wildcards and segment == "*":
            continue
        if allow_wildcards and segment == ">" and index == last:
            continue
        if not segment or _FORBIDDEN_IN_SEGMENT.search(segment):
            return False
    return True


def is_valid_topic(topic: object, max_length: int = MAX_TOPIC_LENGTH) -> bool:
    """A concrete topic, as published: no wildcards."""
    return (
        isinstance(topic, str)
        and 0 < len(topic) <= max_length
        and _segments_are_valid(topic.split("."), False)
    )


def is_valid_pattern(pattern: object) -> bool:
    """A subscription pattern: a topic whose segments may be ``*``, or ``>`` as the last one."""
    return (
        isinstance(pattern, str)
        and 0 < len(pattern) <= MAX_TOPIC_LENGTH
        and _segments_are_valid(pattern.split("."), True)
    )


def is_valid_queue_name(name: object) -> bool:
    """A queue name: a topic of at most 128 characters."""
    return is_valid_topic(name, MAX_QUEUE_NAME_LENGTH)


def pattern_matches(pattern: str, topic: str) -> bool:
    """Does ``pattern`` match the concrete ``topic``?"""
    if pattern == topic:
        return True
    p = pattern.split(".")
    t = topic.split(".")
    for index, segment in enumerate(p):
        if segment == ">":
            return index == len(p) - 1 and len(t) > index
        if index >= len(t):
            return False
        if segment != "*" and segment != t[index]:
            return False
    return len(p) == len(t)
