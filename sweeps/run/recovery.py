"""What ``--resume`` checks, and repairs, in a sweep folder before Tune restores it.

A killed driver leaves Tune's experiment state as of its last snapshot that reached the
sweep folder. Tune writes a snapshot to its staging folder and copies it in a background
thread, so the folder's copy can be a snapshot behind (seconds; longer with many trials,
the state growing with them), or torn if the kill came while it was written. Meanwhile
Tune deletes a trial's older checkpoints as new ones arrive (``keep_checkpoints``): the
saved state can then name a checkpoint that is gone, and Tune fails that trial on restore
("does not exist on storage anymore"), every retry alike (the kill/resume of
``benchmarks/sweep_scale.py``, docs/benchmarks.md section 7, measures it). A torn copy (an
empty file, with a large state) is replaced by Tune's own staging copy when that one is
whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from handpose.errors import UserError

_CKPT = re.compile(r"checkpoint_(\d+)$")
# The Optuna user attribute of a study trial whose Tune trial the restored Tune never knew
# (asked after Tune's last state save before a driver crash; ``--resume`` runs a new trial in
# its place): ``PruneAwareOptunaSearch.restore`` tells it FAIL with this tag and the reason,
# and the summary counts it (``sweeps/results/leftovers.py``)
SUPERSEDED_ATTR = "superseded"
SUPERSEDED_REASON = (
    "started after Tune's last state save before the driver crashed; --resume ran a new "
    "trial in its place (not a failure of its configuration)"
)


def load_tune_state(sweep_dir: Path) -> dict[str, Any]:
    """Tune's newest experiment state in ``sweep_dir``. If the crash tore it (Tune would start
    the sweep over without its search space), the driver files of Ray's staging copy on
    this machine replace it when that state is whole; otherwise a one-line
    :class:`UserError`."""
    states = sorted(sweep_dir.glob("experiment_state-*.json"))
    if not states:
        raise UserError(f"--resume: no Tune experiment state in {sweep_dir}")
    for path in (states[-1], *staging_copies(sweep_dir, states[-1].name)):
        try:
            state = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if path != states[-1]:
            for f in path.parent.iterdir():  # the state, the searcher's, the generator's
                if f.is_file():
                    shutil.copy2(f, sweep_dir / f.name)
            print(
                f"note: Tune's state {path.name} was torn by the crash; restored it from "
                f"Ray's staging copy in {path.parent}"
            )
        return state
    raise UserError(
        f"--resume: Tune's state {states[-1].name} was torn by the crash "
        "(the driver died while writing it) and no whole copy is left in Ray's staging "
        "folders; this sweep cannot be resumed, start a new one (its runs and summary "
        "stay readable)"
    )


def staging_copies(sweep_dir: Path, state_name: str) -> list[Path]:
    """Tune's staging copies of ``state_name`` on this machine, newest first: it writes
    each snapshot to ``<Ray temp>/ray/session_*/artifacts/*/<sweep>/driver_artifacts``
    before copying it to the sweep folder (Ray temp: ``$RAY_TMPDIR`` or /tmp; a cluster
    started with another ``--temp-dir`` is not searched)."""
    roots = {Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray", Path("/tmp/ray")}
    pattern = f"session_*/artifacts/*/{sweep_dir.name}/driver_artifacts/{state_name}"
    found = [p for root in roots for p in root.glob(pattern)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _index(path: Path) -> int | None:
    m = _CKPT.match(path.name)
    return int(m.group(1)) if m else None


def restore_missing_checkpoints(sweep_dir: Path, state: dict[str, Any]) -> list[str]:
    """For each trial Tune will restore (not TERMINATED) whose latest checkpoint named in
    ``state`` is gone from its folder under ``sweep_dir``: move its newest checkpoint on
    disk to that name (the trial resumes from its newest step; our checkpoints carry their
    step) and delete the newer ones, which Tune does not know and will reuse the names of.
    Returns one line per trial repaired or whose saved state could not be read."""
    from ray.tune.experiment import Trial

    lines = []
    for trial_json, run_metadata in state.get("trial_data", []):
        try:
            trial = Trial.from_json_state(trial_json, stub=True)  # trainable not registered yet
            trial.restore_run_metadata(run_metadata)
            ckpt = trial.checkpoint
        except Exception as e:  # noqa: BLE001 - Tune will report it on restore
            lines.append(f"warning: could not read a trial's saved state: {e}"[:300])
            continue
        if trial.status == Trial.TERMINATED or ckpt is None:
            continue
        trial_dir = sweep_dir / trial.storage.trial_dir_name
        want = trial_dir / Path(ckpt.path).name
        ref = _index(want)
        if want.exists() or ref is None:
            continue
        found = ((_index(p), p) for p in trial_dir.glob("checkpoint_*") if p.is_dir())
        have = sorted((i, p) for i, p in found if i is not None)
        if not have:
            continue
        newest = have[-1][1]
        newest.rename(want)
        for i, p in have[:-1]:
            if i > ref:
                shutil.rmtree(p)
        lines.append(
            f"note: trial {trial.trial_id}: Tune's saved state names {want.name}, deleted "
            f"after that state was saved; it resumes from its newest checkpoint "
            f"({newest.name}, now {want.name})"
        )
    return lines
