"""Train and validation streams over WebDataset shards.

Train: epoch-wise shard shuffle + sample shuffle buffer (stdlib ``random.Random`` seeded
from (GENERAL.seed, epoch, rank): never a numpy Generator, never a seed passed as a buffer
size), infinite, split by rank and DataLoader worker, per-sample augmentation seeded from
(seed, epoch, position, rank). The position (epoch, next sample) is the whole state, so
``load_state_dict`` continues bit for bit; batches carry the position they end at.

Validation: a pure function of (val shards, GENERAL.val_seed, DATA.val settings): shards in
the listed order, samples in file order; ``DATA.val.max_samples`` picks a fixed subset with
``random.Random(val_seed)``. Every pass sets ``fingerprint`` (sha256 of the ordered keys).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from handpose.data.decode import BadSample, collate, decode
from handpose.data.shards import RawSample, expand_sources, read_shard
from handpose.errors import DataError

LOG = logging.getLogger("handpose")
MIN_SAMPLES_FOR_BAD_CHECK = 500  # judge the bad fraction only once this many were read


def check_bad_fraction(bad: list[str], seen: int, max_fraction: float, final: bool) -> None:
    """Raise :class:`DataError` naming the worst shard if too many samples were bad."""
    if not bad or (seen < MIN_SAMPLES_FOR_BAD_CHECK and not final):
        return
    if len(bad) > max_fraction * max(seen, 1):
        shards = [b.split(": ", 1)[0] for b in bad]
        worst = max(set(shards), key=shards.count)
        raise DataError(f"{len(bad)} of {seen} samples are bad (> DATA.max_bad_fraction="
                        f"{max_fraction}), most in {worst}: {bad[-1]}")


def epoch_samples(shards: list[str], seed: int, epoch: int, rank: int, world: int,
                  buffer: int, bad: list[str]) -> Iterator[RawSample]:
    """The raw training samples of one epoch for ``rank``, shuffled (deterministic)."""
    order = list(shards)
    random.Random(f"shards-{seed}-{epoch}").shuffle(order)
    by_shard = len(order) >= world
    mine = order[rank::world] if by_shard else order
    rng = random.Random(f"buffer-{seed}-{epoch}-{rank}")
    pool: list[RawSample] = []
    n = 0
    for shard in mine:
        for raw in read_shard(shard, bad):
            n += 1
            if not by_shard and (n - 1) % world != rank:
                continue
            if len(pool) < buffer:
                pool.append(raw)
                continue
            i = rng.randrange(len(pool))
            yield pool[i]
            pool[i] = raw
    rng.shuffle(pool)
    yield from pool


class _TrainBatches(IterableDataset):
    """Batches from position ``start``; worker ``w`` of ``W`` builds batches ``k % W == w``."""

    def __init__(self, cfg: DictConfig, shards: list[str], rank: int, world: int,
                 start: tuple[int, int]) -> None:
        self.cfg, self.shards, self.rank, self.world, self.start = cfg, shards, rank, world, start

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        w, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        cfg, bsz = self.cfg, self.cfg.TRAIN.sample_per_device
        epoch, skip = self.start
        k, chunk, bad = 0, [], []
        while True:
            pos = 0
            for raw in epoch_samples(self.shards, cfg.GENERAL.seed, epoch, self.rank,
                                     self.world, cfg.DATA.train.shuffle_buffer, bad):
                pos += 1
                if pos <= skip:
                    continue
                chunk.append((pos - 1, raw))
                if len(chunk) < bsz:
                    continue
                if k % n_workers == w:
                    yield self._batch(chunk, epoch, (epoch, pos), bad)
                bad, chunk, k = [], [], k + 1
            if pos == 0 and skip == 0:
                raise DataError(f"DATA.train.source: no readable sample in {self.shards[0]}")
            epoch, skip = epoch + 1, 0

    def _batch(self, chunk: list[tuple[int, RawSample]], epoch: int, end: tuple[int, int],
               bad: list[str]) -> dict[str, Any]:
        samples, bad = [], list(bad)
        for pos, raw in chunk:
            rng = np.random.default_rng([self.cfg.GENERAL.seed, epoch, pos, self.rank])
            try:
                samples.append(decode(raw, self.cfg, rng))
            except BadSample as e:
                bad.append(f"{raw.shard}: {raw.key}: {e}")
                LOG.warning(f"warning: skipping {raw.key} in {raw.shard}: {e}")
        if not samples:  # a whole batch of bad samples: let the fraction check speak
            samples.append(decode(chunk[0][1], self.cfg, None))
        batch = collate(samples)
        batch["_end"], batch["_read"], batch["_bad"] = end, len(chunk), bad
        return batch


class TrainStream:
    """Infinite iterator of training batches with an exact, resumable position."""

    def __init__(self, cfg: DictConfig, rank: int = 0, world_size: int = 1) -> None:
        self.cfg, self.rank, self.world = cfg, rank, world_size
        self.shards = expand_sources(cfg.DATA.train.source, "DATA.train.source")
        self.position = (0, 0)  # (epoch, samples of that epoch consumed)
        self.bad_samples, self.seen = 0, 0
        self._bad: list[str] = []
        self._it: Iterator[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"position": list(self.position), "bad_samples": self.bad_samples,
                "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = tuple(state["position"])
        self.bad_samples, self.seen = state["bad_samples"], state["seen"]
        self._it = None

    def __iter__(self) -> TrainStream:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            source = _TrainBatches(self.cfg, self.shards, self.rank, self.world, self.position)
            workers = self.cfg.TRAIN.num_workers
            self._it = iter(DataLoader(source, batch_size=None, num_workers=workers,
                                       persistent_workers=False) if workers else source)
        batch = next(self._it)
        self.position = batch.pop("_end")
        self.seen += batch.pop("_read")
        bad = batch.pop("_bad")
        self.bad_samples += len(bad)
        self._bad.extend(bad)
        check_bad_fraction(self._bad, self.seen, self.cfg.DATA.max_bad_fraction, final=False)
        return batch


class ValStream:
    """Re-iterable validation batches in a fixed order; sets ``fingerprint`` per pass."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.shards = expand_sources(cfg.DATA.val.source, "DATA.val.source")
        self.fingerprint: str | None = None
        self.num_samples = 0
        self.bad_samples = 0
        self._selected: set[int] | None = None

    def _subset(self) -> set[int] | None:
        limit = self.cfg.DATA.val.max_samples
        if limit is None:
            return None
        if self._selected is None:
            total = sum(1 for s in self.shards for _ in read_shard(s, []))
            chosen = random.Random(self.cfg.GENERAL.val_seed).sample(range(total),
                                                                    min(limit, total))
            self._selected = set(chosen)
        return self._selected

    def __iter__(self) -> Iterator[dict[str, Any]]:
        subset, bad, keys, chunk = self._subset(), [], [], []
        bsz, index = self.cfg.DATA.val_batch_size, 0
        for shard in self.shards:
            for raw in read_shard(shard, bad):
                index += 1
                if subset is not None and index - 1 not in subset:
                    continue
                try:
                    chunk.append(decode(raw, self.cfg, None))
                except BadSample as e:
                    bad.append(f"{shard}: {raw.key}: {e}")
                    continue
                keys.append(f"{Path(shard).name}/{raw.key}")
                if len(chunk) == bsz:
                    yield collate(chunk)
                    chunk = []
        if chunk:
            yield collate(chunk)
        self.num_samples, self.bad_samples = len(keys), len(bad)
        check_bad_fraction(bad, index, self.cfg.DATA.max_bad_fraction, final=True)
        self.fingerprint = fingerprint(keys)


def fingerprint(keys: list[str]) -> str:
    """First 16 hex digits of sha256 over the ordered sample keys."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]

