"""Helpers of the library's tests: the tiny preset with overrides, and the config the data
stream tests build their streams from."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from handpose.config import load_config
from tests.helpers import shard_overrides


def tiny_config(*overrides: str) -> DictConfig:
    """configs/stage1-tiny.yaml with ``overrides`` (``KEY=VALUE``)."""
    return load_config("stage1-tiny", list(overrides))


def stream_config(folder: Path, *extra: str, batch: int = 8) -> DictConfig:
    """The tiny preset reading the shards in ``folder``: ``batch`` train samples per step,
    validation batches of 16; ``extra``: more overrides (they win)."""
    return tiny_config(
        *shard_overrides(folder),
        f"TRAIN.sample_per_device={batch}",
        "DATA.val_batch_size=16",
        *extra,
    )
