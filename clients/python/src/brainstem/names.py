"""The one name rule, as the gateway's ``src/protocol/names.ts`` states it.

Every string that becomes a Redis key or a routing key (topics, queue names,
task ids, msgIds, service names) is well-formed Unicode (no lone surrogate),
holds no control character (U+0000-U+001F, U+007F-U+009F) and fits a limit
counted in UTF-8 bytes. A name that breaks it is refused, never rewritten.
"""

from __future__ import annotations

from typing import Optional

MAX_TOPIC_BYTES = 256
MAX_QUEUE_NAME_BYTES = 128
MAX_TASK_ID_BYTES = 256
MAX_MSG_ID_BYTES = 128
MAX_SERVICE_NAME_BYTES = 200


def name_problem(name: str, max_bytes: int) -> Optional[str]:
    """Why ``name`` breaks the rule, or None when it keeps it.

    Indexes are of UTF-16 code units, as the gateway reports them.
    """
    if not name:
        return "is empty"
    # As the gateway checks it: longer in UTF-16 units than the limit in bytes is over it however spelled.
    if len(name) + sum(1 for char in name if ord(char) > 0xFFFF) > max_bytes:
        return f"is longer than {max_bytes} bytes in UTF-8"
    size = 0
    index = 0
    for char in name:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return f"holds the control character U+{code:04X} at index {index}"
        if 0xD800 <= code <= 0xDFFF:
            return f"holds a lone surrogate (U+{code:04X}) at index {index}"
        size += 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
        index += 2 if code >= 0x10000 else 1
    if size > max_bytes:
        return f"is {size} bytes in UTF-8, more than {max_bytes}"
    return None


def is_name(value: object, max_bytes: int) -> bool:
    """A string that keeps the name rule."""
    return isinstance(value, str) and name_problem(value, max_bytes) is None
