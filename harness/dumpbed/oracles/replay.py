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
from pathlib import Path
from typing import Callable, Optional

import google_crc32c
import numpy as np

from dumpbed.capture import blklog
from dumpbed.errors import DumpbedError
from dumpbed.oracles.ranges import merged
from dumpbed.reader import dumpfmt

_STEP = 8 << 20
_COMPARE_STEP = 2 << 20  # both sides of a step stay in the caches for the compare
_BEFORE = np.iinfo(np.int64).min  # a block that still holds what it held before the run


class DiskState(dumpfmt.Image):
    """Partition-relative: offset 0 is the partition's first byte. `initial(offset, length)`
    gives what the disk held before the run (disk offsets); one with an `into(offset, out)`
    method too (images/canary.py's Canary) fills a buffer in place."""

    def __init__(self, partition_offset: int, partition_bytes: int, initial: Callable[[int, int], bytes],
                 log: blklog.LogData, entries: list[blklog.Entry]):
        self.partition_offset = partition_offset
        self.size = partition_bytes
        self._log = log
        self._initial = initial
        # Into a buffer in place where the initial content can (the canary: images/canary.py).
        self._initial_into = getattr(initial, "into", None) or self._initial_copied_into
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
        # Whether each log entry is applied, by its index: the sweep asks of thousands of states
        # whether a read's hundreds of writers all are, which a mask answers in one gather.
        self.applied = np.zeros(1 + max((e.index for e in entries), default=-1), bool)
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
        self.applied[entry.index] = True
        self._touched.append((start, start + entry.length))
        self._invalidate(start, start + entry.length)

    def reset(self) -> None:
        """Back to the partition as it was before the run."""
        for start, end in merged(self._touched):
            self._delta[start // self._g:end // self._g] = _BEFORE
            self._invalidate(start, end)
        self._touched.clear()
        self._undo.clear()
        self.applied[:] = False

    def swap_out(self, entry: blklog.Entry, mark: int) -> np.ndarray:
        """Put back, for a moment, what `entry`'s range held before it was applied (its undo
        record lies after `mark`); returns what swap_in needs to restore it. For a write that
        no other applied write overlaps."""
        start, b0, b1 = self._blocks(entry)
        old = next(o for i, first, o in self._undo[mark:] if i == entry.index)
        now = self._delta[b0:b1].copy()
        self._delta[b0:b1] = old
        self.applied[entry.index] = False
        self._invalidate(start, start + entry.length)
        return now

    def swap_in(self, entry: blklog.Entry, now: np.ndarray) -> None:
        start, b0, b1 = self._blocks(entry)
        self._delta[b0:b1] = now
        self.applied[entry.index] = True
        self._invalidate(start, start + entry.length)

    def mark(self) -> int:
        """A point to undo back to."""
        return len(self._undo)

    def undo_to(self, mark: int) -> None:
        while len(self._undo) > mark:
            index, b0, old = self._undo.pop()
            self._delta[b0:b0 + len(old)] = old
            self.applied[index] = False
            self._invalidate(b0 * self._g, (b0 + len(old)) * self._g)

    # -- the image interface the reader uses ----------------------------------------------

    def _runs(self, start: int, end: int):
        """(start, end, source) of each run of blocks with one source in [start, end); the source
        as in _delta."""
        g = self._g
        b0, b1 = start // g, -(-end // g)
        deltas = self._delta[b0:b1]
        cuts = (np.flatnonzero(deltas[1:] != deltas[:-1]) + 1).tolist()
        for lo, hi in zip([0, *cuts], [*cuts, len(deltas)]):
            yield max(start, (b0 + lo) * g), min(end, (b0 + hi) * g), int(deltas[lo])

    def _bytes(self, start: int, end: int) -> bytes:
        """The bytes of [start, end) as they are now, one read per run of blocks with one source."""
        return b"".join(self._initial(self.partition_offset + p0, p1 - p0) if delta == _BEFORE
                        else self._log.read_at(p0 + delta, p1 - p0) for p0, p1, delta in self._runs(start, end))

    def _read_into(self, start: int, out: memoryview, log_fd: int) -> None:
        """_bytes(start, start + len(out)) into `out`: the log's runs read straight into it (a
        sweep of the whole partition then allocates no GiB, a step at a time)."""
        for p0, p1, delta in self._runs(start, start + len(out)):
            piece = out[p0 - start:p1 - start]
            if delta == _BEFORE:
                self._initial_into(self.partition_offset + p0, piece)
            elif dumpfmt.pread_into(log_fd, piece, p0 + delta) != len(piece):
                raise DumpbedError(f"{self._log.log.path}: {len(piece)} bytes at log offset {p0 + delta} run past "
                                   f"its end")

    def _initial_copied_into(self, offset: int, out: memoryview) -> None:
        out[:] = self._initial(offset, len(out))

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
        todo = np.flatnonzero(~valid[:full])
        for k, source in zip(todo.tolist(), self._sources(offset, chunk_size, todo)):
            lo = offset + k * chunk_size
            crcs[k] = self._crc_of(source, lo, lo + chunk_size)
        valid[:full] = True
        out = crcs[:full].tolist()
        for k in range(full, count):  # a short last chunk: not kept
            lo = offset + k * chunk_size
            out.append(self._crc(lo, min(lo + chunk_size, end)))
        return out

    def _crc(self, start: int, end: int) -> int:
        return self._crc_of(self._source(start, end), start, end)

    def _crc_of(self, source: Optional[tuple], start: int, end: int) -> int:
        """The CRC of [start, end), whose bytes come from `source` (None: not kept)."""
        crc = self._crc_by_source.get(source)
        if crc is None:
            crc = google_crc32c.value(self._bytes(start, end))
            if source is not None:
                self._crc_by_source[source] = crc
        return crc

    def _source(self, start: int, end: int) -> Optional[tuple]:
        """Where the bytes of [start, end) come from now, as a key of the CRCs kept: a run of the
        log, the content before the run, or blocks of several sources (None: not whole blocks).
        One range of _sources: the keys the sweep adopts and those it looks up are one making."""
        return self._sources(start, end - start, np.zeros(1, np.int64))[0]

    def _sources(self, offset: int, chunk_size: int, ks: np.ndarray) -> list[Optional[tuple]]:
        """_source of each chunk k in `ks` (of the body at `offset`, each whole in the partition),
        for all of them at once: a sweep asks for tens of thousands."""
        g = self._g
        if offset % g or chunk_size % g or offset < 0:
            return [None] * len(ks)
        per = chunk_size // g
        blocks = self._delta[(offset // g + ks * per)[:, None] + np.arange(per)]  # a row per chunk
        heads = blocks[:, 0] if len(ks) else np.zeros(0, np.int64)
        single = (blocks == heads[:, None]).all(axis=1)
        out: list[Optional[tuple]] = []
        for i, (k, head, one) in enumerate(zip(ks.tolist(), heads.tolist(), single.tolist())):
            lo = offset + k * chunk_size
            if not one:
                out.append(("mixed", lo, lo + chunk_size, blocks[i].tobytes()))
            else:
                out.append(("before", lo, lo + chunk_size) if head == _BEFORE else ("log", lo + head, chunk_size))
        return out

    def _whole_chunks(self, start: int, end: int, offset: int, chunk_size: int) -> np.ndarray:
        """The chunks (of the body at `offset`) wholly inside [start, end)."""
        first = max(0, -(-(start - offset) // chunk_size))
        return np.arange(first, max(first, (end - offset) // chunk_size), dtype=np.int64)

    def adopt_crcs(self, offset: int, chunk_size: int, crcs: list[int]) -> None:
        """Keep `crcs`, those of the image's first whole chunks of the body at `offset`, as the
        state's now: only for a state first_difference found equal to the image, whose bytes
        the reader CRC'd already (the sweep then reads no log byte a second time for them)."""
        ks = self._whole_chunks(0, self.size, offset, chunk_size)[:len(crcs)]
        for k, source in zip(ks.tolist(), self._sources(offset, chunk_size, ks)):
            if source is not None:
                self._crc_by_source.setdefault(source, crcs[k])

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

    def first_difference(self, image_path: Path) -> Optional[int]:
        """Where the state first differs from the image's partition, or None if they are equal.

        Both sides are read into two buffers used again at each step: a fresh one for each of
        the hundreds of steps costs the kernel more than the reading (its pages faulted in and
        zeroed anew)."""
        step = max(1, min(_COMPARE_STEP, self.size))
        actual, mine = bytearray(step), bytearray(step)
        with open(image_path, "rb") as f, open(self._log.log.path, "rb") as log:
            for pos in range(0, self.size, step):
                n = min(step, self.size - pos)
                got = dumpfmt.pread_into(f.fileno(), memoryview(actual)[:n], self.partition_offset + pos)
                self._read_into(pos, memoryview(mine)[:n], log.fileno())
                if not dumpfmt.same_bytes(actual, mine, n) or got < n:
                    a = np.frombuffer(actual, np.uint8, got)
                    diff = np.flatnonzero(a != np.frombuffer(mine, np.uint8, got))
                    return pos + int(diff[0]) if len(diff) else pos + got  # equal up to a short image
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
