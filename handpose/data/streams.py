"""Train and validation streams over WebDataset shards.

Train: per epoch, the shard order and the sample shuffle buffer are seeded from
(GENERAL.seed, epoch, rank) with a stdlib ``random.Random`` (never a numpy Generator, never
a seed passed as a buffer size); infinite; split by rank (whole shards when there are at
least as many shards as ranks, else every ``world``-th sample) and by DataLoader worker
(worker ``w`` builds batches ``k % W == w``; the DataLoader interleaves them back in order).
Each sample's augmentation is seeded from (seed, epoch, position, rank), so it is stateless.
The position (epoch, samples of the epoch consumed) is the whole state: ``load_state_dict``
fast-forwards raw samples without decoding them and continues bit for bit.

Validation: a pure function of (val shards, GENERAL.val_seed, DATA.val settings): shards in
the listed order, samples in file order, no shuffle; ``DATA.val.max_samples`` keeps a fixed
:class:`Subset` (chosen with ``random.Random(val_seed)``, kept in file order). Every full pass sets
``fingerprint`` (sha256 of the ordered ``<shard file>/<key>`` list, first 16 hex digits).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from handpose.data.decode import BadSample, DecodeCfg, collate, decode
from handpose.data.shards import RawSample, expand_sources, read_shard
from handpose.errors import DataError

if TYPE_CHECKING:
    from handpose.config import TrainSplitCfg

LOG = logging.getLogger("handpose")
MIN_SAMPLES_FOR_BAD_CHECK = 500  # training: judge the bad fraction once this many were read


def check_bad_fraction(
    bad: Sequence[str], seen: int, max_fraction: float, final: bool, count: int | None = None
) -> None:
    """Raise :class:`DataError` naming the shard with most problems when more than
    ``max_fraction`` of the ``seen`` samples (bad ones included) were bad, or all were.

    ``bad`` holds ``"<shard>: <why>"`` entries (possibly only the latest ones), ``count``
    the number of bad samples (default ``len(bad)``). Before ``final``, wait until
    ``MIN_SAMPLES_FOR_BAD_CHECK`` samples were seen.
    """
    count = len(bad) if count is None else count
    if not bad or (seen < MIN_SAMPLES_FOR_BAD_CHECK and not final):
        return
    if count > max_fraction * seen or count >= seen:
        shards = [b.split(": ", 1)[0] for b in bad]
        worst = max(sorted(set(shards)), key=shards.count)
        raise DataError(
            f"{count} of {seen} samples are bad (> DATA.max_bad_fraction={max_fraction}),"
            f" most in {worst}; last: {bad[-1]}"
        )


def epoch_samples(
    shards: list[str], seed: int, epoch: int, rank: int, world: int, buffer: int, bad: list[str]
) -> Iterator[RawSample]:
    """The raw training samples of one epoch for ``rank`` of ``world``, shuffled with a
    ``buffer``-sample shuffle buffer; deterministic in the arguments. Read problems are
    appended to ``bad``."""
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
    """Batches of ``stream`` (its settings only) from position ``start`` = (epoch, samples
    consumed); in a DataLoader worker ``w`` of ``W``, only batches ``k % W == w`` are
    decoded. Each batch carries private keys ``_end`` (the position after it), ``_read``
    (samples read for it, bad ones included) and ``_bad`` (its problems); a batch whose
    samples were all bad has no tensors."""

    def __init__(self, stream: TrainStream, start: tuple[int, int]) -> None:
        self.shards, self.seed, self.batch_size = stream.shards, stream.seed, stream.batch_size
        self.shuffle_buffer, self.decode_cfg = stream.shuffle_buffer, stream.decode_cfg
        self.rank, self.world, self.start = stream.rank, stream.world, start

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        w, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        bsz = self.batch_size
        epoch, skip = self.start
        k, chunk, read_bad = 0, [], []
        while True:
            pos = 0
            raws = epoch_samples(
                self.shards,
                self.seed,
                epoch,
                self.rank,
                self.world,
                self.shuffle_buffer,
                read_bad,
            )
            for raw in raws:
                pos += 1
                if pos <= skip:  # resuming: fast-forward without decoding
                    if pos == skip:
                        read_bad.clear()  # counted before the state was saved
                    continue
                chunk.append((pos - 1, raw))
                if len(chunk) < bsz:
                    continue
                if k % n_workers == w:
                    yield self._batch(chunk, epoch, (epoch, pos), list(read_bad))
                read_bad.clear()
                chunk, k = [], k + 1
            if pos == 0:
                raise DataError(
                    f"DATA.train.source: no readable sample in {self.shards}: "
                    f"{read_bad[-1] if read_bad else 'empty shards'}"
                )
            epoch, skip = epoch + 1, 0

    def _batch(
        self,
        chunk: list[tuple[int, RawSample]],
        epoch: int,
        end: tuple[int, int],
        bad: list[str],
    ) -> dict[str, Any]:
        samples, read = [], len(chunk) + len(bad)  # bad holds the read problems so far
        for pos, raw in chunk:
            rng = np.random.default_rng([self.seed, epoch, pos, self.rank])
            try:
                samples.append(decode(raw, self.decode_cfg, rng))
            except BadSample as e:
                bad.append(f"{raw.shard}: {raw.key}: {e}")
                LOG.warning(f"warning: skipping {raw.key} in {raw.shard}: {e}")
        batch = collate(samples) if samples else {}
        batch.update(_end=end, _read=read, _bad=bad)
        return batch


class TrainStream:
    """Infinite iterator of training batches (``batch_size`` samples of rank ``rank`` of
    ``world_size``) with an exact, resumable position.

    ``seed`` is ``GENERAL.seed``; ``split`` is ``DATA.train`` (sources, shuffle buffer).
    ``bad_samples`` counts skipped samples (restored with the state); more than
    ``max_bad_fraction`` of them raises :class:`DataError`.
    """

    def __init__(
        self,
        split: TrainSplitCfg,
        seed: int,
        batch_size: int,
        decode_cfg: DecodeCfg,
        num_workers: int = 0,
        max_bad_fraction: float = 0.01,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.seed, self.batch_size, self.shuffle_buffer = seed, batch_size, split.shuffle_buffer
        self.decode_cfg, self.num_workers, self.max_bad_fraction = (
            decode_cfg,
            num_workers,
            max_bad_fraction,
        )
        self.rank, self.world = rank, world_size
        self.shards = expand_sources(split.source, "DATA.train.source")
        self.position = (0, 0)  # (epoch, samples of that epoch consumed by this rank)
        self.bad_samples, self.seen = 0, 0
        self._bad: deque[str] = deque(maxlen=1000)  # the latest problems, to name a shard
        self._it: Iterator[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        """JSON-able position and counters; ``load_state_dict`` continues exactly here."""
        return {"position": list(self.position), "bad_samples": self.bad_samples, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, consumed = (int(v) for v in state["position"])
        self.position = (epoch, consumed)
        self.bad_samples, self.seen = int(state["bad_samples"]), int(state["seen"])
        self._it = None

    def __iter__(self) -> TrainStream:
        return self

    def _batches(self) -> Iterator[dict[str, Any]]:
        source = _TrainBatches(self, self.position)
        if not self.num_workers:
            return iter(source)
        return iter(DataLoader(source, batch_size=None, num_workers=self.num_workers))

    def __next__(self) -> dict[str, Any]:
        """The next batch dict (docs/internals.md); skips batches whose samples were all bad."""
        if self._it is None:
            self._it = self._batches()
        while True:
            batch = next(self._it)
            self.position = batch.pop("_end")
            self.seen += batch.pop("_read")
            bad = batch.pop("_bad")
            self.bad_samples += len(bad)
            self._bad.extend(bad)
            check_bad_fraction(self._bad, self.seen, self.max_bad_fraction, False, self.bad_samples)
            if batch:
                return batch


class Subset(NamedTuple):
    """Keep ``count`` samples chosen with ``random.Random(seed)`` (kept in file order)."""

    count: int
    seed: int


class ValStream:
    """Re-iterable batches of ``batch_size`` in a fixed order: a pure function of the shards
    ``sources`` (named ``what`` in errors), ``subset`` (None: every sample) and
    ``decode_cfg``.

    After each full pass: ``fingerprint`` (16 hex digits over the ordered keys),
    ``num_samples`` (validated) and ``bad_samples`` (skipped; more than
    ``max_bad_fraction`` raises :class:`DataError`).
    """

    def __init__(
        self,
        sources: Sequence[str],
        subset: Subset | None,
        batch_size: int,
        decode_cfg: DecodeCfg,
        max_bad_fraction: float = 0.01,
        what: str = "DATA.val.source",
    ) -> None:
        self.shards = expand_sources(sources, what)
        self.subset, self.batch_size, self.decode_cfg = subset, batch_size, decode_cfg
        self.max_bad_fraction, self.what = max_bad_fraction, what
        self.fingerprint: str | None = None
        self.num_samples = 0
        self.bad_samples = 0
        self._selected: set[int] | None = None

    def _subset(self) -> set[int] | None:
        """Indices (file order, complete samples) kept by ``subset``."""
        if self.subset is None:
            return None
        if self._selected is None:
            total = sum(1 for s in self.shards for _ in read_shard(s, []))
            rng = random.Random(self.subset.seed)
            self._selected = set(rng.sample(range(total), min(self.subset.count, total)))
        return self._selected

    def __iter__(self) -> Iterator[dict[str, Any]]:
        subset, bad, keys, chunk = self._subset(), [], [], []
        bsz, index = self.batch_size, 0
        for shard in self.shards:
            for raw in read_shard(shard, bad):
                index += 1
                if subset is not None and index - 1 not in subset:
                    continue
                try:
                    chunk.append(decode(raw, self.decode_cfg, None))
                except BadSample as e:
                    bad.append(f"{shard}: {raw.key}: {e}")
                    LOG.warning(f"warning: skipping {raw.key} in {shard}: {e}")
                    continue
                keys.append(f"{Path(shard).name}/{raw.key}")
                if len(chunk) == bsz:
                    yield collate(chunk)
                    chunk = []
        if chunk:
            yield collate(chunk)
        if not keys and not bad:
            raise DataError(f"{self.what}: no sample in {self.shards}")
        considered = len(keys) + len(bad)
        self.num_samples, self.bad_samples = len(keys), len(bad)
        check_bad_fraction(bad, considered, self.max_bad_fraction, final=True)
        self.fingerprint = fingerprint(keys)


def fingerprint(keys: list[str]) -> str:
    """First 16 hex digits of sha256 over the newline-joined ordered sample keys."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
