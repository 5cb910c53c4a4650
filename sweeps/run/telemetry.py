"""The sweep on the Ray dashboard: Ray application metrics of the trials and of the driver.

Each node's metrics agent exports them in Prometheus format (Ray prefixes every name with
``ray_``); Prometheus finds the nodes through Ray's service-discovery file and the sweep
dashboard (``docker/grafana/sweep_dashboard.json``) draws them (docs/deploy.md).

- Trial gauges, tagged ``sweep`` and ``trial_id``, set by the trial's hooks on rank 0 only
  (``sweeps/run/trainable.py``): at each log step (:data:`LOG_STEP_METRICS`) and at each
  validation (:data:`VALIDATION_METRICS`).
- Driver gauges, tagged ``sweep`` (:class:`SweepMetrics`, a Tune callback): trials by status,
  the best final MPJPE so far, the baseline's MPJPE, the rung decisions by rung.

Ray's metrics agent forgets a gauge two report intervals after it was last set (10 s each by
default), so a value set once at a validation would be gone before the next: a
:class:`Publisher` sets the latest values again every :data:`REFRESH_S` seconds while its
trial or driver lives. Export never fails a trial: the first error (say, a value Ray
refuses) is logged as one warning and the export stops for that process; an unreachable
metrics agent raises nothing here (Ray's worker drops what it cannot send).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback

from handpose.errors import first_line

LOG = logging.getLogger("handpose")  # a trial's console and log.txt
REFRESH_S = 1.0  # latest values set again this often (Ray exports at most once a second)
LABEL_MAX_CHARS = 120
TRIAL_TAGS = ("sweep", "trial_id")

# (metric name, key of the hook's values, description); all gauges
LOG_STEP_METRICS = (
    ("handpose_trial_step", "step", "training step of the trial (each log step)"),
    ("handpose_trial_dropout_rate", "dropout_rate", "decoder dropout rate at that step"),
    ("handpose_trial_lr", "lr", "learning rate at that step (as the console line prints it)"),
    ("handpose_trial_samples_per_s", "samples_per_s", "train samples/s since the last log step"),
    ("handpose_trial_train_loss", "total", "weighted train loss, mean since the last log step"),
)
VALIDATION_METRICS = (
    ("handpose_trial_val_step", "step", "training step of the trial's latest validation"),
    ("handpose_trial_mpjpe_mm", "mpjpe", "validation MPJPE, mm"),
    ("handpose_trial_pa_mpjpe_mm", "pa_mpjpe", "validation PA-MPJPE, mm"),
    ("handpose_trial_mpjpe_rel_mm", "mpjpe_rel", "validation root-relative MPJPE, mm"),
    ("handpose_trial_rte_mm", "rte", "validation root translation error, mm"),
)
SWEEP_METRICS = {
    "handpose_sweep_trials": ("trials by status", ("sweep", "status")),
    "handpose_sweep_best_mpjpe_mm": ("best final MPJPE so far (completed trials), mm", ("sweep",)),
    "handpose_sweep_baseline_mpjpe_mm": (
        "the baseline's (first trial's) latest MPJPE, mm",
        ("sweep",),
    ),
    "handpose_sweep_rung_decisions": ("ASHA decisions so far", ("sweep", "rung", "decision")),
}
STATUSES = ("pending", "running", "completed", "stopped_early", "errored")

Tags = tuple[tuple[str, str], ...]


def label_value(text: str) -> str:
    """``text`` as a label value Ray exports: printable ASCII (Ray's metrics refuse any other
    character: ``UnicodeEncodeError``), other characters escaped (``\\u03b2``), control
    characters as ``_``, at most :data:`LABEL_MAX_CHARS` characters."""
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else "_" for c in ascii_text)[:LABEL_MAX_CHARS]


class Publisher:
    """Ray gauges (``specs``: name -> (description, tag keys)) whose latest values are set
    at once and again every ``refresh_s`` seconds from a daemon thread, until
    :meth:`close`. The first error logs one warning on ``log`` and stops the export."""

    def __init__(
        self,
        specs: Mapping[str, tuple[str, tuple[str, ...]]],
        log: logging.Logger,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.specs, self.log, self.refresh_s = dict(specs), log, refresh_s
        self.failed = False
        self._gauges: dict[str, Any] = {}
        self._latest: dict[tuple[str, Tags], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, points: Iterable[tuple[str, Any, Mapping[str, str]]]) -> None:
        """Set each ``(name, value, tags)``: the value becomes the name's latest for those
        tags. Values that are not finite numbers are skipped."""
        if self.failed:
            return
        try:
            with self._lock:
                for name, value, tags in points:
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        value = float(value)  # numpy and torch scalars: Ray wants a float
                    if math.isfinite(value):
                        key = (name, tuple(sorted(tags.items())))
                        self._latest[key] = float(value)
                        self._set(key, float(value))
            if self._thread is None:
                self._thread = threading.Thread(target=self._refresh, daemon=True)
                self._thread.start()
        except Exception as e:  # noqa: BLE001 - metrics must never fail a trial
            self._fail(e)

    def _set(self, key: tuple[str, Tags], value: float) -> None:
        from ray.util.metrics import Gauge

        name, tags = key
        if name not in self._gauges:
            description, tag_keys = self.specs[name]
            self._gauges[name] = Gauge(name, description=description, tag_keys=tag_keys)
        self._gauges[name].set(value, tags=dict(tags))

    def _refresh(self) -> None:
        while not self._stop.wait(self.refresh_s) and not self.failed:
            try:
                with self._lock:
                    for key, value in self._latest.items():
                        self._set(key, value)
            except Exception as e:  # noqa: BLE001 - metrics must never fail a trial
                self._fail(e)

    def _fail(self, e: BaseException) -> None:
        if not self.failed:
            self.failed = True
            self.log.warning(
                f"metrics export off for this process (the sweep goes on): "
                f"{type(e).__name__}: {first_line(e)}"
            )

    def close(self) -> None:
        """Stop setting the values again; Ray's agent forgets them two report intervals on."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class TrialMetrics:
    """One trial's gauges, tagged with the sweep's name and the trial id (made safe:
    :func:`label_value`). :meth:`log_step` takes ``train``'s log hook values,
    :meth:`validation` a validation's metrics."""

    def __init__(self, sweep: str, trial_id: str, refresh_s: float = REFRESH_S) -> None:
        self.tags = {"sweep": label_value(sweep), "trial_id": label_value(trial_id)}
        specs = {name: (d, TRIAL_TAGS) for name, _, d in LOG_STEP_METRICS + VALIDATION_METRICS}
        self.publisher = Publisher(specs, LOG, refresh_s)

    def _publish(self, table: tuple[tuple[str, str, str], ...], values: Mapping) -> None:
        self.publisher.publish((n, values[k], self.tags) for n, k, _ in table if k in values)

    def log_step(self, values: Mapping[str, Any]) -> None:
        self._publish(LOG_STEP_METRICS, values)

    def validation(self, metrics: Mapping[str, Any]) -> None:
        self._publish(VALIDATION_METRICS, metrics)

    def close(self) -> None:
        self.publisher.close()


class SweepMetrics(Callback):
    """The driver's gauges of sweep ``sweep``: trials by status (stopped early: a stop
    in the scheduler's ``journal``; errored: Tune's ERROR or a diverged trial), the best
    final MPJPE so far (completed trials), the baseline's (the first trial's) latest MPJPE,
    and the rung decisions by rung (the journal's lines, read as they are appended).
    Counts are taken at most once a ``recount_s`` seconds and at the end."""

    def __init__(self, sweep: str, journal: Path | None, recount_s: float = 1.0) -> None:
        self.sweep, self.journal, self.recount_s = label_value(sweep), journal, recount_s
        self._publisher: Publisher | None = None
        self._offset = 0  # journal bytes read
        self._stopped: set[str] = set()
        self._decisions: dict[tuple[str, str], int] = {}
        self._last_count_s = -math.inf

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its RunConfig: no thread there
        return {**self.__dict__, "_publisher": None}

    def _publish(self, points: list[tuple[str, Any, dict[str, str]]]) -> None:
        if self._publisher is None:
            self._publisher = Publisher(SWEEP_METRICS, logging.getLogger(__name__))
        self._publisher.publish(points)

    def _read_journal(self) -> None:
        """New whole lines of the journal: stops, and decisions by rung."""
        if self.journal is None or not self.journal.is_file():
            return
        with open(self.journal, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        lines = data.split(b"\n")[:-1]  # the last piece has no newline yet
        self._offset += sum(len(line) + 1 for line in lines)
        points = []
        for r in map(json.loads, lines):
            if "rung" not in r:
                continue
            decision = "stop" if r.get("stop") else "continue"
            if r.get("stop"):
                self._stopped.add(r["trial"])
            key = (f"{r['rung']:g}", decision)
            self._decisions[key] = self._decisions.get(key, 0) + 1
            points.append(
                (
                    "handpose_sweep_rung_decisions",
                    self._decisions[key],
                    {"sweep": self.sweep, "rung": key[0], "decision": decision},
                )
            )
        self._publish(points)

    def _status(self, trial: Any) -> str:
        if trial.status == "RUNNING":
            return "running"
        if trial.status == "ERROR" or (trial.last_result or {}).get("diverged"):
            return "errored"
        if trial.status == "TERMINATED":
            return "stopped_early" if trial.trial_id in self._stopped else "completed"
        return "pending"

    def _count(self, trials: list[Any]) -> None:
        self._last_count_s = time.monotonic()
        self._read_journal()
        counts = dict.fromkeys(STATUSES, 0)
        finals = []
        for t in trials:
            status = self._status(t)
            counts[status] += 1
            if status == "completed" and "mpjpe" in (t.last_result or {}):
                finals.append(t.last_result["mpjpe"])
        tag = {"sweep": self.sweep}
        points = [("handpose_sweep_trials", n, {**tag, "status": s}) for s, n in counts.items()]
        finite = [m for m in finals if math.isfinite(m)]
        if finite:
            points.append(("handpose_sweep_best_mpjpe_mm", min(finite), tag))
        self._publish(points)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any
    ) -> None:
        self._read_journal()  # the scheduler decided (and journaled) before callbacks run
        if trials and trial is trials[0] and "mpjpe" in result:
            self._publish(
                [("handpose_sweep_baseline_mpjpe_mm", result["mpjpe"], {"sweep": self.sweep})]
            )

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if time.monotonic() - self._last_count_s >= self.recount_s:
            self._count(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._count(trials)
        if self._publisher is not None:
            self._publisher.close()
