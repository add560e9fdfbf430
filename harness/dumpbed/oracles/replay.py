"""The dump partition as it stood after some of the writes in the device's write log.

A DiskState is the partition's content before the run (its canary, or the earlier image a
`stale` run started from) with logged writes applied in any order and undone; after all of
them it must equal the final image. It reads like an image, so the reader classifies it as it
would a disk (harness/dumpbed/reader/dumpfmt.py).

No byte is copied to build a state. The state is a map from each block of the partition to
where its bytes are now: the content before the run, or a place in the log file (every write's
data lies there whole). Applying or undoing a write changes that map only, so a sweep over
thousands of states costs what the reader reads, not the body's size each time. A chunk's
CRC is kept by where its bytes come from (a run of the log, or the content before the run):
the same log bytes are CRC'd once, whichever states they appear in.
"""
from __future__ import annotations

import bisect
import math
import os
from pathlib import Path
from typing import Callable, Optional

import google_crc32c
import numpy as np

from dumpbed.capture import blklog
from dumpbed.oracles.ranges import merged
from dumpbed.reader import dumpfmt

_STEP = 8 << 20
_BEFORE = np.iinfo(np.int64).min  # a block that still holds what it held before the run


class DiskState(dumpfmt.Image):
    """Partition-relative: offset 0 is the partition's first byte."""

    def __init__(self, partition_offset: int, partition_bytes: int, initial: Callable[[int, int], bytes],
                 log: blklog.LogData, entries: list[blklog.Entry]):
        self.partition_offset = partition_offset
        self.size = partition_bytes
        self._log = log
        self._initial = initial
        # The block: the largest power of two (up to a page) that every write, the partition's
        # place and its size are multiples of, so that each block has one source.
        g = math.gcd(partition_offset, partition_bytes, 4096)
        for e in entries:
            g = math.gcd(g, e.offset, e.length)
        self._g = max(1, g)
        # Each block's source: its log position minus its partition offset, or _BEFORE.
        self._delta = np.full(-(-partition_bytes // self._g), _BEFORE, np.int64)
        self._touched: list[tuple[int, int]] = []  # ranges writes changed since the last reset
        self._changes: list[tuple[int, int]] = []  # ranges changed since take_changes()
        self._reads: Optional[list[tuple[int, int]]] = None  # ranges read while recording
        self.applied: set[int] = set()  # log entry indexes applied
        self._undo: list[tuple[int, int, np.ndarray]] = []  # (entry index, first block, old sources)
        self._valid: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # the chunks' CRCs now
        self._crc_by_source: dict[tuple, int] = {}  # a chunk's CRC by where its bytes come from

    # -- writes ---------------------------------------------------------------------------

    def _blocks(self, entry: blklog.Entry) -> tuple[int, int, int]:
        start = entry.offset - self.partition_offset
        if start < 0 or start + entry.length > self.size:
            raise ValueError(f"{entry.describe()} lies outside the dump partition")
        return start, start // self._g, (start + entry.length) // self._g

    def apply(self, entry: blklog.Entry, undoable: bool = False) -> None:
        start, b0, b1 = self._blocks(entry)
        if undoable:
            self._undo.append((entry.index, b0, self._delta[b0:b1].copy()))
        self._delta[b0:b1] = entry.data_at - start
        self.applied.add(entry.index)
        self._touched.append((start, start + entry.length))
        self._invalidate(start, start + entry.length)

    def reset(self) -> None:
        """Back to the partition as it was before the run."""
        for start, end in merged(self._touched):
            self._delta[start // self._g:end // self._g] = _BEFORE
            self._invalidate(start, end)
        self._touched.clear()
        self._undo.clear()
        self.applied.clear()

    def swap_out(self, entry: blklog.Entry, mark: int) -> np.ndarray:
        """Put back, for a moment, what `entry`'s range held before it was applied (its undo
        record lies after `mark`); returns what swap_in needs to restore it. For a write that
        no other applied write overlaps."""
        start, b0, b1 = self._blocks(entry)
        old = next(o for i, first, o in self._undo[mark:] if i == entry.index)
        now = self._delta[b0:b1].copy()
        self._delta[b0:b1] = old
        self.applied.discard(entry.index)
        self._invalidate(start, start + entry.length)
        return now

    def swap_in(self, entry: blklog.Entry, now: np.ndarray) -> None:
        start, b0, b1 = self._blocks(entry)
        self._delta[b0:b1] = now
        self.applied.add(entry.index)
        self._invalidate(start, start + entry.length)

    def mark(self) -> int:
        """A point to undo back to."""
        return len(self._undo)

    def undo_to(self, mark: int) -> None:
        while len(self._undo) > mark:
            index, b0, old = self._undo.pop()
            self._delta[b0:b0 + len(old)] = old
            self.applied.discard(index)
            self._invalidate(b0 * self._g, (b0 + len(old)) * self._g)

    # -- the image interface the reader uses ----------------------------------------------

    def _bytes(self, start: int, end: int) -> bytes:
        """The bytes of [start, end) as they are now, one read per run of blocks with one source."""
        g = self._g
        b0, b1 = start // g, -(-end // g)
        deltas = self._delta[b0:b1]
        cuts = np.flatnonzero(deltas[1:] != deltas[:-1]) + 1
        parts = []
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(deltas)]):
            p0, p1 = max(start, (b0 + lo) * g), min(end, (b0 + hi) * g)
            delta = int(deltas[lo])
            if delta == _BEFORE:
                parts.append(self._initial(self.partition_offset + p0, p1 - p0))
            else:
                parts.append(self._log.read_at(p0 + delta, p1 - p0))
        return b"".join(parts)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        end = min(self.size, offset + length)
        if self._reads is not None:
            self._reads.append((offset, end))
        return self._bytes(offset, end)

    def first_data(self, start: int, end: int):
        end = min(end, self.size)
        if start >= end:
            return None
        if self._reads is not None:
            self._reads.append((start, end))
        for pos in range(start, end, _STEP):
            data = self._bytes(pos, min(end, pos + _STEP))
            if data.count(0) != len(data):
                return pos + int(np.flatnonzero(np.frombuffer(data, np.uint8))[0])
        return None

    def chunk_crcs(self, offset: int, chunk_size: int, count: int, end: int) -> Optional[list[int]]:
        """CRC32C of chunks [offset + k*chunk_size, ...) for k < count, the last one ending at
        `end`; kept per chunk until a write changes it, and by source across states."""
        if offset < 0 or end > self.size or count <= 0 or chunk_size <= 0:
            return None if end > self.size else []
        if self._reads is not None:
            self._reads.append((offset, min(end, offset + count * chunk_size)))
        key = (offset, chunk_size)
        if key not in self._valid:
            slots = max(1, -(-(self.size - offset) // chunk_size))
            self._valid[key] = (np.zeros(slots, np.uint32), np.zeros(slots, bool))
        crcs, valid = self._valid[key]
        full = min(count, len(crcs), max(0, (end - offset) // chunk_size))
        for k in np.flatnonzero(~valid[:full]).tolist():
            lo = offset + k * chunk_size
            crcs[k] = self._crc(lo, lo + chunk_size)
        valid[:full] = True
        out = crcs[:full].tolist()
        for k in range(full, count):  # a short last chunk: not kept
            lo = offset + k * chunk_size
            out.append(self._crc(lo, min(lo + chunk_size, end)))
        return out

    def _crc(self, start: int, end: int) -> int:
        source = self._source(start, end)
        crc = self._crc_by_source.get(source)
        if crc is None:
            crc = google_crc32c.value(self._bytes(start, end))
            if source is not None:
                self._crc_by_source[source] = crc
        return crc

    def _source(self, start: int, end: int) -> Optional[tuple]:
        """Where the bytes of [start, end) come from now, as a key of the CRCs kept: a run of the
        log, the content before the run, or blocks of several sources (None: not whole blocks)."""
        g = self._g
        if start % g or end % g:
            return None
        deltas = self._delta[start // g:end // g]
        first = int(deltas[0])
        if (deltas == first).all():
            return ("before", start, end) if first == _BEFORE else ("log", start + first, end - start)
        return ("mixed", start, end, deltas.tobytes())

    def _keep_crcs(self, data: bytes, pos: int, offset: int, chunk_size: int) -> None:
        """Keep the CRC of every whole chunk (of the body at `offset`) that `data`, the bytes at
        `pos` now, holds: the sweep then reads no log byte a second time for them."""
        k = max(0, -(-(pos - offset) // chunk_size))
        while (lo := offset + k * chunk_size) + chunk_size <= pos + len(data):
            source = self._source(lo, lo + chunk_size)
            if source is not None and source not in self._crc_by_source:
                self._crc_by_source[source] = google_crc32c.value(data[lo - pos:lo - pos + chunk_size])
            k += 1

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
        for (offset, chunk_size), (_, valid) in self._valid.items():
            first = max(0, (start - offset) // chunk_size)
            last = (end - 1 - offset) // chunk_size
            if last >= 0 and first < len(valid):
                valid[first:last + 1] = False

    def first_difference(self, image_path: Path, chunks: Optional[tuple[int, int]] = None) -> Optional[int]:
        """Where the state first differs from the image's partition, or None if they are equal.
        With `chunks` (the body's offset and chunk size), the CRCs of the chunks are kept on the
        way, from the bytes this reads anyway."""
        with open(image_path, "rb") as f:
            for pos in range(0, self.size, _STEP):
                n = min(_STEP, self.size - pos)
                actual = os.pread(f.fileno(), n, self.partition_offset + pos)
                mine = self._bytes(pos, pos + n)
                if chunks is not None:
                    self._keep_crcs(mine, pos, *chunks)
                if actual != mine:
                    a = np.frombuffer(actual, np.uint8)
                    b = np.frombuffer(mine, np.uint8)[:len(a)]
                    diff = np.flatnonzero(a != b)
                    return pos + int(diff[0]) if len(diff) else pos + len(a)  # equal up to a short image
        return None

    def close(self) -> None:
        """Nothing to release: the log belongs to the caller."""


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
