"""The content oracle: every non-VOLATILE dumped area equals the host's memory snapshot.

The snapshot (snapshot/memory.json + raw region files) is the guest's physical memory at the
crash instant. Areas are compared 2 MiB at a time, read through Dump.read_area (a compressed
area's frames decoded a step at a time), so memory stays bounded.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dumpbed import progress
from dumpbed.errors import DumpbedError
from dumpbed.oracles.base import Check, load_json, make_check, require_int
from dumpbed.reader import dumpfmt, frames

_STEP = 2 << 20  # both sides of a step stay in the caches for the compare


@dataclass
class Region:
    phys: int
    length: int
    path: Path


class Snapshot:
    """Ground-truth guest memory: regions of raw files, read piece by piece."""

    def __init__(self, regions: list[Region]):
        self.regions = sorted(regions, key=lambda r: r.phys)
        self._starts = [r.phys for r in self.regions]
        self._fds: dict[int, int] = {}
        self._files = []
        for prev, cur in zip(self.regions, self.regions[1:]):
            if cur.phys < prev.phys + prev.length:
                raise DumpbedError(f"snapshot regions at 0x{prev.phys:x} and 0x{cur.phys:x} overlap")

    @classmethod
    def load(cls, snapshot_dir: Path) -> "Snapshot":
        meta_path = Path(snapshot_dir) / "memory.json"
        meta = load_json(meta_path, "snapshot memory description")
        if not isinstance(meta, dict) or not isinstance(meta.get("regions"), list):
            raise DumpbedError(f"{meta_path}: expected {{\"regions\": [...]}}")
        regions = []
        for i, r in enumerate(meta["regions"]):
            where = f"{meta_path}: regions[{i}]"
            if not isinstance(r, dict) or not isinstance(r.get("file"), str):
                raise DumpbedError(f"{where} must be an object with phys, length and file")
            phys = require_int(r.get("phys"), f"{where}.phys")
            length = require_int(r.get("length"), f"{where}.length")
            path = Path(snapshot_dir) / r["file"]
            try:
                size = path.stat().st_size
            except OSError:
                raise DumpbedError(f"{where}: snapshot file {path} missing") from None
            if size < length:
                raise DumpbedError(f"{where}: {path} is {size} bytes, the region is {length}")
            if length:
                regions.append(Region(phys, length, path))
        return cls(regions)

    def _fd(self, index: int) -> int:
        if index not in self._fds:
            try:
                f = open(self.regions[index].path, "rb")
            except OSError as e:
                raise DumpbedError(f"{self.regions[index].path}: cannot read: {e.strerror or e}") from None
            self._files.append(f)
            self._fds[index] = f.fileno()
        return self._fds[index]

    def pieces(self, phys: int, length: int):
        """Yield (phys, length, region index or None) covering [phys, phys+length) in order;
        None marks a hole the snapshot does not cover."""
        pos, end = phys, phys + length
        while pos < end:
            i = bisect.bisect_right(self._starts, pos) - 1
            if i >= 0 and pos < self.regions[i].phys + self.regions[i].length:
                n = min(end, self.regions[i].phys + self.regions[i].length) - pos
                yield pos, n, i
            else:
                nxt = self._starts[i + 1] if i + 1 < len(self._starts) else end
                n = min(end, nxt) - pos
                yield pos, n, None
            pos += n

    def read(self, index: int, phys: int, length: int) -> bytes:
        r = self.regions[index]
        data = os.pread(self._fd(index), length, phys - r.phys)
        if len(data) != length:
            raise DumpbedError(f"{r.path}: shorter than its region (changed while validating?)")
        return data

    def read_into(self, index: int, phys: int, out: memoryview) -> None:
        """read() into `out` (len(out) bytes): no new buffer for each step of a GiB."""
        r = self.regions[index]
        if dumpfmt.pread_into(self._fd(index), out, phys - r.phys) != len(out):
            raise DumpbedError(f"{r.path}: shorter than its region (changed while validating?)")

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._fds.clear()
        self._files.clear()

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class ContentStats:
    bytes_checked: int = 0
    bytes_volatile: int = 0
    bytes_unwritten: int = 0  # partial dumps: areas beyond body_written
    bytes_mismatched: int = 0
    bytes_uncovered: int = 0  # non-volatile area bytes the snapshot does not hold
    areas_checked: int = 0
    ram_bytes: int = 0

    @property
    def checked_fraction(self) -> float:
        return self.bytes_checked / self.ram_bytes if self.ram_bytes else 0.0

    def to_dict(self) -> dict:
        return {
            "bytes_checked": self.bytes_checked,
            "bytes_volatile": self.bytes_volatile,
            "bytes_unwritten": self.bytes_unwritten,
            "bytes_mismatched": self.bytes_mismatched,
            "bytes_uncovered": self.bytes_uncovered,
            "areas_checked": self.areas_checked,
            "ram_bytes": self.ram_bytes,
            "checked_fraction": round(self.checked_fraction, 6),
        }


def check_content(
    dump: dumpfmt.Dump, image: dumpfmt.Image, snapshot: Snapshot, ram_bytes: int
) -> tuple[Check, ContentStats]:
    stats = ContentStats(ram_bytes=ram_bytes)
    if dump.status == "none" or dump.header is None:
        return Check("content", False, "no dump to compare (no valid header)"), stats
    if not dump.directory_ok:
        return Check("content", False, "directory invalid: the areas are not trusted, nothing compared"), stats

    problems: list[str] = []
    areas = list(_compared_areas(dump, stats))
    # Two buffers for all the steps: a fresh one for each costs more (its pages faulted in and
    # zeroed) than reading into it.
    buffers = bytearray(_STEP), bytearray(_STEP)
    with progress.task("compare with the snapshot", unit="bytes", total=sum(a.length for a in areas)) as bar:
        for area in areas:  # 2 MiB at a time (bar: the bytes compared)
            problems += _compare_area(dump, image, snapshot, area, stats, bar, buffers)
            stats.areas_checked += 1
    if stats.bytes_checked == 0 and not problems and dump.header.complete:
        problems.append("no non-volatile area was written: nothing compared")
    partial = f"; {stats.bytes_unwritten} bytes beyond body_written not compared" if stats.bytes_unwritten else ""
    ok_detail = (
        f"{stats.areas_checked} areas, {stats.bytes_checked} bytes equal the snapshot "
        f"({stats.checked_fraction:.1%} of {ram_bytes} RAM bytes); {stats.bytes_volatile} volatile bytes "
        f"not compared{partial}"
    )
    return make_check("content", problems, ok_detail), stats


def _compare_area(dump: dumpfmt.Dump, image: dumpfmt.Image, snapshot: Snapshot, area: dumpfmt.Area,
                  stats: ContentStats, bar, buffers: tuple[bytearray, bytearray]) -> list[str]:
    """One area's data (Dump.read_area) against the snapshot, _STEP bytes at a time (read into
    `buffers`, _STEP bytes each); its problems. Compressed data that cannot be read back (a frame
    that breaks a rule) counts as differing."""
    label = f"area {area.index} ({area.name})"
    problems: list[str] = []
    first_bad = None
    area_bad = 0
    for phys, n, region in snapshot.pieces(area.phys_addr, area.length):
        if region is None:
            stats.bytes_uncovered += n
            bar.advance(n)
            problems.append(f"{label}: phys 0x{phys:x}..0x{phys + n:x} is not in the snapshot")
            continue
        for pos in range(0, n, _STEP):
            length = min(_STEP, n - pos)
            at = phys - area.phys_addr + pos  # in the area's data
            try:
                dumped = dump.read_area(image, area, at, length, buffers[0])
            except frames.AreaDataError as e:
                # the rest counts as differing; a mismatch found before it is still named below
                stats.bytes_mismatched += area.length - at
                bar.advance(area.length - at)
                problems.append(f"{e}; its data from byte 0x{at:x} on ({area.length - at} bytes) not compared")
                return problems + _mismatch(dump, area, label, area_bad, first_bad, stats)
            snapshot.read_into(region, phys + pos, memoryview(buffers[1])[:length])
            stats.bytes_checked += length
            bar.advance(length)
            # dumped is a view of buffers[0]: the two buffers compare at memcmp speed
            if len(dumped) == length and dumpfmt.same_bytes(buffers[1], buffers[0], length):
                continue
            dumped, truth = bytes(dumped), bytes(buffers[1][:length])
            present = len(dumped)
            if present < length:  # past the end of a truncated image
                dumped += bytes(length - present)
            diff = np.frombuffer(dumped, np.uint8) != np.frombuffer(truth, np.uint8)
            diff[present:] = True  # missing bytes differ, even where the snapshot holds zeros
            area_bad += int(np.count_nonzero(diff))
            if first_bad is None:
                i = int(np.flatnonzero(diff)[0])
                first_bad = (phys + pos + i, at + i, dumped[i], truth[i])
    return problems + _mismatch(dump, area, label, area_bad, first_bad, stats)


def _mismatch(dump: dumpfmt.Dump, area: dumpfmt.Area, label: str, area_bad: int, first_bad, stats) -> list[str]:
    """The area's differing bytes counted, and its first one named (none: nothing)."""
    if not area_bad:
        return []
    stats.bytes_mismatched += area_bad
    addr, at, got, want = first_bad
    return [f"{label}: first mismatch at phys 0x{addr:x} ({_where(dump, area, at)}): dump 0x{got:02x}, "
            f"snapshot 0x{want:02x}; {area_bad} bytes differ"]


def _where(dump: dumpfmt.Dump, area: dumpfmt.Area, at: int) -> str:
    """Where data byte `at` of an area lies: its disk offset, or in which frame when compressed."""
    if dump.compression:
        return f"data byte 0x{at:x} of the area, in its frame {at // frames.FRAME_DATA}"
    return f"disk offset 0x{dump.partition_offset + area.disk_offset + at:x}"


def _compared_areas(dump: dumpfmt.Dump, stats: ContentStats):
    """The areas whose bytes are compared, in order: neither VOLATILE nor beyond body_written (a
    partial dump); those left out are counted in stats as they go by."""
    for area in dump.areas:
        if area.volatile:
            stats.bytes_volatile += area.length
        elif not dump.area_written(area):
            stats.bytes_unwritten += area.length
        else:
            yield area
