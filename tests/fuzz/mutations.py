"""Hypothesis strategies for each family of damage to a dump device.

Each strategy draws a Mutation: plain data with a readable repr (so a failing example names
what was done) and an apply(bench) that does it. Positions are drawn from the device's
regions (docs/dump-format.md's structures: header, directory records, CRC table, body, end
marker, trailer, and what lies outside the dump), so that the small structures are hit as
often as the big body.

Families: bit flips, truncation, zeroed ranges, swapped blocks, a header taken from another
dump, absurd sizes and counts written into header or directory fields with every CRC on the
way resealed (the reader must reason about the values, not only the CRCs), and raw garbage.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import synth
from hypothesis import strategies as st

from dumpbed.reader import dumpfmt
from dumpbed.reader.dumpfmt import DIR_OFFSET, LEADER_OFFSET, PAGE

from .bench import Bench, Device

U32, U64 = (1 << 32) - 1, (1 << 64) - 1


# --------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BitFlips:
    flips: tuple[tuple[int, int], ...]  # (disk offset, bit)
    resealed = False

    def apply(self, bench: Bench) -> None:
        for offset, bit in self.flips:
            bench.flip(offset, bit)


@dataclass(frozen=True)
class Truncate:
    size: int
    resealed = False

    def apply(self, bench: Bench) -> None:
        bench.truncate(self.size)


@dataclass(frozen=True)
class ZeroRange:
    offset: int
    length: int
    resealed = False

    def apply(self, bench: Bench) -> None:
        bench.zero(self.offset, self.length)


@dataclass(frozen=True)
class SwapBlocks:
    a: int
    b: int
    length: int
    resealed = False

    def apply(self, bench: Bench) -> None:
        bench.swap(self.a, self.b, self.length)


@dataclass(frozen=True)
class Garbage:
    offset: int
    data: bytes
    resealed = False

    def apply(self, bench: Bench) -> None:
        bench.write(self.offset, self.data)


@dataclass(frozen=True)
class ForeignHeader:
    source: str  # the device it comes from
    which: str  # "leader" or "trailer" of that device
    to_leader: bool
    to_trailer: bool
    raw: bytes
    resealed = False

    def apply(self, bench: Bench) -> None:
        dev = bench.dev
        if self.to_leader:
            bench.write(dev.part_offset + LEADER_OFFSET, self.raw)
        if self.to_trailer:
            bench.write(dev.part_offset + dev.part_bytes - dev.block_size, self.raw)

    def __repr__(self) -> str:
        return (f"ForeignHeader({self.source} {self.which} -> "
                f"{'leader' if self.to_leader else ''}{'+' if self.to_leader and self.to_trailer else ''}"
                f"{'trailer' if self.to_trailer else ''})")


@dataclass(frozen=True)
class HeaderField:
    """A header field set to a value, the header CRC resealed, written to the leader and (when
    the dump has one, or trailer=True) the trailer."""

    name: str
    offset: int
    fmt: str
    value: int
    trailer: bool
    plausible: bool = False  # a value the page allows there: a forgery no reader can tell
    resealed = True

    def apply(self, bench: Bench) -> None:
        bench.set_header_field(self.offset, self.fmt, self.value, self.trailer)


@dataclass(frozen=True)
class DirectoryField:
    """A directory field (partition offset) set to a value; dir_crc and the header CRC resealed."""

    name: str
    offset: int
    fmt: str
    value: int
    trailer: bool
    plausible: bool = False
    resealed = True

    def apply(self, bench: Bench) -> None:
        bench.set_directory_field(self.offset, self.fmt, self.value, self.trailer)


# --------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------

TARGETED = ("header", "leader-slot", "dir-header", "components", "areas", "calls", "violations", "dir-tail",
            "crc-entries", "crc-tail", "other-dir", "other-table", "body", "crash-record", "area-padding",
            "end-marker", "trailer")


def region_names(dev: Device, names=None) -> list[str]:
    return [n for n in (names or dev.regions) if n in dev.regions]


def position(dev: Device, names=None):
    """A disk offset inside one of the named regions (default: any region)."""
    return st.sampled_from(region_names(dev, names)).flatmap(
        lambda n: st.integers(*dev.regions[n]).map(lambda x, n=n: min(x, dev.regions[n][1] - 1)))


def boundary(dev: Device):
    """The first or last byte of a region, or just past it."""
    edges = sorted({x for s, e in dev.regions.values() for x in (s, e - 1, e) if 0 <= x <= dev.size})
    return st.sampled_from(edges)


# --------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------


def bit_flips(dev: Device, names=None):
    flip = st.tuples(position(dev, names), st.integers(0, 7))
    return st.lists(flip, min_size=1, max_size=8).map(lambda fs: BitFlips(tuple(fs)))


def truncations(dev: Device):
    return st.one_of(boundary(dev), position(dev), st.just(0)).map(Truncate)


def zeroed_ranges(dev: Device):
    lengths = st.one_of(st.integers(1, 64), st.integers(1, 2 * PAGE), st.integers(1, 4 << 20))
    return st.builds(ZeroRange, st.one_of(position(dev, TARGETED), boundary(dev)), lengths)


@st.composite
def swapped_blocks(draw, dev: Device):
    """Two equal runs of blocks inside the partition swapped (aligned like the writer's
    writes, so whole structures trade places)."""
    unit = draw(st.sampled_from([dev.block_size, PAGE, 65536]), label="unit")
    count = draw(st.integers(1, 4), label="units")
    length = unit * count
    lo, hi = dev.part_offset + LEADER_OFFSET, dev.part_offset + dev.part_bytes
    a = draw(position(dev, TARGETED), label="a")
    a = min(max(lo, a - (a - dev.part_offset) % unit), hi - length)
    b = draw(st.one_of(position(dev, TARGETED), st.integers(lo, hi - length)), label="b")
    b = min(max(lo, b - (b - dev.part_offset) % unit), hi - length)
    if abs(a - b) < length:  # overlapping: move b past a
        b = a + length if a + 2 * length <= hi else a - length
    return SwapBlocks(a, b, length)


def garbage(dev: Device):
    return st.builds(Garbage, position(dev), st.binary(min_size=1, max_size=512))


def foreign_headers(dev: Device, pool: list[Device]):
    """The leader or trailer header of another dump (its CRC intact) in place of this one's
    leader, trailer or both."""
    sources = []
    for other in pool:
        if other is dev:
            continue
        for which in ("leader", "trailer"):
            raw = other.header_bytes(which)
            if raw[:8] == dumpfmt.HEADER_MAGIC:
                sources.append((other.name, which, raw))
    where = st.sampled_from([(True, False), (False, True), (True, True)])
    return st.tuples(st.sampled_from(sources), where).map(
        lambda t: ForeignHeader(t[0][0], t[0][1], t[1][0], t[1][1], t[0][2]))


# Header fields that are sizes, counts, offsets (and their neighbours in meaning).
HEADER_SIZE_FIELDS = [
    "block_size", "partition_bytes", "dir_offset", "dir_bytes", "crc_table_offset", "crc_table_bytes",
    "body_offset", "body_bytes", "body_written", "end_offset", "chunk_size", "component_count", "area_count",
    "max_transfer", "min_transfer", "level", "failure_offset", "ram_bytes", "estimate_bytes", "chunks_sealed",
    "generation", "status", "restart_offset", "header_size", "version", "slot",
]
# From the synthetic writer's own table of the spec (not the reader's).
_HEADER_AT = {name: (off, fmt) for off, fmt, name in synth.HEADER_FIELDS if fmt in ("I", "Q")}


def absurd_values(original: int, fmt: str, dev: Device):
    """Values no writer would put there, and some it might: the edges of the field's range,
    the partition's and the image's sizes, near the original, and anything."""
    top = U32 if fmt == "I" else U64 if fmt == "Q" else 255
    p = dev.part_bytes
    special = [0, 1, 2, 511, 512, 4095, 4096, 4097, 65536, DIR_OFFSET, 1 << 31, top, top - 4095, top - 1,
               p, p - PAGE, p - dev.block_size, p + PAGE, dev.size, 1 << 40, 98304, 1 << 20]
    near = [original + d for d in (-65536, -PAGE, -512, -1, 1, 512, PAGE, 65536)] + [2 * original, original << 16]
    values = st.one_of(st.sampled_from([v for v in special + near if 0 <= v <= top]), st.integers(0, top))
    return values.filter(lambda v: v != original)


def ram_dumped(dev: Device) -> int:
    """Bytes the DUMPED RAM and KERNEL components' areas hold (they lie in usable RAM)."""
    d = dev.original
    kinds = {c.index for c in d.components if c.status == dumpfmt.ComponentStatus.DUMPED
             and c.kind in (dumpfmt.ComponentKind.RAM, dumpfmt.ComponentKind.KERNEL)}
    return sum(a.length for a in d.areas if a.component in kinds)


def header_value_plausible(name: str, value: int, dev: Device) -> bool:
    """Whether the page allows value in this header field of this dump, so that a header
    resealed with it is a forgery the image cannot expose (the run may: write-sizes)."""
    h, b = dev.original.header, dev.block_size
    if name == "max_transfer":  # any size a device may report that the writes fit
        return value >= max(b, h.min_transfer)
    if name == "min_transfer":
        return 0 < value <= min(h.max_transfer, b)
    if name == "ram_bytes":  # exactly the RAM dumped: completeness holds RAM areas to it, byte for byte
        return value == ram_dumped(dev)
    if name == "restart_offset":  # a write on the primary, which the secondary's image cannot see
        return h.generation == 2 and (value == 0 or value >= LEADER_OFFSET)
    return False


def directory_value_plausible(kind: str, name: str, index: int, value: int, dev: Device) -> bool:
    """Flags no oracle can refute (CALL_ON_RESTART asked for in generation 1, an area marked
    VOLATILE: both only make the oracles expect less), a FINISHED call's level 0, and a
    TABLE call's entry count."""
    d = dev.original
    if kind == "components" and name == "flags":
        c = d.components[index]
        return value in (c.flags | dumpfmt.ComponentFlag.CALL_ON_RESTART,) and dev.original.header.generation == 1
    if kind == "areas" and name == "flags":
        return value == d.areas[index].flags | dumpfmt.AreaFlag.VOLATILE
    if kind == "calls" and name == "level":
        call = d.calls[index]
        return call.op == dumpfmt.CallOp.DONE and value == 0
    if kind == "calls" and name == "entries":
        # The page ties a TABLE's entry count to nothing else; only the samples' model knows
        # it (docs/fuzzing.md, "Left open").
        return d.calls[index].outcome == dumpfmt.CallOutcome.TABLE
    return False


def header_fields(dev: Device):
    h = dev.original.header
    names = [n for n in HEADER_SIZE_FIELDS if n in _HEADER_AT]

    @st.composite
    def one(draw):
        name = draw(st.sampled_from(names), label="field")
        off, fmt = _HEADER_AT[name]
        value = draw(absurd_values(getattr(h, name), fmt, dev), label="value")
        trailer = dev.original.trailer is not None or draw(st.booleans(), label="trailer too")
        return HeaderField(name, off, fmt, value, trailer, header_value_plausible(name, value, dev))

    return one()


# Directory fields: (record kind, field, offset in the record, format)
DIRECTORY_FIELDS = [
    ("dir-header", "component_count", 8, "I"), ("dir-header", "area_count", 12, "I"),
    ("dir-header", "component_entry_size", 16, "I"), ("dir-header", "area_entry_size", 20, "I"),
    ("dir-header", "call_count", 24, "I"), ("dir-header", "call_entry_size", 28, "I"),
    ("dir-header", "violation_count", 32, "I"), ("dir-header", "violation_entry_size", 36, "I"),
    ("dir-header", "level", 40, "I"), ("dir-header", "generation", 44, "I"),
    ("dir-header", "estimate_bytes", 48, "Q"),
    ("components", "kind", 32, "I"), ("components", "status", 36, "I"), ("components", "first_area", 44, "I"),
    ("components", "area_count", 48, "I"), ("components", "flags", 52, "I"), ("components", "level", 56, "I"),
    ("components", "table_generation", 60, "I"), ("components", "estimate_bytes", 64, "Q"),
    ("components", "dumped_bytes", 72, "Q"), ("components", "staging_bytes", 84, "I"),
    ("components", "global_buffer_bytes", 104, "Q"),
    ("areas", "length", 32, "Q"), ("areas", "disk_offset", 40, "Q"), ("areas", "component", 48, "I"),
    ("areas", "flags", 52, "I"), ("areas", "stored_bytes", 56, "Q"),
    ("calls", "component", 0, "I"), ("calls", "op", 4, "B"), ("calls", "generation", 5, "B"),
    ("calls", "outcome", 6, "B"), ("calls", "entries", 8, "I"), ("calls", "level", 12, "I"),
    ("calls", "value", 16, "Q"),
    ("violations", "component", 20, "I"), ("violations", "op", 24, "I"), ("violations", "generation", 28, "I"),
]
_RECORD_SIZE = {"dir-header": 64, "components": 128, "areas": 64, "calls": 24, "violations": 32}


def directory_fields(dev: Device):
    kinds = [f for f in DIRECTORY_FIELDS if f[0] in dev.regions]
    if not kinds:  # a leader with slot 0 vouches for no directory: its header is what there is
        return header_fields(dev)

    @st.composite
    def one(draw):
        kind, name, off, fmt = draw(st.sampled_from(kinds), label="field")
        start, end = dev.regions[kind]
        size = _RECORD_SIZE[kind]
        index = draw(st.integers(0, (end - start) // size - 1), label="record")
        at = start + index * size + off  # disk offset
        original = struct.unpack_from("<" + fmt, dev.read(at, struct.calcsize(fmt), pristine=True))[0]
        value = draw(absurd_values(original, fmt, dev), label="value")
        trailer = dev.original.trailer is not None or draw(st.booleans(), label="trailer too")
        return DirectoryField(f"{kind}[{index}].{name}", at - dev.part_offset, fmt, value, trailer,
                              directory_value_plausible(kind, name, index, value, dev))

    return one()


def any_mutation(dev: Device, pool: list[Device]):
    return st.one_of(bit_flips(dev), bit_flips(dev, TARGETED), truncations(dev), zeroed_ranges(dev),
                     swapped_blocks(dev), foreign_headers(dev, pool), garbage(dev))


def mutation_lists(dev: Device, pool: list[Device]):
    """One to three unsealed mutations in a row."""
    return st.lists(any_mutation(dev, pool), min_size=1, max_size=3)
