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
  MPJPE (``sweeps/results/fidelity.py``).
- **State.** Ray does not keep a scheduler's state across ``Tuner.restore``
  (ray-project/ray#30838). This one appends each decision to a journal (``state_path``,
  ``scheduler_state.jsonl``; its format and its reader: ``sweeps/run/rungs.py``) and
  replays it on first use.
- **Ray's internals.** ASHA keeps its rungs in private attributes; every access to them is
  in one class, ``_AshaPrivate``, which ``tests/sweeps/test_sweep_scheduler.py`` checks against the
  installed Ray.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweeps.run.rungs import ReadyStep, read_journal, validated_step


class _AshaPrivate:
    """The ``ASHAScheduler`` internals ``SweepASHA`` needs, in one place: Ray offers no public
    way to read a bracket's rungs, to put recorded values back into them after a restart, or
    to read and restore its count of stops. ``tests/sweeps/test_sweep_scheduler.py`` checks every
    one against the installed Ray, so an upgrade that renames or removes one fails loudly.

    Read: ``AsyncHyperBandScheduler._brackets``, ``._trial_info`` (trial id -> bracket),
    ``._num_stopped``, ``._time_attr``, ``._max_t``; ``_Bracket._rungs`` (a list of
    ``(milestone, {trial id: recorded value})``). Written: ``_Bracket._rungs``'s milestones."""

    @staticmethod
    def rungs(s: ASHAScheduler) -> list[list[tuple[float, dict[str, float]]]]:
        """Each bracket's rungs as ``(milestone, recorded)``: Ray's own dicts (writable)."""
        return [b._rungs for b in s._brackets]

    @staticmethod
    def move_milestones(s: ASHAScheduler, to_step: Callable[[float], int]) -> None:
        """Replace each bracket's milestones ``m`` by ``to_step(m)``; of milestones moved to
        one step the highest stays (Ray records a result past both there only)."""
        for b in s._brackets:
            moved: dict[int, dict[str, float]] = {}
            for milestone, recorded in b._rungs:  # descending
                moved.setdefault(to_step(milestone), recorded)
            b._rungs = list(moved.items())

    @staticmethod
    def knows(s: ASHAScheduler, trial_id: str) -> bool:
        """Whether ASHA has put the trial in a bracket."""
        return trial_id in s._trial_info

    @staticmethod
    def forget(s: ASHAScheduler, trial_id: str) -> None:
        s._trial_info.pop(trial_id, None)

    @staticmethod
    def num_stopped(s: ASHAScheduler) -> int:
        return s._num_stopped

    @staticmethod
    def set_num_stopped(s: ASHAScheduler, n: int) -> None:
        s._num_stopped = n

    @staticmethod
    def time_attr(s: ASHAScheduler) -> str:
        return s._time_attr

    @staticmethod
    def max_t(s: ASHAScheduler) -> int:
        return s._max_t


class SweepASHA(ASHAScheduler):
    """ASHA (one bracket, ``time_attr`` = training step) with the rules above; its
    milestones are moved to the first validation at or after each (``sweeps/run/rungs.py``
    ``rungs``: what the summary and the report label them), ``val_every`` steps apart."""

    def __init__(
        self,
        *,
        ready_step: ReadyStep | None,
        sentinels: set[int],
        state_path: Path,
        val_every: int,
        **asha: Any,
    ) -> None:
        super().__init__(**asha)
        self._to_step = partial(validated_step, val_every=val_every, max_t=_AshaPrivate.max_t(self))
        _AshaPrivate.move_milestones(self, self._to_step)
        self._ready_step = ready_step
        self._sentinel_index = set(sentinels)
        self._state_path = str(state_path)
        self._restored = False
        self.trial_index: dict[str, int] = {}  # trial id -> creation order
        self.sentinels: set[str] = set()
        self.stopped: set[str] = set()  # trials this scheduler stopped

    def _save(self, record: dict[str, Any]) -> None:
        """Append ``record`` to the journal as one line; flushed when the file closes."""
        with open(self._state_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")

    def _restore_once(self) -> None:
        if self._restored:
            return
        self._restored = True
        if not os.path.isfile(self._state_path):
            return
        records, good_bytes = read_journal(self._state_path)
        if good_bytes < os.path.getsize(self._state_path):
            os.truncate(self._state_path, good_bytes)  # a torn last line: appends go after
        rungs_by_milestone = [dict(b) for b in _AshaPrivate.rungs(self)]  # Ray's dicts
        for r in records:
            if "add" in r:
                self.trial_index[r["add"]] = r["index"]
                if r["sentinel"]:
                    self.sentinels.add(r["add"])
            else:
                rung = self._to_step(r["rung"])
                rungs_by_milestone[r.get("bracket", 0)][rung][r["trial"]] = r["value"]
                _AshaPrivate.set_num_stopped(self, r["num_stopped"])
                if r.get("stop"):
                    self.stopped.add(r["trial"])

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._restore_once()
        super().on_trial_add(tune_controller, trial)
        if trial.trial_id not in self.trial_index:
            index = len(self.trial_index)
            self.trial_index[trial.trial_id] = index
            sentinel = index in self._sentinel_index
            if sentinel:
                self.sentinels.add(trial.trial_id)
            self._save({"add": trial.trial_id, "index": index, "sentinel": sentinel})

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        self._restore_once()
        step = result.get(_AshaPrivate.time_attr(self), 0)
        if self._ready_step is not None and step < self._ready_step(trial.config):
            return TrialScheduler.CONTINUE  # dropout not at its target yet: not compared
        if not _AshaPrivate.knows(self, trial.trial_id):  # restored, Tune did not re-add it
            super().on_trial_add(tune_controller, trial)
        before = self._rungs_of(trial.trial_id)
        action = super().on_trial_result(tune_controller, trial, result)
        max_t = _AshaPrivate.max_t(self)
        if trial.trial_id in self.sentinels and step < max_t:
            action = TrialScheduler.CONTINUE
        stop = action == TrialScheduler.STOP and step < max_t
        if stop:
            self.stopped.add(trial.trial_id)
        self._save_new_rung(trial.trial_id, before, stop)
        return action

    def _rungs_of(self, trial_id: str) -> set[tuple[int, float]]:
        """(bracket, milestone) of each rung holding ``trial_id``: O(rungs), not O(trials)."""
        return {
            (i, milestone)
            for i, bracket in enumerate(_AshaPrivate.rungs(self))
            for milestone, recorded in bracket
            if trial_id in recorded
        }

    def _save_new_rung(self, trial_id: str, before: set[tuple[int, float]], stop: bool) -> None:
        """Journal the rung value Ray just recorded for ``trial_id``, if it recorded one (one
        at most per result). A stop before ``max_t`` always comes with one: Ray stops there
        only when it records a value below a rung's cutoff."""
        for i, milestone in self._rungs_of(trial_id) - before:
            value = float(dict(_AshaPrivate.rungs(self)[i])[milestone][trial_id])
            record = {"rung": milestone, "trial": trial_id, "value": value}
            record["num_stopped"] = _AshaPrivate.num_stopped(self)
            if i:
                record["bracket"] = i  # only with ``brackets`` > 1
            if stop:
                record["stop"] = True
            self._save(record)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._restore_once()
        if _AshaPrivate.knows(self, trial.trial_id):
            before = self._rungs_of(trial.trial_id)
            super().on_trial_complete(tune_controller, trial, result)
            self._save_new_rung(trial.trial_id, before, stop=False)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        _AshaPrivate.forget(self, trial.trial_id)
