"""Checkpoints: ``checkpoints/checkpoint-<step>/`` with ``model.pt``, ``state.pt`` and
``config.yaml`` (the resolved config). Written to a temp folder then renamed, so a crash
never leaves half a checkpoint; the last ``GENERAL.keep_checkpoints`` are kept.

Both ``.pt`` files hold only tensors and plain containers (dict, list, tuple, int, float,
str, bool, None) and are read with ``torch.load(weights_only=True)``: a checkpoint folder
on shared storage cannot run code in the processes that resume from it. A file that needs
more (a pickled object) is an unreadable checkpoint.
"""

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
    """This process's global RNG states as tensors and plain containers: ``python``
    (``random.getstate()``: version, 625 ints, gauss_next), ``numpy`` (the legacy MT19937
    state: ``keys`` a (624,) int64 tensor, ``pos``, ``has_gauss``, ``cached_gaussian``),
    ``torch`` (uint8 tensor) and, with CUDA, ``cuda`` (one uint8 tensor per device)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states of :func:`rng_state`."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["bit_generator"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
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
    """Write ``ckpt_root/checkpoint-<step>`` atomically and prune old ones. Returns its path.

    ``state`` (optimizer, scheduler, data position, ...) must hold only tensors and plain
    containers: :func:`load_checkpoint` reads it with ``weights_only=True``."""
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


def _load_tensors(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU. A file that is not tensors and
    plain containers only (garbled, pickled objects, or an older format) is a
    ``pickle.UnpicklingError`` with a one-line message of ours: torch's spans several
    lines and suggests ``weights_only=False``, which is exactly what must not be done."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise pickle.UnpicklingError(
            f"{path.name} is not tensors and plain containers only (garbled, written by an "
            "older version, or holding pickled objects: not unpickled)"
        ) from None


def load_checkpoint(path: str | Path, with_state: bool = True) -> dict[str, Any]:
    """-> ``{"dir", "model", "config", "state"}`` (state only if ``with_state``). Never
    unpickles objects: a file that holds any is a :class:`UserError` (unreadable)."""
    ckpt = resolve_checkpoint(path)
    try:
        out: dict[str, Any] = {
            "dir": ckpt,
            "model": _load_tensors(ckpt / "model.pt"),
            "config": OmegaConf.load(ckpt / "config.yaml"),
        }
        if with_state:
            out["state"] = _load_tensors(ckpt / "state.pt")
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        why = first_line(e, 200)
        raise UserError(f"unreadable checkpoint: {ckpt} ({type(e).__name__}: {why})") from None
    return out
