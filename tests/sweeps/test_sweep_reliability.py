"""Sweep reliability: a killed trial worker is retried from its checkpoint and its curve
continues; a NaN trial ends as errored with the reason while the sweep goes on; a killed
driver is resumed with --resume without rerunning finished trials."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from sweeps.run.spec import SPEC_PATH
from tests.helpers import REPO, sweep_cmd, wait_for

pytestmark = pytest.mark.slow


def _spec(tmp_path: Path, space: dict, points: list[dict], num_samples: int) -> Path:
    raw = yaml.safe_load(SPEC_PATH.read_text())
    preset = raw["presets"]["smoke"]
    # every validation's checkpoint goes to Tune: the kill below follows validation 20;
    # two trials at a time, one a core (what is tested needs no fixed order of rungs)
    preset.update(
        space=space,
        points_to_evaluate=points,
        num_samples=num_samples,
        checkpoint_interval_s=0,
        max_concurrent=2,
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _val_steps(metrics_file: Path) -> list[int]:
    if not metrics_file.is_file():
        return []
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line]
    return [r["step"] for r in rows if r["split"] == "val"]


def test_killed_trial_resumes_from_checkpoint_and_nan_trial_errors(data_dir, tmp_path):
    # lambda_trans = 1e38 overflows the float32 loss to inf: a trial that diverges
    spec = _spec(
        tmp_path,
        {"LOSS.lambda_trans": {"type": "choice", "values": [0.05, 1e38]}},
        [{"LOSS.lambda_trans": 0.05}, {"LOSS.lambda_trans": 1e38}],
        num_samples=2,
    )
    storage = tmp_path / "res"
    proc = subprocess.Popen(
        sweep_cmd(spec, storage, "faults", data_dir, "GENERAL.total_step=80", "GENERAL.log_step=5"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sweep = storage / "faults"

        def healthy_run_past_first_checkpoint():
            # Tune lets a trial train on after a report only once the driver has registered
            # the report's checkpoint, so a step logged after validation 20 means a kill now
            # resumes from a checkpoint (a kill right after metrics.jsonl's line may not).
            for log in sweep.glob("runs/*/log.txt"):
                cfg = yaml.safe_load((log.parent / "config.yaml").read_text())
                steps = [int(s) for s in re.findall(r"^(\d+)/80 lr=", log.read_text(), re.M)]
                if cfg["LOSS"]["lambda_trans"] == 0.05 and any(s > 20 for s in steps):
                    return log.parent
            return None

        run = wait_for(
            healthy_run_past_first_checkpoint, 150, "the healthy trial past step 20", proc
        )
        pid = int(re.search(r"pid (\d+)", (run / "log.txt").read_text()).group(1))
        os.kill(pid, signal.SIGKILL)  # the trial's worker process dies mid-run
        out, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-3000:]
    summary = json.loads((sweep / "summary.json").read_text())
    by_trans = {t["overrides"]["LOSS.lambda_trans"]: t for t in summary["trials"]}
    healthy, nan = by_trans[0.05], by_trans[1e38]
    assert healthy["status"] == "COMPLETED" and healthy["last_step"] == 80
    # the curve continues from the checkpoint: every validation step once, in order
    assert [s for s, _ in healthy["curve"]] == [20, 40, 60, 80]
    log = (run / "log.txt").read_text()
    assert re.search(r"resumed from .*checkpoint.* at step (20|40|60)", log), log[-2000:]
    assert nan["status"] == "ERROR" and "non-finite loss" in nan["error"]
    assert summary["best"]["trial_id"] == healthy["trial_id"]
    nan_log = (Path(nan["run_dir"]) / "log.txt").read_text()
    assert "resumed from" not in nan_log, "a diverged trial is not retried"
    # one copy of each checkpoint: Tune's (the latest only), none left in the run folders
    assert not list(sweep.glob("runs/*/checkpoints/checkpoint-*"))
    assert len(list(Path(healthy["path"]).glob("checkpoint_*"))) == 1


def test_killed_driver_resumes_without_rerunning_finished_trials(data_dir, tmp_path):
    spec = _spec(
        tmp_path,
        {
            "MODEL.handec.dropout": {"type": "choice", "values": [0.0, 0.2]},
            "LOSS.lambda_trans": {"type": "choice", "values": [0.02, 0.1]},
        },
        [],
        num_samples=3,
    )
    storage = tmp_path / "res"
    # Tune's default state-save period: a trial Optuna saw finish may still be running in
    # the saved state, and the restored searcher must not crash on it
    cmd = sweep_cmd(spec, storage, "crash", data_dir, "GENERAL.total_step=60")
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    sweep = storage / "crash"

    def one_finished():
        done = [p for p in sweep.glob("runs/*/metrics.jsonl") if 60 in _val_steps(p)]
        started = list(sweep.glob("runs/*/metrics.jsonl"))
        return done and len(started) >= 2

    try:
        wait_for(one_finished, 200, "one finished trial", proc)
        # the driver tells Optuna the finished trial within moments, while Tune's state
        # save may lag by up to its period: kill inside that window
        time.sleep(2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray die at once
        proc.wait()
    before = {p.parent.name: _val_steps(p) for p in sweep.glob("runs/*/metrics.jsonl")}
    finished_before = [k for k, v in before.items() if 60 in v]
    res = subprocess.run(
        sweep_cmd(spec, storage, "crash", data_dir, "--resume"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((sweep / "summary.json").read_text())
    assert len(summary["trials"]) == 3
    assert all(t["status"] in ("COMPLETED", "STOPPED_EARLY") for t in summary["trials"])
    after = {p.parent.name: _val_steps(p) for p in sweep.glob("runs/*/metrics.jsonl")}
    for trial in finished_before:  # finished trials were not run again
        assert after[trial] == before[trial]
    for trial, steps in after.items():  # nothing validated twice: unfinished ones continued
        assert len(steps) == len(set(steps)), (trial, steps)


def test_ctrl_c_reports_an_interrupted_sweep_and_resume_finishes_it(data_dir, tmp_path):
    spec = _spec(
        tmp_path,
        {"MODEL.handec.dropout": {"type": "choice", "values": [0.0, 0.2]}},
        [],
        num_samples=3,
    )
    storage = tmp_path / "res"
    cmd = sweep_cmd(
        spec, storage, "intr", data_dir, "GENERAL.total_step=120", "--confirm", "1", "--seeds", "2"
    )
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sweep = storage / "intr"
    try:
        wait_for(
            lambda: any(40 in _val_steps(p) for p in sweep.glob("runs/*/metrics.jsonl")),
            200,
            "a trial past its second validation",
            proc,
        )
        proc.send_signal(signal.SIGINT)  # Ctrl-C once
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, out[-3000:]
    assert "INTERRUPTED" in out and "--resume --name intr" in out, out[-3000:]
    assert "confirmation:" not in out  # --confirm never starts on an unfinished sweep
    summary = json.loads((sweep / "summary.json").read_text())
    assert "UNFINISHED" in {t["status"] for t in summary["trials"]}
    res = subprocess.run(
        sweep_cmd(spec, storage, "intr", data_dir, "--resume"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((sweep / "summary.json").read_text())
    got = [(t["status"], t["last_step"], t["error"]) for t in summary["trials"]]
    assert len(got) == 3 and all(s in ("COMPLETED", "STOPPED_EARLY") for s, _, _ in got), got
    for p in sweep.glob("runs/*/metrics.jsonl"):
        steps = _val_steps(p)
        assert len(steps) == len(set(steps)), (p, steps)
