"""The canary (docs/artifacts.md): every 512-byte sector s of the dump disk holds 32 copies of
the 16-byte unit "DBCN" + u32 seed + u64 s (little-endian), so a moved, stale or altered sector
is detected. fill() writes it, check() finds the sectors that no longer hold it.

Both work a few MiB at a time with numpy: a sector is 64 little-endian u64 words, the even ones
are "DBCN"+seed (the same everywhere), the odd ones are the sector number.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dumpbed import progress
from dumpbed.images.layout import DiskLayout
from dumpbed.units import SECTOR

UNITS_PER_SECTOR = SECTOR // 16
_WORDS_PER_SECTOR = SECTOR // 8
_CHUNK_SECTORS = 8192  # 4 MiB per step


def unit_word(seed: int) -> int:
    """The first 8 bytes of every unit, "DBCN" + u32 seed, as a little-endian u64."""
    return int.from_bytes(b"DBCN" + (seed & 0xFFFFFFFF).to_bytes(4, "little"), "little")


def _sectors(first_sector: int, count: int, seed: int) -> np.ndarray:
    words = np.empty((count, UNITS_PER_SECTOR, 2), dtype="<u8")
    words[:, :, 0] = unit_word(seed)
    words[:, :, 1] = np.arange(first_sector, first_sector + count, dtype="<u8")[:, None]
    return words


def expected(offset: int, length: int, seed: int) -> bytes:
    """The canary bytes of the disk range [offset, offset + length)."""
    if length <= 0:
        return b""
    first = offset // SECTOR
    last = (offset + length - 1) // SECTOR
    data = _sectors(first, last - first + 1, seed).tobytes()
    start = offset - first * SECTOR
    return data[start:start + length]


def expected_into(offset: int, out, seed: int) -> None:
    """expected(offset, len(out), seed) written into `out` (a writable buffer), in place when the
    range is whole sectors: a caller that compares a GiB a step at a time allocates nothing (in
    a process of its own, fresh memory for every step cost the consistency sweep 35 000 page
    faults a GiB, docs/benchmarks.md)."""
    n = len(out)
    if offset % SECTOR or n % SECTOR:
        out[:] = expected(offset, n, seed)
        return
    words = np.frombuffer(out, dtype="<u8").reshape(n // SECTOR, UNITS_PER_SECTOR, 2)
    words[:, :, 0] = unit_word(seed)
    words[:, :, 1] = np.arange(offset // SECTOR, offset // SECTOR + n // SECTOR, dtype="<u8")[:, None]


@dataclass(frozen=True)
class Canary:
    """A disk's canary as a function of the range, (offset, length) -> bytes, and in place
    (`into`): what a disk held before its run (oracles/replay.py's initial content)."""
    seed: int

    def __call__(self, offset: int, length: int) -> bytes:
        return expected(offset, length, self.seed)

    def into(self, offset: int, out) -> None:
        expected_into(offset, out, self.seed)


def fill(image_path: str | Path, layout: DiskLayout) -> None:
    """Write the canary over the whole image (created or resized to layout.size_bytes)."""
    path = Path(image_path)
    mode = "r+b" if path.exists() else "w+b"
    ranges = written_ranges(layout)
    with open(path, mode, buffering=0) as f, \
            progress.task(f"fill {path.name}", total=sum(end - start for start, end in ranges), unit="bytes") as bar:
        f.truncate(layout.size_bytes)  # holes stay holes: a sparse file
        for start, end in ranges:
            f.seek(start)
            for first in range(start // SECTOR, end // SECTOR, _CHUNK_SECTORS):
                count = min(_CHUNK_SECTORS, end // SECTOR - first)
                f.write(memoryview(_sectors(first, count, layout.canary_seed)).cast("B"))
                bar.advance(count * SECTOR)  # a 4 MiB chunk; the bar passes it on a few times a second


def written_ranges(layout: DiskLayout) -> list[tuple[int, int]]:
    """The disk minus its holes: where fill() puts the canary."""
    ranges, pos = [], 0
    for start, end in layout.holes:
        if start > pos:
            ranges.append((pos, start))
        pos = end
    if pos < layout.size_bytes:
        ranges.append((pos, layout.size_bytes))
    return ranges


@dataclass(frozen=True)
class BadRun:
    """Consecutive sectors first..last (inclusive) that do not hold their canary."""

    first: int
    last: int
    missing: bool = False  # beyond the end of the image

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass
class CanaryResult:
    checked_sectors: int = 0
    bad_sectors: int = 0
    runs: list[BadRun] = field(default_factory=list)  # the first max_runs runs, in disk order
    more_runs: bool = False

    @property
    def ok(self) -> bool:
        return self.bad_sectors == 0


def check(image, seed: int, ranges: list[tuple[int, int]], max_runs: int = 16) -> CanaryResult:
    """Compare the sector-aligned byte ranges [start, end) of an image with the canary.

    image is a path, a buffer (bytes, mmap) or a reader with .size and .read(offset, length)
    (dumpbed.reader.dumpfmt.Image). Sectors past the end of the image count as bad ("missing").
    """
    if isinstance(image, (str, Path)):
        with open(image, "rb") as f:
            return check(_FileReader(f), seed, ranges, max_runs)
    if isinstance(image, (bytes, bytearray, memoryview, mmap.mmap)):
        buffer = image
        read = lambda offset, length: bytes(buffer[offset:offset + length])  # noqa: E731
        size = len(buffer)
    else:
        read, size = image.read, image.size

    result = CanaryResult()
    runs: list[BadRun] = []
    word = np.uint64(unit_word(seed))

    def add(first: int, last: int, missing: bool) -> None:
        result.bad_sectors += last - first + 1
        if runs and runs[-1].last + 1 == first and runs[-1].missing == missing:
            runs[-1] = BadRun(runs[-1].first, last, missing)
        elif len(runs) < max_runs:
            runs.append(BadRun(first, last, missing))
        else:
            result.more_runs = True

    for start, end in sorted(ranges):
        if start % SECTOR or end % SECTOR:
            raise ValueError(f"canary range {start}..{end} is not sector aligned")
        present_end = min(end, size - size % SECTOR)
        for pos in range(start, present_end, _CHUNK_SECTORS * SECTOR):
            stop = min(pos + _CHUNK_SECTORS * SECTOR, present_end)
            first = pos // SECTOR
            count = (stop - pos) // SECTOR
            words = np.frombuffer(read(pos, stop - pos), dtype="<u8").reshape(count, UNITS_PER_SECTOR, 2)
            numbers = np.arange(first, first + count, dtype="<u8")
            bad = (words[:, :, 0] != word).any(axis=1) | (words[:, :, 1] != numbers[:, None]).any(axis=1)
            result.checked_sectors += count
            if bad.any():
                for first_bad, last_bad in _runs(np.flatnonzero(bad)):
                    add(first + first_bad, first + last_bad, False)
        if present_end < end:
            first_missing = max(start, present_end) // SECTOR
            result.checked_sectors += end // SECTOR - first_missing
            add(first_missing, end // SECTOR - 1, True)
    result.runs = runs
    return result


class _FileReader:
    def __init__(self, f):
        self.fd = f.fileno()
        self.size = os.fstat(self.fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)


def _runs(indices: np.ndarray):
    """Group sorted indices into (first, last) runs of consecutive values."""
    breaks = np.flatnonzero(np.diff(indices) != 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(indices) - 1]))
    for s, e in zip(starts, ends):
        yield int(indices[s]), int(indices[e])
