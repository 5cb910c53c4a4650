"""A trial's ``metrics.jsonl`` travels with its checkpoints, so that its curve is whole where
the driver cannot read the run folder (``s3://`` storage: the run folder is in Tune's trial
folder on the trial's node).

Tune's own copy of a trial's results can lose validations: a retried trial gets its
``result.json`` back as of Tune's last sync, which can be older than the checkpoint it
resumes from. So the trial puts its ``metrics.jsonl`` into each checkpoint it hands Tune
(:func:`attach_curve`), a retry on a node without the run folder starts from that copy
(:func:`restore_curve`), and the summary reads the latest checkpoint's copy when the run
folder is out of its reach (:func:`checkpoint_val_lines`: one small file, not the checkpoint).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from handpose.tracking import load_metrics

CURVE_FILE = "metrics.jsonl"  # the run folder's, as ``handpose.tracking.Tracker`` writes it


def attach_curve(run_dir: Path, ckpt_dir: Path) -> None:
    """Copy the run's ``metrics.jsonl`` (every line up to this checkpoint) into ``ckpt_dir``."""
    if (run_dir / CURVE_FILE).is_file():
        shutil.copy2(run_dir / CURVE_FILE, ckpt_dir / CURVE_FILE)


def restore_curve(ckpt_dir: Path, run_dir: Path) -> None:
    """A trial resuming from ``ckpt_dir`` into a run folder without ``metrics.jsonl`` (a
    retry on another node) starts from the checkpoint's copy; ``Tracker`` then keeps its lines
    up to the checkpoint's step."""
    if (ckpt_dir / CURVE_FILE).is_file() and not (run_dir / CURVE_FILE).is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ckpt_dir / CURVE_FILE, run_dir / CURVE_FILE)


def checkpoint_val_lines(checkpoint: Any) -> list[dict[str, Any]]:
    """The val lines of the ``metrics.jsonl`` in a Tune ``Checkpoint`` (on any of Tune's
    file systems: local, ``s3://``, ...), sorted by step; ``[]`` when it has none."""
    if checkpoint is None:
        return []
    import pyarrow.fs

    with tempfile.TemporaryDirectory() as tmp:
        try:
            pyarrow.fs.copy_files(
                f"{checkpoint.path}/{CURVE_FILE}",
                f"{tmp}/{CURVE_FILE}",
                source_filesystem=checkpoint.filesystem,
                destination_filesystem=pyarrow.fs.LocalFileSystem(),
            )
        except (OSError, FileNotFoundError):  # an older sweep's checkpoint: no copy
            return []
        return load_metrics(Path(tmp))[1]
