"""Checkpoints: ``checkpoints/checkpoint-<step>/`` with ``model.pt``, ``state.pt`` and
``config.yaml`` (the resolved config). Written to a temp folder then renamed, so a crash
never leaves half a checkpoint; the last ``GENERAL.keep_checkpoints`` are kept."""

from __future__ import annotations

import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from handpose.errors import UserError, first_line

PREFIX = "checkpoint-"


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    ckpt_root: Path,
    step: int,
    cfg: DictConfig,
    model: torch.nn.Module,
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write ``ckpt_root/checkpoint-<step>`` atomically and prune old ones. Returns its path."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"{PREFIX}{step:07d}"
    tmp = ckpt_root / f".tmp-{PREFIX}{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(model.state_dict(), tmp / "model.pt")
    torch.save({**state, "step": step, "rng": rng_state()}, tmp / "state.pt")
    (tmp / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(ckpt_root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints under ``ckpt_root``, oldest first."""
    if not ckpt_root.is_dir():
        return []
    return sorted(p for p in ckpt_root.glob(f"{PREFIX}*") if (p / "state.pt").is_file())


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run/``checkpoints`` folder (its newest checkpoint)."""
    p = Path(path)
    if (p / "model.pt").is_file():
        return p
    for root in (p / "checkpoints", p):
        found = list_checkpoints(root)
        if found:
            return found[-1]
    raise UserError(f"unreadable checkpoint: {path} (no model.pt, no checkpoint-* inside)")


def load_checkpoint(path: str | Path, with_state: bool = True) -> dict[str, Any]:
    """-> ``{"dir", "model", "config", "state"}`` (state only if ``with_state``)."""
    ckpt = resolve_checkpoint(path)
    try:
        out: dict[str, Any] = {
            "dir": ckpt,
            "model": torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True),
            "config": OmegaConf.load(ckpt / "config.yaml"),
        }
        if with_state:
            out["state"] = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        why = first_line(e, 200)
        raise UserError(f"unreadable checkpoint: {ckpt} ({type(e).__name__}: {why})") from None
    return out
