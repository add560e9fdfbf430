"""The dump partition as it stood after some of the writes in the device's write log.

A DiskState is a scratch copy of the partition's content before the run (its canary, or the
earlier image a `stale` run started from), on which logged writes are applied in any order and
undone; after all of them it must equal the final image. It reads like an image, so the reader classifies it as it would a disk
(harness/dumpbed/reader/dumpfmt.py); chunk CRCs are cached per chunk and recomputed only where a write landed,
so classifying thousands of states costs what the writes changed, not the body's size each time.

The copy lives in a scratch file (memory-mapped): memory stays bounded by what the page cache
keeps, whatever the partition's size.
"""
from __future__ import annotations

import bisect
import mmap
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

import google_crc32c
import numpy as np

from dumpbed.capture import blklog
from dumpbed.oracles.ranges import merged
from dumpbed.reader import dumpfmt

_STEP = 8 << 20


class DiskState(dumpfmt.Image):
    """Partition-relative: offset 0 is the partition's first byte."""

    def __init__(self, partition_offset: int, partition_bytes: int, initial: Callable[[int, int], bytes],
                 log: blklog.LogData, scratch_dir: Optional[Path] = None):
        self.partition_offset = partition_offset
        self.size = partition_bytes
        self._log = log
        self._tmpdir = tempfile.mkdtemp(prefix="dumpbed-replay-", dir=scratch_dir)
        path = Path(self._tmpdir) / "partition"
        try:
            # The whole partition as it was before the run (not the final image with the logged
            # ranges put back): a byte that changed without a logged write then shows too.
            with open(path, "wb") as dst:
                for pos in range(0, partition_bytes, _STEP):
                    dst.write(initial(partition_offset + pos, min(_STEP, partition_bytes - pos)))
            self._file = open(path, "r+b")
            self._map = mmap.mmap(self._file.fileno(), partition_bytes)
        except BaseException:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise
        self._buf = self._map
        self._fd = None
        self._file_handle = None
        self._initial = initial
        self._touched: list[tuple[int, int]] = []  # ranges writes changed since the last reset
        self._changes: list[tuple[int, int]] = []  # ranges changed since take_changes()
        self._reads: Optional[list[tuple[int, int]]] = None  # ranges read while recording
        self.applied: set[int] = set()  # log entry indexes applied
        self._undo: list[tuple[int, int, bytes]] = []
        self._crc_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    # -- writes ---------------------------------------------------------------------------

    def apply(self, entry: blklog.Entry, undoable: bool = False) -> None:
        start = entry.offset - self.partition_offset
        data = self._log.read(entry, 0, entry.length)
        if undoable:
            self._undo.append((entry.index, start, bytes(self._map[start:start + entry.length])))
        self._map[start:start + entry.length] = data
        self.applied.add(entry.index)
        self._touched.append((start, start + entry.length))
        self._invalidate(start, start + entry.length)

    def reset(self) -> None:
        """Back to the partition as it was before the run: only the ranges writes changed are
        put back, so this costs what was written, not the partition's size."""
        for start, end in merged(self._touched):
            for pos in range(start, end, _STEP):
                n = min(_STEP, end - pos)
                self._map[pos:pos + n] = self._initial(self.partition_offset + pos, n)
            self._invalidate(start, end)
        self._touched.clear()
        self._undo.clear()
        self.applied.clear()

    def swap_out(self, entry: blklog.Entry, mark: int) -> bytes:
        """Put back, for a moment, what `entry`'s range held before it was applied (its undo
        record lies after `mark`); returns its bytes so that swap_in can restore them. For a
        write that no other applied write overlaps."""
        start = entry.offset - self.partition_offset
        old = next(o for i, st, o in self._undo[mark:] if i == entry.index)
        now = bytes(self._map[start:start + entry.length])
        self._map[start:start + entry.length] = old
        self.applied.discard(entry.index)
        self._invalidate(start, start + entry.length)
        return now

    def swap_in(self, entry: blklog.Entry, data: bytes) -> None:
        start = entry.offset - self.partition_offset
        self._map[start:start + entry.length] = data
        self.applied.add(entry.index)
        self._invalidate(start, start + entry.length)

    def mark(self) -> int:
        """A point to undo back to."""
        return len(self._undo)

    def undo_to(self, mark: int) -> None:
        while len(self._undo) > mark:
            index, start, old = self._undo.pop()
            self._map[start:start + len(old)] = old
            self.applied.discard(index)
            self._invalidate(start, start + len(old))

    # -- the image interface the reader uses ----------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        if self._reads is not None:
            self._reads.append((offset, offset + length))
        return bytes(self._map[offset:offset + length])

    def first_data(self, start: int, end: int):
        end = min(end, self.size)
        if start >= end:
            return None
        if self._reads is not None:
            self._reads.append((start, end))
        nonzero = np.flatnonzero(np.frombuffer(self._map, np.uint8, end - start, start))
        return start + int(nonzero[0]) if len(nonzero) else None

    def chunk_crcs(self, offset: int, chunk_size: int, count: int, end: int) -> Optional[list[int]]:
        """CRC32C of chunks [offset + k*chunk_size, ...) for k < count, the last one ending at
        `end`; served from the cache, recomputed where a write changed a chunk."""
        if offset < 0 or end > self.size or count <= 0 or chunk_size <= 0:
            return None if end > self.size else []
        if self._reads is not None:
            self._reads.append((offset, min(end, offset + count * chunk_size)))
        key = (offset, chunk_size)
        if key not in self._crc_cache:
            slots = max(1, -(-(self.size - offset) // chunk_size))
            self._crc_cache[key] = (np.zeros(slots, np.uint32), np.zeros(slots, bool))
        crcs, valid = self._crc_cache[key]
        full = min(count, len(crcs), max(0, (end - offset) // chunk_size))
        for k in np.flatnonzero(~valid[:full]):
            lo = offset + int(k) * chunk_size
            crcs[k] = google_crc32c.value(self._map[lo:lo + chunk_size])
        valid[:full] = True
        out = crcs[:full].tolist()
        for k in range(full, count):  # a short last chunk: not cached
            lo = offset + k * chunk_size
            out.append(google_crc32c.value(self._map[lo:min(lo + chunk_size, end)]))
        return out

    def take_changes(self) -> list[tuple[int, int]]:
        """The ranges whose bytes may have changed since the last call."""
        changes, self._changes = self._changes, []
        return changes

    def record_reads(self) -> None:
        self._reads = []

    def recorded_reads(self) -> list[tuple[int, int]]:
        """The ranges read since record_reads(), merged."""
        reads, self._reads = self._reads or [], None
        return merged(reads)

    def _invalidate(self, start: int, end: int) -> None:
        self._changes.append((start, end))
        for (offset, chunk_size), (_, valid) in self._crc_cache.items():
            first = max(0, (start - offset) // chunk_size)
            last = (end - 1 - offset) // chunk_size
            if last >= 0 and first < len(valid):
                valid[first:last + 1] = False

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._file.close()
            self._map = None
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> "DiskState":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def same_bytes(state: DiskState, image_path: Path, partition_offset: int) -> Optional[int]:
    """Where the state first differs from the image's partition, or None if they are equal."""
    with open(image_path, "rb") as f:
        for pos in range(0, state.size, _STEP):
            n = min(_STEP, state.size - pos)
            actual = os.pread(f.fileno(), n, partition_offset + pos)
            mine = state._map[pos:pos + n]
            if actual != mine:
                a = np.frombuffer(actual, np.uint8)
                b = np.frombuffer(mine, np.uint8)[:len(a)]
                diff = np.flatnonzero(a != b) if len(a) == len(b) else np.array([min(len(a), len(b))])
                return pos + int(diff[0]) if len(diff) else pos + len(a)
    return None


def touches(changes: list[tuple[int, int]], ranges: list[tuple[int, int]], starts: list[int]) -> bool:
    """Whether any of `changes` overlaps any of `ranges` (merged and sorted; `starts`, their
    starts, kept by the caller so a bisection costs no rebuild)."""
    for start, end in changes:
        i = bisect.bisect_right(starts, start) - 1
        if i >= 0 and ranges[i][1] > start:
            return True
        if i + 1 < len(ranges) and ranges[i + 1][0] < end:
            return True
    return False
