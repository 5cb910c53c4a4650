"""Training end to end on the tiny config: files, log format, what Aim holds, exact resume,
evaluation."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
import yaml

from handpose.config import load_config
from handpose.evaluate import evaluate_checkpoint
from handpose.losses import LOSS_NAMES
from handpose.train import NonFiniteLossError, dropout_at, train
from tests.helpers import REPO, tiny_overrides


def _rows(run_dir, split):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def _aim_series(repo: str) -> dict[tuple[str, str], list[int]]:
    """The one Aim run of ``repo``: (metric name, ``subset`` context) -> its steps."""
    from aim import Repo, Run
    from aim.sdk.index_manager import RepoIndexManager

    (run_hash,) = Repo.from_path(repo).list_all_runs()
    RepoIndexManager.get_index_manager(Repo.from_path(repo)).index(run_hash)  # as `aim up`
    run = Run(run_hash, repo=repo, read_only=True)
    return {(m.name, m.context["subset"]): m.data.items_list()[0] for m in run.metrics()}


def test_run_leaves_the_contract_files(data_dir, tmp_path):
    seen = []
    cfg = load_config(
        "stage1-tiny",
        tiny_overrides(data_dir, tmp_path)  # metrics.jsonl's train lines every 4 steps
        + ["GENERAL.run_name=r", "GENERAL.dropout_warmup_step=4", "GENERAL.aim_log_step=3"],
    )
    metrics = train(cfg, hook=lambda m, ckpt: seen.append((m["step"], ckpt.name)))
    run = tmp_path / "r"
    assert seen == [(4, "checkpoint-0000004"), (8, "checkpoint-0000008")]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["GENERAL"]["total_step"] == 8 and saved["LOSS"]["lambda_trans"] == 0.05
    val = _rows(run, "val")
    assert [r["step"] for r in val] == [4, 8]
    for r in val:
        assert {
            "mpjpe",
            "mpjpe_rel",
            "pa_mpjpe",
            "rte",
            "val_fingerprint",
            "train_mpjpe",
            "gap_mpjpe",
            "dropout_rate",
        } <= set(r)
        assert r["pa_mpjpe"] <= r["mpjpe_rel"] + 1e-6
    assert len({r["val_fingerprint"] for r in val}) == 1
    assert metrics["mpjpe"] == val[-1]["mpjpe"]
    train_rows = _rows(run, "train")
    assert [r["step"] for r in train_rows] == [4, 8] and "dropout_rate" in train_rows[0]
    log = (run / "log.txt").read_text()
    assert re.search(
        r"^4/8 lr=\d\.\d{4}e[-+]\d\d dropout=0\.000 total=\d+\.\d{3} "
        r"loss_theta=\d+\.\d{3} loss_shape=",
        log,
        re.M,
    ), log
    assert re.search(r"^8/8 lr=\S+ dropout=0\.100 ", log, re.M)
    ckpt = sorted((run / "checkpoints").iterdir())
    assert [c.name for c in ckpt] == ["checkpoint-0000004", "checkpoint-0000008"]
    assert {p.name for p in ckpt[-1].iterdir()} == {"model.pt", "state.pt", "config.yaml"}
    # Aim holds what docs/concepts.md says and nothing else: train losses, lr and
    # dropout_rate every GENERAL.aim_log_step (3) steps only, the measured values at every
    # validation; no step, num_samples, or dropout_rate under val
    losses = {"total", *(f"loss_{n}" for n in LOSS_NAMES)}
    measured = {"mpjpe", "mpjpe_rel", "pa_mpjpe", "rte", "train_mpjpe", "gap_mpjpe"}
    want = {(name, "train"): [3, 6] for name in {*losses, "lr", "dropout_rate"}}
    want.update({(name, "val"): [4, 8] for name in {*measured, *(f"val_{n}" for n in losses)}})
    assert _aim_series(str(tmp_path / "aim")) == want


@pytest.mark.parametrize("ema_decay", [0.0, 0.5])
def test_resume_is_exact(data_dir, tmp_path, ema_decay):
    base = tiny_overrides(data_dir, tmp_path, steps=12) + [
        "GENERAL.checkpoint_step=4",
        "GENERAL.dropout_warmup_step=6",
        "AIM.enabled=false",
        f"TRAIN.ema_decay={ema_decay}",
    ]
    torch.set_num_threads(1)
    full = train(load_config("stage1-tiny", base + ["GENERAL.run_name=full"]))
    interrupted = load_config(
        "stage1-tiny", base + ["GENERAL.run_name=cut", "GENERAL.total_step=12"]
    )

    class Stop(Exception):
        pass

    def crash_after_first(metrics, ckpt):
        if metrics["step"] == 4:
            raise Stop

    with pytest.raises(Stop):
        train(interrupted, hook=crash_after_first)
    resumed = load_config(
        "stage1-tiny",
        base
        + [
            "GENERAL.run_name=cut",
            f"GENERAL.resume_path={tmp_path}/cut/checkpoints/checkpoint-0000004",
        ],
    )
    end = train(resumed)
    for key in ("mpjpe", "mpjpe_rel", "pa_mpjpe", "rte", "train_total", "val_fingerprint"):
        assert end[key] == full[key], key
    assert _rows(tmp_path / "cut", "val") == _rows(tmp_path / "full", "val")
    assert end["dropout_rate"] == dropout_at(resumed, 11) == 0.1  # recomputed from the step
    last = tmp_path / "cut" / "checkpoints" / "checkpoint-0000012"
    state = torch.load(last / "state.pt", weights_only=True)
    assert ("train_model" in state) == (ema_decay > 0)
    if ema_decay:  # model.pt holds the validated average, which is not the trained weights
        saved = torch.load(last / "model.pt", weights_only=True)
        assert not all(torch.equal(saved[k], v) for k, v in state["train_model"].items())
        assert evaluate_checkpoint(last)["mpjpe"] == pytest.approx(end["mpjpe"], abs=1e-4)


def test_evaluate_is_deterministic_across_processes(data_dir, tmp_path):
    cfg = load_config(
        "stage1-tiny",
        tiny_overrides(data_dir, tmp_path, steps=4) + ["GENERAL.run_name=e", "AIM.enabled=false"],
    )
    metrics = train(cfg)
    outs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "handpose.evaluate", "--checkpoint", str(tmp_path / "e")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1]
    for key in ("mpjpe", "mpjpe_rel", "pa_mpjpe", "rte", "num_samples", "val_fingerprint"):
        assert key in outs[0]
    assert outs[0]["val_fingerprint"] == metrics["val_fingerprint"]
    assert abs(outs[0]["mpjpe"] - metrics["mpjpe"]) < 1e-3


def test_non_finite_loss_stops_the_run(data_dir, tmp_path):
    cfg = load_config(
        "stage1-tiny",
        tiny_overrides(data_dir, tmp_path) + ["LOSS.lambda_trans=.inf", "AIM.enabled=false"],
    )
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 2"):
        train(cfg)


def test_unreadable_checkpoint_exits_2(tmp_path):
    (tmp_path / "checkpoint-0000001").mkdir()
    (tmp_path / "checkpoint-0000001" / "model.pt").write_bytes(b"garbage")
    (tmp_path / "checkpoint-0000001" / "config.yaml").write_text("GENERAL: {}\n")
    for cmd in (
        ["handpose.evaluate", "--checkpoint", str(tmp_path / "checkpoint-0000001")],
        ["handpose.evaluate", "--checkpoint", str(tmp_path / "nothing")],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", *cmd], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_resume_into_another_output_folder_continues_in_a_new_aim_run(data_dir, tmp_path):
    first = load_config(
        "stage1-tiny", tiny_overrides(data_dir, tmp_path / "A") + ["GENERAL.run_name=r"]
    )
    train(first)
    ckpt = tmp_path / "A" / "r" / "checkpoints" / "checkpoint-0000004"
    # another output folder and so another Aim repo (tiny_overrides: <output_dir>/aim)
    moved = load_config(
        "stage1-tiny",
        tiny_overrides(data_dir, tmp_path / "B")
        + ["GENERAL.run_name=r", f"GENERAL.resume_path={ckpt}"],
    )
    end = train(moved)
    assert end["step"] == 8
    assert "continuing in a new Aim run" in (tmp_path / "B" / "r" / "log.txt").read_text()
    from aim import Repo, Run

    repo = str(tmp_path / "B" / "aim")
    (run_hash,) = Repo.from_path(repo).list_all_runs()  # the new run, in the new repo
    assert Run(run_hash, repo=repo, read_only=True).name == "r"
