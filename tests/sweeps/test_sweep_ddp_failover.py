"""Fault tolerance of a data-parallel trial: one of the 2 Ray Train workers
(gloo, CPU) of a sweep trial is SIGKILLed mid-run; Ray Train restarts the worker group
from the trial's latest reported checkpoint and the trial finishes with every validation
step once, in order, and validates with the single-process fingerprint (one local Ray
of 2 CPUs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
import yaml

from handpose.config import load_config
from handpose.data import build_val_stream
from sweeps.run.spec import SPEC_PATH
from sweeps.run.telemetry import LOG_STEP_METRICS, VALIDATION_METRICS
from tests.deploy.prometheus_helpers import (
    check_trial_values,
    local_ray_sd_file,
    trial_metric_names,
    watch_metrics,
)
from tests.helpers import REPO, SMALL_MODEL, data_overrides, sweep_cmd, wait_for

pytestmark = pytest.mark.slow

TOTAL_STEP, VAL_STEP = 30, 10
VAL_STEPS = list(range(VAL_STEP, TOTAL_STEP + 1, VAL_STEP))
TRIAL_METRICS = {f"ray_{name}" for name, _, _ in LOG_STEP_METRICS + VALIDATION_METRICS}


def _train_workers(driver: psutil.Process) -> list[psutil.Process]:
    """The live Ray Train worker processes under the sweep's driver (its local Ray's raylet
    starts them; Ray titles each one ``ray::RayTrainWorker...``)."""
    found = []
    for p in driver.children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.NoSuchProcess:
            continue
    return found


def test_killed_worker_of_a_two_worker_trial_resumes_from_checkpoint(data_dir, tmp_path):
    raw = yaml.safe_load(SPEC_PATH.read_text())
    raw["presets"]["smoke"].update(
        num_samples=1,
        max_concurrent=1,
        resources={"cpu": 0.9, "gpu": 0, "workers": 2},
        space={"MODEL.handec.dropout": {"type": "choice", "values": [0.1]}},
        checkpoint_interval_s=0,  # every validation's checkpoint goes to Ray Train
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    storage, name = tmp_path / "res", "ddpfail"
    extra = [
        f"GENERAL.total_step={TOTAL_STEP}",
        f"GENERAL.checkpoint_step={VAL_STEP}",
        "GENERAL.log_step=5",
        "GENERAL.dropout_warmup_step=2",
        "TRAIN.sample_per_device=8",
        "DATA.val.max_samples=32",
        "DATA.train_eval_samples=16",
        "DATA.val_batch_size=16",
        "AIM.enabled=false",
    ]
    cmd = sweep_cmd(spec, storage, name, data_dir, *extra)
    out_file = tmp_path / "sweep.out"  # a file, not a pipe: nothing blocks the driver
    with open(out_file, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "RAY_metrics_report_interval_ms": "1000"},  # metrics each 1 s
        )
    sweep = storage / name
    try:

        def rank0_past_a_registered_checkpoint() -> Path | None:
            # Ray Train writes its checkpoint manager's snapshot once it has registered a
            # reported checkpoint (the one a restarted group gets from get_checkpoint());
            # a train line past that step means the kill lands mid-run, after it
            snapshots = list(sweep.glob("train/*/checkpoint_manager_snapshot.json"))
            logs = list(sweep.glob("runs/*/log.txt"))
            if not snapshots or not logs:
                return None
            steps = re.findall(rf"^(\d+)/{TOTAL_STEP} lr=", logs[0].read_text(), re.M)
            return logs[0] if any(int(s) > VAL_STEP for s in steps) else None

        log = wait_for(rank0_past_a_registered_checkpoint, 150, "a step past the checkpoint")
        # the trial's metrics as its node exports them, before the kill: from rank 0 only
        sd_file = wait_for(lambda: local_ray_sd_file(proc.pid), 30, "the local Ray's session")
        with watch_metrics(sd_file, tmp_path, prometheus=False) as watch:
            wait_for(
                lambda: any(trial_metric_names(s) == TRIAL_METRICS for s in watch.scrapes),
                30,
                "every trial metric scraped",
            )
        rank0 = int(re.search(r"\| pid (\d+) \|", log.read_text()).group(1))
        workers = wait_for(
            lambda: (w := _train_workers(psutil.Process(proc.pid))) and len(w) == 2 and w,
            30,
            "the 2 Ray Train workers",
        )
        assert rank0 in {w.pid for w in workers}, (rank0, workers)
        # rank 1, not rank 0 (the single-process kill of test_sweep_reliability): the
        # process that neither writes the run folder nor carries the checkpoint; only Ray
        # Train's health check or a gloo error on rank 0 can notice that it died
        rank1 = next(w for w in workers if w.pid != rank0)
        os.kill(rank1.pid, signal.SIGKILL)
        proc.wait(timeout=240)
    finally:
        if proc.poll() is None:  # the driver and its local Ray, at once
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = out_file.read_text(errors="replace")
    assert proc.returncode == 0, out[-4000:]
    summary = json.loads((sweep / "summary.json").read_text())
    (trial,) = summary["trials"]
    assert trial["status"] == "COMPLETED" and trial["last_step"] == TOTAL_STEP, trial
    # the curve continues from the checkpoint: every validation step once, in order
    assert [s for s, _ in trial["curve"]] == VAL_STEPS
    text = log.read_text()
    resumed = re.findall(r"resumed from .*checkpoint.* at step (\d+)", text)
    assert len(resumed) == 1 and int(resumed[0]) >= VAL_STEP, text[-3000:]
    assert text.count("| 2 process(es) |") == 2, text[-3000:]  # one new group, of 2 again
    # exact resume (both ranks' data positions and RNG): a step logged both before the
    # kill and after the resume (if any) has the same losses
    lines: dict[str, set[str]] = {}
    for step, losses in re.findall(rf"^(\d+)/{TOTAL_STEP} (lr=.*) [\d.]+ samples/s$", text, re.M):
        lines.setdefault(step, set()).add(losses)
    assert all(len(v) == 1 for v in lines.values()), lines
    # the run folder's metrics: what came after the checkpoint was dropped on resume
    rows = [json.loads(line) for line in (log.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "val"] == VAL_STEPS, rows
    # one validation stream: the 2-rank trial's fingerprint is the single-process one
    single = build_val_stream(
        load_config("stage1-tiny", [*data_overrides(data_dir), *extra, *SMALL_MODEL])
    )
    for _ in single:
        pass
    assert {r["val_fingerprint"] for r in rows if r["split"] == "val"} == {single.fingerprint}
    assert summary["val_fingerprints"] == [single.fingerprint]
    # one copy of the checkpoint: Ray Train's latest (a folder uploaded by a group that died
    # before Ray Train registered it is replaced by the retry's); none in the run folder
    assert not list(sweep.glob("runs/*/checkpoints/checkpoint-*"))
    kept = [p.name for p in sweep.glob("train/*/checkpoint*") if p.is_dir()]
    assert kept == [f"checkpoint-{TOTAL_STEP:07d}"], kept
    # each metric once (not once per rank), with the values of the run folder at its step
    check_trial_values(watch.scrapes, {trial["trial_id"]: log.parent})
