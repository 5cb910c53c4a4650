"""Shard sources and raw sample reading.

Sources are globs, brace patterns (``train-{000000..000031}.tar``) or local paths; URLs
(``s3://``, ``gs://``, ``http(s)://``, ``pipe:``) pass through to webdataset's opener.
Reading is robust: a truncated tar or a sample with a missing part is skipped, counted and
reported, never fatal by itself.
"""

from __future__ import annotations

import glob
import logging
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from handpose.errors import DataError

LOG = logging.getLogger("handpose")
REQUIRED = ("jpg", "json")


def is_url(source: str) -> bool:
    return "://" in source or source.startswith("pipe:")


def expand_sources(sources: Sequence[str], what: str = "DATA.train.source") -> list[str]:
    """All shards of ``sources`` (sorted per local pattern). A local pattern that matches
    nothing is a :class:`DataError` naming it."""
    shards: list[str] = []
    for source in sources:
        for pattern in wds.shardlists.expand_urls(str(source)):
            if is_url(pattern):
                shards.append(pattern)
                continue
            matches = sorted(glob.glob(str(Path(pattern).expanduser())))
            if not matches:
                raise DataError(f"{what}: no shard matches {pattern}")
            shards.extend(matches)
    return shards


@dataclass
class RawSample:
    """One sample's undecoded parts: ``parts`` maps extension -> bytes."""

    key: str
    shard: str
    parts: dict[str, bytes]


def _open(shard: str):
    if is_url(shard):
        return wds.gopen(shard, "rb")
    return open(shard, "rb")  # noqa: SIM115 (closed by the caller's with)


def read_shard(shard: str, bad: list[str]) -> Iterator[RawSample]:
    """Samples of one tar in file order. Problems append ``"<shard>: <why>"`` to ``bad``."""
    current: RawSample | None = None
    try:
        with _open(shard) as fh, tarfile.open(fileobj=fh, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = Path(member.name).name
                key, _, ext = name.partition(".")
                if current is None or key != current.key:
                    if current is not None:
                        yield from _complete(current, bad)
                    current = RawSample(key, shard, {})
                current.parts[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        bad.append(f"{shard}: unreadable after {current.key if current else 'start'} ({e})")
        LOG.warning(f"warning: skipping the rest of {shard}: {e}")
        return
    if current is not None:
        yield from _complete(current, bad)


def _complete(sample: RawSample, bad: list[str]) -> Iterator[RawSample]:
    missing = [ext for ext in REQUIRED if ext not in sample.parts]
    if missing:
        bad.append(f"{sample.shard}: {sample.key} lacks .{', .'.join(missing)}")
        LOG.warning(f"warning: skipping {sample.key} in {sample.shard}: no .{missing[0]}")
        return
    yield sample
