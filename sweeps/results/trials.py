"""A trial as ``summary.json`` states it: its status, its numbers, and which trials may be
called best. No Ray: the summary, the confirmation and the report share these."""

from __future__ import annotations

import math
from typing import Any

# Tune's trial statuses as the summary states them (``sweeps/results/summary.py``)
COMPLETED, STOPPED_EARLY, ERROR, UNFINISHED = ("COMPLETED", "STOPPED_EARLY", "ERROR", "UNFINISHED")


def finite(x: Any) -> float | None:
    """``x`` as a float if it is a finite number, else None."""
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def best_pool(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials that may be called best, best first (``trials`` come sorted best first):
    those that ran the full budget, else every trial that reported and did not fail."""
    reported = [t for t in trials if t.get("mpjpe") is not None]
    return [t for t in reported if t["status"] == COMPLETED] or [
        t for t in reported if t["status"] != ERROR
    ]
