"""Data-parallel training on CPU (gloo): 2 ranks x 16 samples give the first step of 1 rank
x 32; ``torchrun`` trains, validates with the single-process fingerprint, writes one run
folder that ``handpose.evaluate`` reads in one process, and resumes exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from handpose.config import load_config
from handpose.data import build_val_stream
from handpose.distributed import mean_over_ranks
from handpose.model import build_model, param_groups
from handpose.train import train_step
from tests.helpers import REPO, tiny_overrides

BATCH = 32


def _first_step(rank: int, world: int, init: str, overrides: list[str], out: str) -> None:
    """One ``train_step`` on this rank's share of a fixed 32-sample batch; rank 0 saves the
    rank-averaged losses, the (all-reduced, clipped) gradients and the updated weights."""
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    cfg = load_config("stage1-tiny", overrides)
    batch = next(iter(build_val_stream(cfg)))
    share = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    batch = {k: v[share] for k, v in batch.items()}
    torch.manual_seed(0)
    model = build_model(cfg)
    model.set_dropout_rate(0.0)
    model.train()
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.TRAIN.lr, cfg.TRAIN.backbone_lr),
        weight_decay=cfg.TRAIN.weight_decay,
    )
    forward = DistributedDataParallel(model) if world > 1 else model
    losses = train_step(cfg, forward, optimizer, batch, torch.device("cpu"))
    result = {
        "losses": mean_over_ranks(losses),
        "n": len(batch["key"]),
        "grads": {n: p.grad.clone() for n, p in model.named_parameters()},
        "weights": {n: p.detach().clone() for n, p in model.named_parameters()},
    }
    if rank == 0:
        torch.save(result, out)
    if world > 1:
        dist.destroy_process_group()


def test_two_ranks_of_16_step_like_one_of_32(data_dir, tmp_path):
    overrides = tiny_overrides(data_dir, tmp_path) + [
        f"DATA.val.max_samples={BATCH}",
        f"DATA.val_batch_size={BATCH}",
    ]
    _first_step(0, 1, "", overrides, str(tmp_path / "one.pt"))
    mp.spawn(
        _first_step,
        args=(2, f"file://{tmp_path}/rendezvous", overrides, str(tmp_path / "two.pt")),
        nprocs=2,
    )
    one, two = (torch.load(tmp_path / f, weights_only=False) for f in ("one.pt", "two.pt"))
    assert (one["n"], two["n"]) == (BATCH, BATCH // 2)
    for key, value in one["losses"].items():
        assert two["losses"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for name, grad in one["grads"].items():
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # AdamW's first step moves a weight by lr * g / (|g| + eps): where |g| is near eps
    # (1e-8) float noise in the all-reduced g moves it visibly; allow a tenth of one step
    for name, weight in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], weight, rtol=1e-5, atol=1e-4, msg=name)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "handpose.train",
        "--config-name",
        "stage1-tiny",
        *args,
    ]
    return subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _val_rows(run: Path) -> list[dict]:
    rows = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [r for r in rows if r["split"] == "val"]


def test_torchrun_trains_validates_and_resumes_like_one_process(data_dir, tmp_path):
    base = tiny_overrides(data_dir, tmp_path) + ["AIM.enabled=false"]
    proc = _torchrun(*base, "GENERAL.run_name=ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # one run folder
    run = tmp_path / "ddp"
    val = _val_rows(run)
    assert [r["step"] for r in val] == [4, 8]
    single = build_val_stream(load_config("stage1-tiny", base))
    for _ in single:
        pass
    assert {r["val_fingerprint"] for r in val} == {single.fingerprint}
    log = (run / "log.txt").read_text()
    assert log.count("\n4/8 lr=") + log.startswith("4/8 lr=") == 1  # rank 0 writes alone
    assert "2 process(es)" in log

    ev = subprocess.run(
        [sys.executable, "-m", "handpose.evaluate", "--checkpoint", str(run)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout.strip().splitlines()[-1])
    assert result["val_fingerprint"] == single.fingerprint
    assert result["mpjpe"] == pytest.approx(val[-1]["mpjpe"], abs=1e-3)

    proc = _torchrun(
        *base,
        "GENERAL.run_name=resumed",
        f"GENERAL.resume_path={run}/checkpoints/checkpoint-0000004",
    )
    resumed_log = tmp_path / "resumed" / "log.txt"  # did it fail in training or at exit?
    tail = resumed_log.read_text()[-1500:] if resumed_log.is_file() else "no log.txt"
    assert proc.returncode == 0, proc.stderr[-3000:] + "\nrank 0's log:\n" + tail
    (resumed,) = _val_rows(tmp_path / "resumed")
    assert resumed == val[-1]  # exact resume at the same world size
