"""JSON lines out, command lines in, for the scripts the tests drive."""

import asyncio
import json
import sys


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def stdin_lines():
    """Yields each line of stdin without blocking the event loop."""
    loop = asyncio.get_running_loop()
    # Commands may carry payloads over the frame limit (the size scenarios).
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        yield line.decode().strip()
