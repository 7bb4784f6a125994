"""Topic, pattern and queue-name rules of the /bus protocol.

The same rules as the gateway's ``src/bus/topic.ts``, on top of the name rule
of ``names.py``: segments separated by
``.``, each one or more characters with no whitespace, ``.``, ``*`` or
``>``; in a subscription pattern ``*`` stands for exactly one segment and a
final ``>`` for one or more.
"""

from __future__ import annotations

import re

from .names import MAX_QUEUE_NAME_BYTES, MAX_TOPIC_BYTES, is_name

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


def is_valid_topic(topic: object, max_bytes: int = MAX_TOPIC_BYTES) -> bool:
    """A concrete topic, as published: no wildcards."""
    return is_name(topic, max_bytes) and _segments_are_valid(topic.split("."), False)  # type: ignore[union-attr]


def is_valid_pattern(pattern: object) -> bool:
    """A subscription pattern: a topic whose segments may be ``*``, or ``>`` as the last one."""
    return is_name(pattern, MAX_TOPIC_BYTES) and _segments_are_valid(pattern.split("."), True)  # type: ignore[union-attr]


def is_valid_queue_name(name: object) -> bool:
    """A queue name: a topic of at most MAX_QUEUE_NAME_BYTES."""
    return is_valid_topic(name, MAX_QUEUE_NAME_BYTES)


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
