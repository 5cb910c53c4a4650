"""The rules of the sweep's schedule-aware ASHA and the journal of its decisions, without
Ray (the summary and the report read them with no cluster; ``sweeps/run/scheduler.py``
applies them inside Tune).

- ``rungs``: the steps at which ASHA compares trials: Ray's milestones, each moved to
  the first validation at or after it.
- ``ReadyStep``: the step from which a trial's MPJPE may be compared at a rung.
- ``pick_sentinels``: the trials that run to the full budget whatever the rungs say.
- The journal, ``<sweep>/scheduler_state.jsonl``: each decision as one JSON line, appended
  and flushed at once: ``{"add": id, "index": i, "sentinel": bool}`` for a new trial,
  ``{"rung": milestone, "trial": id, "value": v, "num_stopped": n}`` for a value recorded at
  a rung (``v`` as Ray keeps it: the metric times -1 for ``mode="min"``; ``n`` Ray's count
  of stops so far), with ``"stop": true`` when that result stopped the trial. A few bytes
  per event, whatever the number of trials. A final line cut short by a driver crash is
  dropped (``read_journal``) and cut off the file before the next append. Flushed, not
  fsync'd: a killed driver loses nothing, a lost machine may lose the last lines.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handpose.schedules import dropout_target_step

# One JSON line per decision. Not .pkl/.json: on resume Tune copies such files from the
# sweep folder to its staging folder and back at the end, over this newer one.
SCHEDULER_FILE = "scheduler_state.jsonl"


@dataclass(frozen=True)
class ReadyStep:
    """The step from which a trial's MPJPE may be compared at a rung: the first validation
    at or after the step its dropout reaches its target plus one validation interval.
    The fields are the base config's values of the dropout keys; a trial's searched values
    win."""

    val_every: int
    warmup: int
    schedule: str
    ramp: int
    rate: float

    def __call__(self, config: dict[str, Any]) -> int:
        warmup = int(config.get("GENERAL.dropout_warmup_step", self.warmup))
        schedule = config.get("GENERAL.dropout_schedule", self.schedule)
        ramp = int(config.get("GENERAL.dropout_ramp_step", self.ramp))
        rate = float(config.get("MODEL.handec.dropout", self.rate))
        if rate == 0.0:
            return 0
        full = dropout_target_step(warmup, schedule, ramp)
        return -(-(full + self.val_every) // self.val_every) * self.val_every


def validated_step(step: float, val_every: int, max_t: int) -> int:
    """The first step at or after ``step`` at which a trial validates: a multiple of
    ``val_every``, or ``max_t`` (the last step always validates)."""
    return min(-(-int(step) // val_every) * val_every, max_t)


def rungs(grace_period: int, reduction_factor: float, max_t: int, val_every: int) -> list[int]:
    """The steps whose MPJPE ASHA compares, ascending: Ray's milestones (one bracket), each
    moved to the first validation at or after it (``SweepASHA`` moves them so). A trial
    reports only at validations, so Ray records it at a milestone with exactly that step's
    MPJPE; the move makes the labels true (the ``cpu`` preset's grace period 75 with
    validation every 50 compares at step 100). Milestones that move to the same step are
    one rung: Ray records a result past both at the higher one only."""
    out, t = set(), float(grace_period)
    while t <= max_t + 1e-9:
        out.add(validated_step(t, val_every, max_t))
        t *= reduction_factor
    return sorted(out)


def pick_sentinels(num_samples: int, fraction: float, minimum: int, seed: int) -> set[int]:
    """Indices (creation order) of the trials that run to the full budget: the baseline
    (index 0) and ``max(minimum, round(fraction * num_samples))`` others at random."""
    k = min(num_samples - 1, max(minimum, round(fraction * num_samples)))
    return {0, *random.Random(seed).sample(range(1, num_samples), max(0, k))}


def read_journal(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """The records of a scheduler journal, and the size in bytes of the whole lines they
    come from. A last line that does not parse or lacks its newline (a crash mid-write) is
    left out; any other bad line is an error."""
    with open(path, "rb") as f:
        data = f.read()
    records, good_bytes = [], 0
    lines = data.split(b"\n")
    for n, line in enumerate(lines[:-1], 1):  # lines[-1]: after the last newline
        try:
            records.append(json.loads(line))
        except ValueError:
            if n < len(lines) - 1 or lines[-1]:
                raise ValueError(f"{path}:{n}: not a JSON line") from None
            return records, good_bytes  # the last line, garbled by a crash
        good_bytes += len(line) + 1
    return records, good_bytes


def load_record(path: str | Path) -> dict[str, Any]:
    """What a journal says of the trials, without Ray's rungs: ``trial_index`` (id ->
    creation order), ``sentinels`` and ``stopped`` (sets of ids); empty without a journal."""
    out: dict[str, Any] = {"trial_index": {}, "sentinels": set(), "stopped": set()}
    if not os.path.isfile(path):
        return out
    for r in read_journal(path)[0]:
        if "add" in r:
            out["trial_index"][r["add"]] = r["index"]
            if r["sentinel"]:
                out["sentinels"].add(r["add"])
        elif r.get("stop"):
            out["stopped"].add(r["trial"])
    return out
