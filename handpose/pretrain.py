"""Pretrain the tiny preset's backbone on a synthetic *source* domain; write it as a DINOv2
checkpoint.

    python -m handpose.pretrain --out DIR [--steps N] [--seed S] [--train N] [--val M]
                                [--threads T] [KEY=VALUE ...]

Why supervised hand-pose pretraining of the whole PoseNet, then shipping it: the
tiny ViT from scratch learns where the hand is but not the fingers in a few thousand steps
(docs/data.md). Features that show finger articulation need many images and steps; paying
for them once, on a large set rendered in another domain (:data:`SOURCE`: the target's
look, other hand sizes, poses, depths and nuisance), and shipping the result, gives
every sweep trial what DINOv2 gives the GPU recipe: ready features, fine-tuned at
``TRAIN.backbone_lr``. The objective is the same as the trials' (no new code path to
maintain). The backbone is exported in DINOv2's format and the decoder beside it: the tiny
preset loads both (a fresh decoder does not learn to read the fingers within a trial).

Steps: (1) generate ``--train`` + ``--val`` source images into ``DIR/source`` (skipped when
already there), (2) train ``configs/stage1-tiny.yaml`` from scratch on them with
``handpose.train.train`` into ``DIR/run`` (progress on the console, a checkpoint every
``--checkpoint-step`` steps; running the same command again resumes from the last one),
(3) write the backbone in half precision as a plain state dict with DINOv2's key names
(``DIR/dinov2_vitt14_handpose.pth``, what ``MODEL.backbone.checkpoint`` loads), the decoder
trained with it (``DIR/handec_vitt14_handpose.pth``, what ``MODEL.handec.checkpoint`` loads:
a fresh decoder does not learn to read the fingers from these features within a trial's
budget, docs/data.md) and ``DIR/MANIFEST.json`` (command, data version, seed, sha256 of both,
source-domain val metrics).
Same arguments on the same machine: the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from handpose.checkpoint import list_checkpoints, load_checkpoint
from handpose.config import load_config
from handpose.data.difficulty import Difficulty
from handpose.data.synthetic import GENERATOR_VERSION, generate, manifest_for
from handpose.errors import UserError, run_cli

WEIGHTS_NAME = "dinov2_vitt14_handpose.pth"
DECODER_NAME = "handec_vitt14_handpose.pth"  # the decoder trained with it (MODEL.handec.checkpoint)
IMAGE_SIZE = 128  # the source images' side, px (the loader resizes to MODEL.img_size)
# the source set's generator seed is seed + this: sample i of the source set must not
# share its random draws (pose, camera) with sample i of the default set (seed 0)
SOURCE_SEED_OFFSET = 1_000_003

# The source domain: the target's look (colours, light, background: the Difficulty
# defaults), other statistics: more varied hand sizes, orientations and depths, more
# per-joint curl noise, less clutter, occlusion, blur and noise. (With another look, the
# finger reading learned here does not transfer: docs/data.md, "One look for the source
# and the target".)
SOURCE = Difficulty(
    curl_noise=0.25,
    betas_std=1.5,
    tilt_deg=50.0,
    roll_deg=90.0,
    depth_mm=(200.0, 900.0),
    clutter_strokes=(0, 3),
    clutter_finger_colour_p=0.1,
    occluder_p=0.05,
    blur_p=0.1,
    noise_sigma=(1.0, 4.0),
)

# the training recipe: stage1-tiny from scratch (not from the weights it makes), no decoder
# dropout, one lr, the trained weights themselves (no average: the recipe that made
# weights/MANIFEST.json)
RECIPE = (
    "MODEL.backbone.checkpoint=null",
    "MODEL.handec.checkpoint=null",
    "MODEL.handec.dropout=0.0",
    "GENERAL.dropout_warmup_step=0",
    "TRAIN.lr=1e-3",
    "TRAIN.backbone_lr=1e-3",
    "TRAIN.warmup_step=200",
    "TRAIN.ema_decay=0.0",
    "DATA.val.max_samples=256",
    "AIM.enabled=false",
)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_source(folder: Path, train: int, val: int, seed: int) -> dict[str, Any]:
    """Generate the source set (generator seed ``seed + SOURCE_SEED_OFFSET``) into ``folder``
    unless it is already there; -> its manifest."""
    seed += SOURCE_SEED_OFFSET
    want = manifest_for(train, val, seed, IMAGE_SIZE, SOURCE)
    try:
        have = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        have = {}
    if {k: have.get(k) for k in want} != want:
        print(f"pretrain: rendering {train} + {val} source images into {folder}", flush=True)
        generate(
            folder, train, val, seed, IMAGE_SIZE, quiet=not sys.stderr.isatty(), difficulty=SOURCE
        )
        have = json.loads((folder / "manifest.json").read_text())
    return have


def run_overrides(out: Path, steps: int, seed: int, checkpoint_step: int) -> list[str]:
    src = out / "source"
    return [
        *RECIPE,
        f"GENERAL.total_step={steps}",
        f"GENERAL.seed={seed}",
        f"GENERAL.checkpoint_step={checkpoint_step}",
        f"GENERAL.log_step={min(50, checkpoint_step)}",
        f"GENERAL.output_dir={out}",
        "GENERAL.run_name=run",
        f"DATA.train.source=[{src}/train-*.tar]",
        f"DATA.val.source=[{src}/val-*.tar]",
    ]


def export_part(model_sd: dict[str, torch.Tensor], part: str, path: Path) -> None:
    """PoseNet state dict -> the tensors of ``part`` ("backbone": DINOv2's names; "decoder"),
    without the prefix, fp16, sorted, at ``path``."""
    prefix = f"{part}."
    sd = {
        k.removeprefix(prefix): v.half().contiguous()
        for k, v in model_sd.items()
        if k.startswith(prefix)
    }
    torch.save(dict(sorted(sd.items())), path)


def pretrain(
    out: str | Path,
    steps: int,
    seed: int = 0,
    train_images: int = 20000,
    val_images: int = 500,
    checkpoint_step: int = 500,
    overrides: tuple[str, ...] = (),
    command: str = "",
) -> dict[str, Any]:
    """Run the three steps (module docstring) into ``out``; -> the manifest written."""
    from handpose.train import train  # heavy import: keep `--help` fast

    out = Path(out).resolve()
    if steps < 1 or train_images < 1 or val_images < 1:
        raise UserError(
            f"pretrain: want steps, train, val >= 1 (got {steps}, {train_images}, {val_images})"
        )
    data = ensure_source(out / "source", train_images, val_images, seed)
    done = list_checkpoints(out / "run" / "checkpoints")
    resume = {"GENERAL.resume_path": str(out / "run")} if done else {}
    cfg = load_config(
        "stage1-tiny", [*run_overrides(out, steps, seed, checkpoint_step), *overrides], resume
    )
    if done and int(done[-1].name.rsplit("-", 1)[1]) >= steps:
        print(f"pretrain: {done[-1]} is the last step; exporting it", flush=True)
    else:
        if done:
            print(f"pretrain: resuming from {done[-1]}", flush=True)
        train(cfg, run_dir=out / "run")
    ckpt = load_checkpoint(out / "run", with_state=False)
    weights, decoder = out / WEIGHTS_NAME, out / DECODER_NAME
    export_part(ckpt["model"], "backbone", weights)
    export_part(ckpt["model"], "decoder", decoder)
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    val = [r for r in map(json.loads, lines) if r.get("split") == "val"]
    manifest = {
        "weights": WEIGHTS_NAME,
        "sha256": sha256_of(weights),
        "decoder_weights": DECODER_NAME,
        "decoder_sha256": sha256_of(decoder),
        "format": "DINOv2 .pth state dict (fp16), MODEL.backbone arch vit_tiny depth "
        f"{cfg.MODEL.backbone.depth}, patch {cfg.MODEL.backbone.patch_size}, "
        f"pos_embed for {cfg.MODEL.img_size} px",
        "command": command,
        "seed": seed,
        "steps": steps,
        "torch": torch.__version__,
        "source_data": {
            k: data[k]
            for k in ("generator", "version", "seed", "image_size", "counts", "difficulty")
        },
        "generator_version": GENERATOR_VERSION,
        "source_val_last": {
            k: val[-1][k] for k in ("step", "mpjpe", "mpjpe_rel", "pa_mpjpe", "rte", "train_mpjpe")
        }
        if val
        else None,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder (reused: resumes)")
    p.add_argument("--steps", type=int, default=1200, help="training steps")
    p.add_argument("--seed", type=int, default=0, help="data and training seed")
    p.add_argument("--train", type=int, default=20000, help="source train images")
    p.add_argument("--val", type=int, default=500, help="source val images")
    p.add_argument("--checkpoint-step", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE for the training config")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    command = shlex.join(["python", "-m", "handpose.pretrain", *(argv or sys.argv[1:])])
    m = pretrain(
        a.out, a.steps, a.seed, a.train, a.val, a.checkpoint_step, tuple(a.overrides), command
    )
    print(f"wrote {Path(a.out) / m['weights']} sha256 {m['sha256']}")
    return 0


if __name__ == "__main__":
    run_cli(main)
