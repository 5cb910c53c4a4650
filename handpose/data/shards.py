"""Shard sources and raw sample reading.

Sources are globs, brace patterns (``train-{000000..000031}.tar``) or local paths; URLs
(``s3://``, ``gs://``, ``http(s)://``, ``pipe:``) pass through to webdataset's opener
(:func:`webdataset.gopen`). Samples are grouped as webdataset does: consecutive tar members
that share a key (the member path up to the first dot of its file name) form one sample.
Reading is robust: a truncated or unreadable tar, or a sample with a missing part, is
skipped, recorded in the caller's ``bad`` list and logged, never fatal by itself.
"""

from __future__ import annotations

import glob
import logging
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import webdataset as wds

from handpose.errors import DataError

LOG = logging.getLogger("handpose")
REQUIRED = ("jpg", "json")


def is_url(source: str) -> bool:
    """True for anything webdataset opens itself (``scheme://...`` or ``pipe:...``)."""
    return "://" in source or source.startswith("pipe:")


def expand_sources(sources: Sequence[str], what: str = "DATA.train.source") -> list[str]:
    """All shards of ``sources``, in the listed order (sorted within each local pattern).

    Brace patterns are expanded first; URLs are kept as they are. A local pattern that
    matches nothing raises :class:`DataError` naming it and the config key ``what``.
    """
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
    """One sample's undecoded parts: ``parts`` maps extension (``"jpg"``) -> bytes."""

    key: str
    shard: str
    parts: dict[str, bytes] = field(default_factory=dict)


def split_name(name: str) -> tuple[str, str] | None:
    """``"a/b/0001.cam.json"`` -> ``("a/b/0001", "cam.json")`` (webdataset's key rule);
    None for names without an extension and hidden files (``._x.jpg``, ``.DS_Store``)."""
    base = name.rsplit("/", 1)[-1]
    if base.startswith(".") or "." not in base:
        return None
    stem, ext = base.split(".", 1)
    return name[: len(name) - len(base)] + stem, ext


def _open(shard: str) -> IO[bytes]:
    if is_url(shard):
        return wds.gopen(shard, "rb")
    return open(shard, "rb")  # noqa: SIM115 (closed by read_shard)


def _members(fh: IO[bytes], shard: str, bad: list[str]) -> Iterator[RawSample]:
    current: RawSample | None = None
    with tarfile.open(fileobj=fh, mode="r|*") as tar:
        for member in tar:
            split = split_name(member.name) if member.isfile() else None
            if split is None:
                continue
            key, ext = split
            if current is None or key != current.key:
                if current is not None:
                    yield from _complete(current, bad)
                current = RawSample(key, shard)
            current.parts[ext] = tar.extractfile(member).read()
        _check_end(fh, tar)
    if current is not None:
        yield from _complete(current, bad)


def _check_end(fh: IO[bytes], tar: tarfile.TarFile) -> None:
    """Raise ``tarfile.ReadError`` if a local, uncompressed tar stops without its
    end-of-archive block: ``tarfile`` takes a tar cut at (or inside) a member header for a
    complete one. Streams (URLs, pipes) and compressed tars cannot be checked this way."""
    seekable = getattr(fh, "seekable", None)  # webdataset's Pipe has none
    if getattr(tar.fileobj, "comptype", None) != "tar" or not (seekable and seekable()):
        return
    fh.seek(tar.offset)
    block = fh.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
        raise tarfile.ReadError(f"truncated at byte {tar.offset} (no end-of-archive block)")


def read_shard(shard: str, bad: list[str]) -> Iterator[RawSample]:
    """Complete samples of one tar in file order.

    Each problem appends one ``"<shard>: <why>"`` entry to ``bad`` (a truncated tar counts
    once: the samples after the damage cannot be counted). Abandoning the iterator early
    closes the file (or pipe) quietly.
    """
    try:
        fh = _open(shard)
    except (OSError, ValueError) as e:
        bad.append(f"{shard}: cannot open ({e})")
        LOG.warning(f"warning: skipping {shard}: {e}")
        return
    try:
        yield from _members(fh, shard, bad)
        fh.close()  # a pipe reports a failed command here
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        bad.append(f"{shard}: unreadable ({e})")
        LOG.warning(f"warning: skipping the rest of {shard}: {e}")
    finally:
        try:
            fh.close()
        except OSError:
            pass  # abandoned mid-shard: a pipe's writer may end with SIGPIPE


def _complete(sample: RawSample, bad: list[str]) -> Iterator[RawSample]:
    missing = [ext for ext in REQUIRED if ext not in sample.parts]
    if missing:
        bad.append(f"{sample.shard}: {sample.key} lacks .{', .'.join(missing)}")
        LOG.warning(f"warning: skipping {sample.key} in {sample.shard}: no .{missing[0]}")
        return
    yield sample
