"""The client contract: every default and behaviour this client shares with
the TypeScript one, read from ``contract.json``.

That file is a copy of the repository's ``clients/contract.json``, which the
TypeScript client imports; the unit tests and the conformance scenario
``20-defaults`` check that the copy is identical and that both clients use it.
Values in milliseconds there are seconds here.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Dict, FrozenSet, List

ROWS: List[Dict[str, Any]] = json.loads(resources.files(__package__).joinpath("contract.json").read_text("utf-8"))["rows"]
_BY_NAME = {row["name"]: row for row in ROWS}


def value(name: str) -> Any:
    """A row's value as the contract states it (milliseconds stay milliseconds)."""
    return _BY_NAME[name]["value"]


def in_python_units(row: Dict[str, Any]) -> Any:
    """A row's value as this client uses it: seconds for milliseconds."""
    return row["value"] / 1000 if row["unit"] == "ms" else row["value"]


def seconds(name: str) -> float:
    row = _BY_NAME[name]
    if row["unit"] != "ms":
        raise ValueError(f"contract row {name} is in {row['unit']}, not ms")
    return float(in_python_units(row))


STABLE_CONNECTION = seconds("stableConnectionMs")
"""A connection that lasted this long was healthy: the next reconnect starts from the first delay."""
WELCOME_WAIT = seconds("welcomeWaitMs")
"""A server that sends no welcome frame (not this gateway) counts as connected after this long."""
CLOSE_GRACE = seconds("closeGraceMs")
"""How long close() waits for the gateway's close frame."""
PULL_RETRY_INITIAL = seconds("pullRetryInitialMs")
"""A refused pull (store down, rate limited) is asked again after this long, doubling per refusal in a row..."""
PULL_RETRY_MAX = seconds("pullRetryMaxMs")
"""...up to this long."""
PULL_RETRY_CODES: FrozenSet[str] = frozenset(value("pullRetryCodes"))
HELD_RECEIPT_ACTIONS: FrozenSet[str] = frozenset(value("heldReceiptActions"))
"""Actions whose receipt the gateway holds back on purpose: once sent, they wait without the receipt timeout."""
"""The refusals of a pull worth asking again."""


def pull_retry_delay(refused_in_row: int) -> float:
    """The wait before a pull is asked again, after ``refused_in_row`` refusals before this one."""
    return float(min(PULL_RETRY_MAX, PULL_RETRY_INITIAL * 2 ** min(refused_in_row, 30)))
