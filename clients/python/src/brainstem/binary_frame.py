"""The binary frame of bus protocol v3 (streamed task output): a 4-byte
big-endian length L, L bytes of UTF-8 JSON header, then the raw bytes
(as ``src/bus/binary-frame.ts``)."""

from __future__ import annotations

import json
import struct
from typing import Any, Dict, Tuple, Union

_LENGTH = struct.Struct(">I")


def encode_binary_frame(header: Dict[str, Any], body: bytes) -> bytes:
    text = json.dumps(header, allow_nan=False).encode("utf-8")
    return _LENGTH.pack(len(text)) + text + bytes(body)


def decode_binary_frame(frame: bytes) -> Union[Tuple[Dict[str, Any], bytes], str]:
    """The header and bytes of a binary frame; a string naming what is wrong with a malformed one."""
    if len(frame) < _LENGTH.size:
        return "a binary frame starts with a 4-byte header length"
    (length,) = _LENGTH.unpack_from(frame)
    end = _LENGTH.size + length
    if end > len(frame):
        return "the header length runs past the end of the binary frame"
    try:
        header = json.loads(frame[_LENGTH.size:end].decode("utf-8"))
    except (ValueError, RecursionError):
        return "the header of a binary frame must be UTF-8 JSON"
    if not isinstance(header, dict):
        return "the header of a binary frame must be a JSON object"
    return header, bytes(frame[end:])
