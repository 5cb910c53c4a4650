"""A sweep whose every trial fails says so in one line, claims no winner, and exits 1."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sweeps.dropout_warmup import main
from tests.helpers import data_overrides

pytestmark = pytest.mark.slow  # Ray starts, each trial is tried 3 times: ~50 s on 2 cores


def _failing_trial(
    config: dict[str, Any], base: dict[str, Any], runs_dir: str | None, **_: Any
) -> None:
    """A trial (``handpose_trial``'s signature) that fails before its first validation."""
    raise RuntimeError("trial cannot start\nthis second line stays out of the summary")


def test_a_sweep_whose_every_trial_fails_exits_1_naming_the_error(
    data_dir, tmp_path, capsys, local_ray
):
    storage = tmp_path / "res"
    code = main(
        [
            *("--smoke", "--num-samples", "2", "--num-cpus", "2"),
            *("--storage", str(storage), "--name", "failed"),
            *data_overrides(data_dir),
        ],
        trainable_fn=_failing_trial,
    )
    out = capsys.readouterr().out
    assert code == 1, out[-3000:]
    tail = out[out.rindex("no trial produced a result") :]
    line = tail.splitlines()[0]
    assert "2 of 2 trials failed" in line and "RuntimeError: trial cannot start" in line, line
    traceback = re.search(r" \(traceback: (.+error\.txt)\)$", line)  # Tune's error file
    assert traceback and "trial cannot start" in Path(traceback[1]).read_text(), line
    assert "second line" not in tail
    # the console's event lines (sweeps/run/console.py): each try, then the error, per trial
    assert out.count(" failed, retry 2 of 2: RuntimeError: trial cannot start\n") == 2, out
    assert out.count(" errored: RuntimeError: trial cannot start\n") == 2, out
    for claim in ("best_config.yaml", "different streams", "ASHA says", "best:"):
        assert claim not in tail, (claim, tail)
    sweep = storage / "failed"
    assert not (sweep / "best_config.yaml").exists()
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["best"] is None
    assert [t["status"] for t in summary["trials"]] == ["ERROR", "ERROR"]
