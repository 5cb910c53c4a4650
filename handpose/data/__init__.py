"""Data: synthetic hand shards (the embedded default), WebDataset train/val streams with a
fixed, fingerprinted validation order, and the FreiHAND converter (see docs/data.md).

Public API (docs/internals.md): :func:`ensure_dataset`, :func:`build_train_stream`,
:func:`build_val_stream`; :func:`expand_sources` resolves ``DATA.*.source`` lists.
"""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path

import webdataset as wds
from omegaconf import DictConfig

from handpose.data.decode import DecodeCfg
from handpose.data.shards import expand_sources, is_url
from handpose.data.streams import Subset, TrainStream, ValStream

LOG = logging.getLogger("handpose")

__all__ = [
    "DecodeCfg",
    "Subset",
    "TrainStream",
    "ValStream",
    "build_train_stream",
    "build_val_stream",
    "ensure_dataset",
    "expand_sources",
]


def _patterns_in(sources: list[str], folder: Path) -> list[str]:
    """The local patterns (braces expanded) of ``sources`` whose folder is ``folder``."""
    folder = folder.expanduser().resolve()
    return [
        p
        for s in sources
        for p in wds.shardlists.expand_urls(str(s))
        if not is_url(p) and Path(p).expanduser().resolve().parent == folder
    ]


def _stale(folder: Path, want: dict) -> str | None:
    """Why the generated set in ``folder`` must be made again: it was written by another
    generator version or with other difficulty knobs (code changed since).

    Other differences from ``want`` (seed, counts, image size) only log a warning: the data
    may be someone's on purpose. A folder without our manifest is never touched.
    """
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("generator") != want["generator"]:
        return None
    for key in ("version", "difficulty"):
        if manifest.get(key) != want[key]:
            return f"generated with another generator {key}"
    diff = [k for k in want if manifest.get(k) != want[k]]
    if diff:
        LOG.warning(
            f"warning: {folder} was generated with other {', '.join(diff)} than DATA.synthetic"
            " asks for; using it as is (delete the folder to generate it again)"
        )
    return None


def ensure_dataset(cfg: DictConfig) -> None:
    """Generate the synthetic set into ``DATA.synthetic.dir`` (with ``DATA.synthetic.{train,
    val,seed,image_size}``) when a train or val source points into that folder and matches
    no file, or when the folder was written by another generator version or difficulty
    (see :mod:`handpose.data.difficulty`). Other sources
    are left alone: one that matches nothing fails with a :class:`DataError` naming it when
    the stream is built."""
    from handpose.data.synthetic import generate, manifest_for

    syn = cfg.DATA.synthetic
    folder = Path(syn.dir)
    patterns = _patterns_in(list(cfg.DATA.train.source) + list(cfg.DATA.val.source), folder)
    if not patterns:
        return
    missing = [p for p in patterns if not glob.glob(str(Path(p).expanduser()))]
    want = manifest_for(syn.train, syn.val, syn.seed, syn.image_size)
    why = f"no file matches {missing[0]}" if missing else _stale(folder, want)
    if why is None:
        return
    LOG.info(
        f"synthetic data set in {folder}: {why}; generating {syn.train} train + {syn.val}"
        " val samples"
    )
    generate(folder, syn.train, syn.val, syn.seed, syn.image_size)


def build_train_stream(cfg: DictConfig, rank: int = 0, world_size: int = 1) -> TrainStream:
    """Infinite iterator of training batch dicts for ``rank`` of ``world_size``, with
    ``state_dict()`` / ``load_state_dict()`` (exact resume) and ``bad_samples``."""
    d = cfg.DATA
    return TrainStream(
        d.train,
        cfg.GENERAL.seed,
        cfg.TRAIN.sample_per_device,
        DecodeCfg.from_config(cfg),
        cfg.TRAIN.num_workers,
        d.max_bad_fraction,
        rank,
        world_size,
    )


def build_val_stream(cfg: DictConfig) -> ValStream:
    """Re-iterable validation batches in a fixed order; ``fingerprint``, ``num_samples`` and
    ``bad_samples`` are set after each full pass."""
    d = cfg.DATA
    subset = None if d.val.max_samples is None else Subset(d.val.max_samples, cfg.GENERAL.val_seed)
    return ValStream(
        d.val.source, subset, d.val_batch_size, DecodeCfg.from_config(cfg), d.max_bad_fraction
    )
