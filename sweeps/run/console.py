"""The sweep's console: one short line per trial event (``TrialEvents``, a Tune callback) and
Tune's full trial table (``sweeps.run.tuning.progress_reporter``) at most every
``TABLE_EVERY_S`` seconds and once at the end.

The lines, one per event, each starting with the trial's id::

    trial 29c5bac7 started (baseline): warmup=30 dropout=0.1 trans=0.05 theta=3 ...
    trial 29c5bac7 validated: MPJPE 56.21 mm at step 50
    trial a75e267e stopped by ASHA at rung 100: MPJPE 61.20 mm at step 100
    trial 29c5bac7 finished: MPJPE 50.19 mm at step 300
    trial 76cd8bca failed, retry 1 of 2: RuntimeError: ...
    trial 76cd8bca errored: RuntimeError: ...
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from ray import cloudpickle  # Tune's own pickler (no separate cloudpickle in the image)
from ray.tune import Callback

from handpose.errors import error_reason

TABLE_EVERY_S = 120  # the full trial table at most this often (seconds), and at the end


def short_name(key: str) -> str:
    """A searched key as the event lines show it: its last part without ``lambda_`` /
    ``dropout_`` / ``_step`` (``GENERAL.dropout_warmup_step`` -> ``warmup``,
    ``LOSS.lambda_trans`` -> ``trans``, ``MODEL.handec.dropout`` -> ``dropout``)."""
    name = key.rsplit(".", 1)[-1]
    for prefix in ("lambda_", "dropout_"):
        name = name.removeprefix(prefix)
    return name.removesuffix("_step")


def format_values(config: Mapping[str, Any], keys: Iterable[str]) -> str:
    """``name=value`` of each of ``keys`` in ``config`` (numbers to 3 significant digits)."""
    parts = []
    for key in keys:
        if key in config:
            v = config[key]
            text = f"{v:.3g}" if isinstance(v, float) else str(v)
            parts.append(f"{short_name(key)}={text}")
    return " ".join(parts)


def rung_of(step: int, milestones: Iterable[int]) -> int | None:
    """The highest rung at or below ``step``: the rung a result at ``step`` is compared at."""
    return max((m for m in milestones if m <= step), default=None)


class TrialEvents(Callback):
    """Prints one line per trial event (see the module's docstring). ``keys``: the searched
    keys; ``metric``: the reported metric (mm); ``milestones``: ASHA's rungs (steps);
    ``scheduler``: the sweep's ``SweepASHA`` (its ``stopped``, ``sentinels`` and
    ``trial_index`` tell a stop by ASHA, a sentinel and the baseline), or None."""

    def __init__(
        self, keys: Iterable[str], metric: str, milestones: Iterable[int], scheduler: Any = None
    ) -> None:
        self._keys = list(keys)
        self._metric = metric
        self._milestones = sorted(milestones)
        self._scheduler = scheduler
        self._started: set[str] = set()

    def _say(self, trial: Any, text: str) -> None:
        print(f"trial {trial.trial_id} {text}", flush=True)

    def _mpjpe_at(self, result: Mapping[str, Any]) -> str:
        value = result.get(self._metric)
        shown = f"{value:.2f} mm" if isinstance(value, float) and math.isfinite(value) else "-"
        return f"{self._metric.upper()} {shown} at step {result.get('step', '?')}"

    def _role(self, trial: Any) -> str:
        s = self._scheduler
        if s is None:
            return ""
        if s.trial_index.get(trial.trial_id) == 0:
            return " (baseline)"
        return " (sentinel)" if trial.trial_id in s.sentinels else ""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        verb = "restarted" if trial.trial_id in self._started else "started"
        self._started.add(trial.trial_id)
        values = format_values(trial.config, self._keys)
        self._say(trial, f"{verb}{self._role(trial)}: {values}")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if self._metric in result and not result.get("diverged"):
            self._say(trial, f"validated: {self._mpjpe_at(result)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if last.get("diverged"):
            self._say(trial, f"diverged at step {last.get('step', '?')}: {last.get('error')}")
        elif self._scheduler is not None and trial.trial_id in self._scheduler.stopped:
            rung = rung_of(int(last.get("step", 0)), self._milestones)
            self._say(trial, f"stopped by ASHA at rung {rung}: {self._mpjpe_at(last)}")
        else:
            self._say(trial, f"finished: {self._mpjpe_at(last)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tries, most = trial.run_metadata.num_failures, trial.max_failures
        of = f" of {most}" if most >= 0 else ""  # max_failures < 0: retried without end
        self._say(trial, f"failed, retry {tries}{of}: {self._error(trial)}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(trial, f"errored: {self._error(trial)}")

    @staticmethod
    def _error(trial: Any) -> str:
        """The trial's latest error as one line. Tune pickles it into the trial's local
        folder before the callbacks run (``Trial.handle_error``); ``get_pickled_error``
        reads the storage copy, which exists only after Tune's next sync."""
        path = trial.pickled_error_file
        if path is None or not os.path.isfile(path):
            return f"see {trial.error_file}"
        with open(path, "rb") as f:
            return error_reason(cloudpickle.load(f))
