"""Every default of the client, in one table, read from the client contract
(``contract.py``: the rows that name a Python option), in seconds where the
contract says milliseconds; the TypeScript client reads the same contract.
"""

from __future__ import annotations

from typing import Any, Dict

from .contract import ROWS, in_python_units

DEFAULT_URL = "ws://127.0.0.1:8080/bus"
"""Used when neither ``url`` nor the ``BRAINSTEM_URL`` environment variable is given."""

_DEFAULTS: Dict[str, Any] = {row["python"]: in_python_units(row) for row in ROWS if row["python"] is not None}


def default_options() -> Dict[str, Any]:
    """The defaults of every option, as one table (a fresh copy each call, as nats.js's ``defaultOptions()``)."""
    return dict(_DEFAULTS)
