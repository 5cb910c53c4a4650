"""ASHA that respects dropout schedules, keeps sentinels, and survives a driver restart.

- **Schedule-aware rungs.** While its decoder dropout is off or ramping, a trial's MPJPE is
  not comparable with that of a trial whose dropout is on: dropout raises both the train
  and the validation error while it trains. A trial therefore enters ASHA's rungs only at
  its *ready step*: the first validation after its dropout reached its target (the
  warmup, plus the ramp for linear/cosine schedules), i.e. with the target held through
  one validation interval. Its first comparison is at the highest rung it has passed, with
  its MPJPE at the ready step; results before it are neither compared nor recorded.
- **Sentinels.** A fraction of the trials (chosen at random with the spec's seed, by the
  order in which trials are created) and the baseline (the first trial) run to the full
  budget whatever the rungs say: their curves tell how well early MPJPE predicts final
  MPJPE (``sweeps/fidelity.py``).
- **State.** Ray does not keep a scheduler's state across ``Tuner.restore``
  (ray-project/ray#30838). This one saves its own (rungs, stops, sentinels) to
  ``<sweep>/scheduler_state.pickle`` whenever it changes and restores it on first use.
"""

from __future__ import annotations

import os
import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


@dataclass(frozen=True)
class ReadyStep:
    """The step from which a trial's MPJPE may be compared at a rung: the first validation
    at or after the step its dropout reaches its target plus one validation interval.
    ``base``: the base config's values of the dropout keys; a trial's searched values win."""

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
        full = warmup + (ramp if schedule != "step" else 0)  # handpose.schedules' rule
        return -(-(full + self.val_every) // self.val_every) * self.val_every


def rungs(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """ASHA's milestones (one bracket), ascending, as Ray computes them."""
    out, t = [], float(grace_period)
    while t <= max_t + 1e-9:
        out.append(int(t))
        t *= reduction_factor
    return out


def pick_sentinels(num_samples: int, fraction: float, minimum: int, seed: int) -> set[int]:
    """Indices (creation order) of the trials that run to the full budget: the baseline
    (index 0) and ``max(minimum, round(fraction * num_samples))`` others at random."""
    k = min(num_samples - 1, max(minimum, round(fraction * num_samples)))
    return {0, *random.Random(seed).sample(range(1, num_samples), max(0, k))}


class SweepASHA(ASHAScheduler):
    """ASHA (one bracket, ``time_attr`` = training step) with the rules above."""

    def __init__(
        self, *, ready_step: ReadyStep | None, sentinels: set[int], state_path: Path, **asha: Any
    ) -> None:
        super().__init__(**asha)
        self._ready_step = ready_step
        self._sentinel_index = set(sentinels)
        self._state_path = str(state_path)
        self._restored = False
        self.trial_index: dict[str, int] = {}  # trial id -> creation order
        self.sentinels: set[str] = set()
        self.stopped: set[str] = set()  # trials this scheduler stopped

    def _state(self) -> dict[str, Any]:
        keep = ("_brackets", "_num_stopped", "trial_index", "sentinels", "stopped")
        return {k: self.__dict__[k] for k in keep}

    def _save(self) -> None:
        tmp = f"{self._state_path}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(self._state(), f)
        os.replace(tmp, self._state_path)  # atomic: a crash leaves the old or the new

    def _restore_once(self) -> None:
        if self._restored:
            return
        self._restored = True
        if os.path.isfile(self._state_path):
            with open(self._state_path, "rb") as f:
                self.__dict__.update(pickle.load(f))

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._restore_once()
        super().on_trial_add(tune_controller, trial)
        if trial.trial_id not in self.trial_index:
            index = len(self.trial_index)
            self.trial_index[trial.trial_id] = index
            if index in self._sentinel_index:
                self.sentinels.add(trial.trial_id)
            self._save()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        self._restore_once()
        step = result.get(self._time_attr, 0)
        if self._ready_step is not None and step < self._ready_step(trial.config):
            return TrialScheduler.CONTINUE  # dropout not at its target yet: not compared
        if trial.trial_id not in self._trial_info:  # restored trial Tune did not re-add
            super().on_trial_add(tune_controller, trial)
        before = self._recorded()
        action = super().on_trial_result(tune_controller, trial, result)
        if trial.trial_id in self.sentinels and step < self._max_t:
            action = TrialScheduler.CONTINUE
        if action == TrialScheduler.STOP and step < self._max_t:
            self.stopped.add(trial.trial_id)
        if self._recorded() != before or trial.trial_id in self.stopped:
            self._save()  # only at a rung: a few saves per trial, not one per result
        return action

    def _recorded(self) -> int:
        return sum(len(recorded) for b in self._brackets for _, recorded in b._rungs)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._restore_once()
        if trial.trial_id in self._trial_info:
            super().on_trial_complete(tune_controller, trial, result)
            self._save()

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._trial_info.pop(trial.trial_id, None)
