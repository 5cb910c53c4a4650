"""Small facts and rules shared by the sweep, its summary, the confirmation and the report.

No Ray import here: the report and the summary readers run without a cluster.
"""

from __future__ import annotations

import math
import time
from typing import Any

STUDY_FILE = "optuna.journal"  # the Optuna study of a sweep, in its folder
# ASHA's decisions, one JSON line each as they happen (sweeps/run/scheduler.py). Not .pkl/.json:
# on resume Tune copies such files from the sweep folder to its staging folder and back at
# the end, over this newer one.
SCHEDULER_FILE = "scheduler_state.jsonl"
DIVERGED_PENALTY = 1.0e6  # mm: what Optuna is told for a trial whose loss became NaN/inf
# Tune's trial statuses as the summary states them
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


class CheckpointGate:
    """Whether a trial hands Tune the checkpoint of this validation: once ``interval_s``
    seconds (wall) have passed since the trial started or since the last one it handed, and
    always at ``final_step``. Tune snapshots its whole experiment state (and copies its
    staging folder) whenever one trial has checkpointed ``keep_checkpoints`` times since the
    last snapshot: with many short trials validating a second apart, every second or two, a
    cost that grew with the square of the trials (docs/benchmarks.md section 7). A retry
    replays at most ``interval_s`` of training; 0 hands every checkpoint."""

    def __init__(self, interval_s: float, final_step: int) -> None:
        self.interval_s, self.final_step = interval_s, final_step
        self.last_s = time.monotonic()

    def __call__(self, step: int) -> bool:
        now = time.monotonic()
        if step >= self.final_step or now - self.last_s >= self.interval_s:
            self.last_s = now
            return True
        return False
