"""Dump devices to fuzz, and a bench that mutates a working copy of one and puts it back.

A Device is one dump disk of a run (a real guest's, or a synthetic one from
tests/support/synth.py): the working copy of its run directory and image, where its dump
partition is, and what the reader and the oracles said about it before any mutation (its
extent, its regions, whether it passes).

The bench never touches the pristine copy: every mutation is applied to the working image
and undone after the example from the pristine bytes of the ranges it touched (and the
pristine size, after a truncation), so one copy serves thousands of examples.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

from dumpbed.images import layout as layout_mod
from dumpbed.oracles import ranges as ranges_mod, validate
from dumpbed.reader import dumpfmt
from dumpbed.reader.dumpfmt import HEADER_SIZE, LEADER_OFFSET, PAGE

DIR_HEADER = 64


@dataclass(repr=False)
class Device:
    name: str
    run_dir: Path  # the working copy of the run directory
    image: Path  # the working copy of this device's image (inside run_dir)
    pristine: Path  # the untouched copy of the image, outside run_dir
    part_offset: int
    part_bytes: int
    block_size: int
    original: dumpfmt.Dump  # the reader's view of the pristine image
    image_passes: bool  # validate_image(pristine) passes
    run_passes: bool  # validate_run(pristine run) passes
    role: str = "primary"  # of the run: "primary" or "secondary"
    size: int = 0
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> disk [start, end)
    extent: list[tuple[int, int]] = field(default_factory=list)  # disk ranges of the dump extent
    vouched: list[tuple[int, int]] = field(default_factory=list)  # disk ranges the leader vouches for

    def __repr__(self) -> str:
        return f"Device({self.name})"

    @property
    def complete(self) -> bool:
        return self.original.status == "complete"

    def part(self, start: int, end: int) -> tuple[int, int]:
        return self.part_offset + start, self.part_offset + end

    def read(self, offset: int, length: int, pristine: bool = False) -> bytes:
        with open(self.pristine if pristine else self.image, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def header_bytes(self, which: str = "leader") -> bytes:
        at = LEADER_OFFSET if which == "leader" else self.part_bytes - self.block_size
        return self.read(self.part_offset + at, HEADER_SIZE, pristine=True)


def make_device(name: str, run_dir: Path, work: Path, layout_name: str = "layout.json",
                role: str = "primary") -> Device:
    """Copy run_dir to work/run (once per run) and describe the device whose layout is
    layout_name; the pristine image goes to work/pristine-<image>."""
    work_run = work / "run"
    if not work_run.exists():
        shutil.copytree(run_dir, work_run)
    lay = layout_mod.load(work_run / layout_name)
    image = work_run / lay.image
    pristine = work / f"pristine-{lay.image}"
    if not pristine.exists():
        shutil.copyfile(image, pristine)
    original = dumpfmt.read(pristine, lay.dump_offset, lay.dump_size, lay.block_size)
    dev = Device(
        name=name, run_dir=work_run, image=image, pristine=pristine, part_offset=lay.dump_offset,
        part_bytes=lay.dump_size, block_size=lay.block_size, original=original,
        image_passes=validate.validate_image(image).ok, run_passes=validate.validate_run(work_run).ok,
        role=role, size=os.path.getsize(pristine),
    )
    _describe(dev)
    return dev


def _describe(dev: Device) -> None:
    """Regions of the pristine dump (disk offsets), its extent and what its leader vouches for
    (docs/dump-format.md, "Durability")."""
    d, h = dev.original, dev.original.header
    p, b = dev.part_offset, dev.block_size
    r = dev.regions
    r["anywhere"] = (0, dev.size)
    r["before-partition"] = (0, p)
    r["partition-start"] = dev.part(0, LEADER_OFFSET)
    r["trailer"] = dev.part(dev.part_bytes - b, dev.part_bytes)
    r["after-partition"] = (p + dev.part_bytes, dev.size)
    if h is None:
        dev.regions = {k: v for k, v in r.items() if v[1] > v[0]}
        return
    r["header"] = dev.part(LEADER_OFFSET, LEADER_OFFSET + HEADER_SIZE)
    r["leader-slot"] = dev.part(LEADER_OFFSET + HEADER_SIZE, LEADER_OFFSET + PAGE)
    vouched = [dev.part(LEADER_OFFSET, LEADER_OFFSET + PAGE)]
    if h.slot:
        pos = h.dir_slot_offset
        r["dir-header"] = dev.part(pos, pos + DIR_HEADER)
        pos += DIR_HEADER
        for name, count, size in (("components", len(d.components), 128), ("areas", len(d.areas), 64),
                                  ("calls", len(d.calls), 24), ("violations", len(d.violations), 32)):
            r[name] = dev.part(pos, pos + count * size)
            pos += count * size
        r["dir-tail"] = dev.part(pos, h.dir_slot_offset + h.dir_bytes)
        table = h.table_slot_offset
        r["crc-entries"] = dev.part(table, table + 4 * h.chunks_sealed)
        r["crc-tail"] = dev.part(table + 4 * h.chunks_sealed, table + h.crc_table_bytes)
        other = 3 - h.slot  # an earlier checkpoint's: no leader on disk vouches for it
        r["other-dir"] = dev.part(h.dir_offset + (other - 1) * h.dir_bytes, h.dir_offset + other * h.dir_bytes)
        r["other-table"] = dev.part(h.crc_table_offset + (other - 1) * h.crc_table_bytes,
                                    h.crc_table_offset + other * h.crc_table_bytes)
        vouched += [dev.part(h.dir_slot_offset, h.dir_slot_offset + h.dir_bytes),
                    dev.part(table, table + h.crc_table_bytes), dev.part(h.body_offset, h.sealed_end)]
    r["body"] = dev.part(h.body_offset, h.body_end)
    crash = next((a for a in d.areas if a.name == "crash-record"), None)
    if crash is not None:
        r["crash-record"] = dev.part(crash.disk_offset, crash.disk_offset + crash.length)
    padded = [a for a in d.areas if a.stored_bytes % PAGE]
    if padded:
        a = padded[len(padded) // 2]
        r["area-padding"] = dev.part(a.disk_offset + a.stored_bytes, a.disk_offset + a.padded_length)
    if h.complete:
        r["end-marker"] = dev.part(h.end_offset, h.end_offset + PAGE)
        r["after-end"] = dev.part(h.end_offset + PAGE, dev.part_bytes - b)
        vouched += [r["end-marker"], r["trailer"]]
    elif d.trailer is not None and d.trailer_matches:
        vouched.append(r["trailer"])
    dev.regions = {k: v for k, v in r.items() if v[1] > v[0]}
    dev.extent = [dev.part(s, e) for s, e in d.extent or []]
    dev.vouched = [v for v in vouched if v[1] > v[0]]


class Bench:
    """Mutations of one device's working image, undone by restore()."""

    def __init__(self, dev: Device):
        self.dev = dev
        self.touched: list[tuple[int, int]] = []  # disk ranges written
        self.truncated_to: int | None = None

    # -- mutations -------------------------------------------------------------------------

    def write(self, offset: int, data: bytes) -> None:
        offset = max(0, offset)
        data = data[:max(0, self.size() - offset)]
        if not data:
            return
        self.touched.append((offset, offset + len(data)))
        with open(self.dev.image, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.dev.read(offset, length)

    def size(self) -> int:
        return os.path.getsize(self.dev.image)

    def truncate(self, size: int) -> None:
        size = max(0, min(size, self.size()))
        self.truncated_to = size if self.truncated_to is None else min(self.truncated_to, size)
        os.truncate(self.dev.image, size)

    def flip(self, offset: int, bit: int) -> None:
        old = self.read(offset, 1)
        if old:
            self.write(offset, bytes([old[0] ^ (1 << bit)]))

    def zero(self, offset: int, length: int) -> None:
        self.write(offset, bytes(max(0, min(length, self.size() - offset))))

    def swap(self, a: int, b: int, length: int) -> None:
        da, db = self.read(a, length), self.read(b, length)
        n = min(len(da), len(db))
        self.write(a, db[:n])
        self.write(b, da[:n])

    def reseal_header(self, raw: bytes, trailer: bool) -> bytes:
        """512 header bytes with a fresh CRC, written to the leader (and the trailer block)."""
        raw = bytearray(raw[:HEADER_SIZE])
        struct.pack_into("<I", raw, 508, dumpfmt.crc32c(bytes(raw[:508])))
        p = self.dev.part_offset
        self.write(p + LEADER_OFFSET, bytes(raw))
        if trailer:
            self.write(p + self.dev.part_bytes - self.dev.block_size, bytes(raw))
        return bytes(raw)

    def set_header_field(self, offset: int, fmt: str, value: int, trailer: bool) -> None:
        raw = bytearray(self.dev.header_bytes())
        struct.pack_into("<" + fmt, raw, offset, value)
        self.reseal_header(bytes(raw), trailer)

    def set_directory_field(self, offset: int, fmt: str, value: int, trailer: bool) -> None:
        """A field at a partition offset inside the directory slot; dir_crc and the header CRC
        resealed."""
        p, h = self.dev.part_offset, self.dev.original.header
        raw = bytearray(struct.calcsize("<" + fmt))
        struct.pack_into("<" + fmt, raw, 0, value)
        self.write(p + offset, bytes(raw))
        header = bytearray(self.dev.header_bytes())
        struct.pack_into("<I", header, 92, dumpfmt.crc32c(self.read(p + h.dir_slot_offset, h.dir_bytes)))
        self.reseal_header(bytes(header), trailer)

    # -- what changed ----------------------------------------------------------------------

    def changed_within(self, ranges: list[tuple[int, int]]) -> bool:
        """Whether any byte of the image inside ranges differs from the pristine image (a byte
        cut off by a truncation differs)."""
        pristine_size = self.dev.size
        if self.truncated_to is not None and any(e > self.truncated_to for s, e in ranges):
            return True
        for s, e in self.touched:
            for rs, re_ in ranges:
                lo, hi = max(s, rs), min(e, re_, pristine_size)
                if lo < hi and self.read(lo, hi - lo) != self.dev.read(lo, hi - lo, pristine=True):
                    return True
        return False

    def changed(self) -> bool:
        if self.truncated_to is not None and self.truncated_to < self.dev.size:
            return True
        return self.changed_within([(0, self.dev.size)])

    def touched_only(self, ranges: list[tuple[int, int]]) -> bool:
        """Every changed byte lies inside ranges."""
        outside = ranges_mod.minus([(0, self.dev.size)], ranges_mod.merged(ranges))
        return not self.changed_within(outside)

    # -- undo ------------------------------------------------------------------------------

    def restore(self) -> None:
        with open(self.dev.pristine, "rb") as src, open(self.dev.image, "r+b") as dst:
            if self.truncated_to is not None:
                src.seek(self.truncated_to)
                dst.seek(self.truncated_to)
                shutil.copyfileobj(src, dst, 8 << 20)
            for s, e in self.touched:
                if self.truncated_to is not None and s >= self.truncated_to:
                    continue
                src.seek(s)
                dst.seek(s)
                dst.write(src.read(e - s))
        self.touched.clear()
        self.truncated_to = None
