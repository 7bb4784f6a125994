"""A pull: one credit a client grants the gateway on a queue."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Optional

from .shapes import Task


@dataclass(eq=False)
class Pull:
    """One credit granted to the gateway on a queue; answered by one task frame."""

    id: str
    queue: str
    future: Optional["asyncio.Future[Task]"] = None
    sent_on: int = -1
    # Left behind by a stopped Worker: a task that still arrives goes here.
    orphan_handler: Optional[Callable[[Task], None]] = None
