"""Data: synthetic hand shards (the embedded default), WebDataset train/val streams with a
fixed, fingerprinted validation order, and the FreiHAND converter."""

from __future__ import annotations

import glob
import logging
from pathlib import Path

from omegaconf import DictConfig

from handpose.data.shards import expand_sources, is_url
from handpose.data.streams import TrainStream, ValStream

LOG = logging.getLogger("handpose")

__all__ = ["TrainStream", "ValStream", "build_train_stream", "build_val_stream",
           "ensure_dataset", "expand_sources"]


def _in_synthetic_dir(source: str, syn_dir: Path) -> bool:
    if is_url(source):
        return False
    return Path(source).expanduser().resolve().parent == syn_dir.resolve()


def ensure_dataset(cfg: DictConfig) -> None:
    """Generate the synthetic set into ``DATA.synthetic.dir`` on first use: when a train or
    val source points there and matches nothing. Other sources are left alone (a source
    that matches nothing fails later with a one-line error naming it)."""
    syn = cfg.DATA.synthetic
    syn_dir = Path(syn.dir)
    sources = list(cfg.DATA.train.source) + list(cfg.DATA.val.source)
    missing = [s for s in sources if _in_synthetic_dir(s, syn_dir) and not glob.glob(s)]
    if not missing:
        return
    from handpose.data.synthetic import generate

    LOG.info(f"synthetic data set missing ({missing[0]}): generating {syn.train} train + "
             f"{syn.val} val samples into {syn_dir}")
    generate(syn_dir, syn.train, syn.val, syn.seed, syn.image_size)


def build_train_stream(cfg: DictConfig, rank: int = 0, world_size: int = 1) -> TrainStream:
    return TrainStream(cfg, rank, world_size)


def build_val_stream(cfg: DictConfig) -> ValStream:
    return ValStream(cfg)
