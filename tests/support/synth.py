"""Synthetic dumpbed runs for unit tests.

A second, minimal writer of docs/dump-format.md (version 4; version=3 writes a version 3 dump,
its reserved bytes zero), written from the page with its own
offset tables (it shares no format code with harness/dumpbed/reader/dumpfmt.py), plus the artifacts of a run
(docs/artifacts.md): scenario.json, layout.json, snapshot/, dump.img. The disk itself is
prepared with the harness's own canary and GPT writers, as a real run would.

The image is made by playing the writer's write sequence ("Write order": the first leader,
the body, a checkpoint after each component and at each 64 MiB of body, the final writes or the
failure path) through one Recorder, which applies each write to the image and records it. From
that record come the evidence QEMU keeps of a real run (write_evidence): the write log
(dump.writes, as blklogwrites writes it), qemu-trace.log (each write and flush the device took
and finished, the result channel's bytes after the crash), result.log and timeline.json. So a
synthetic run passes every oracle, write order and crash consistency included, and damage done
to its image afterwards is also a disk its write log does not explain. run.ops is the record
(Io steps); tests rewrite the evidence from an edited copy of it.

    run = synth.make_run(tmp_path)                 # a complete, valid dump of 8 MiB of RAM
    run.flip(run.area_disk_offset("ram-high") + 7) # damage one byte of an area
    run.reseal()                                   # recompute every CRC so only content differs
    run.patch_component(2, status=synth.PENDING)   # rewrite one directory field, resealed

The disk is left as the write order leaves it: the leader names the slot the writer's
alternation gives it (slot 1 for the first checkpoint, then 2, 1, ...; `slot=` chooses), the
other slot holds the checkpoint before it (run.previous; untouched when there was none).

Options give the other shapes a writer leaves: a partial dump (state="in-progress"/"failed":
the leader describes the body up to an area boundary, or exactly with cut_inside=True; the
component being collected PARTIAL with its areas so far; `spill` bytes written after what the
leader describes; slot=0: the first leader only), a dump restarted on the secondary
(generation=2), the sample components of docs/components.md (samples="default"), extra
components with any flags, calls and violations; a compressed dump (compress=True: each area's
data as LZ4 frames, "Compressed bodies", stored RAW when LZ4 does not make a frame smaller; an
area cut inside is listed with its whole frames, as the page's partial area).

How each state ends, and what the scenario then declares (`expect`, `expect_guest_result`, no
faults: harness/dumpbed/oracles/validate.py's run_expectation takes the declaration as it is):

- complete: the final writes, DONE status=complete, QEMU exit status 67; expects complete.
- in-progress: a checkpoint at the point (or the first leader only, slot=0), `spill` body bytes
  after it, then nothing: QEMU ended as a kill ends it (no DONE, exit status null); expects
  partial and no DONE. A point between two of the writer's checkpoints (an area boundary, or
  cut_inside) gets a checkpoint of its own: a writer checkpointing there keeps every rule.
- failed: the device fails the write after the body written (an errno other than ENOSPC; with
  slot=0 the slot write fails too, so the FAILED leader keeps slot 0), then the failure path:
  the slot (flush), the FAILED leader (flush), the trailer (flush); DONE status=failed with the
  header's errno and failure_offset, exit status 69; expects partial and DONE status=failed.
- none: nothing written, no trace or timeline (as before the oracles that read them existed).
"""

from __future__ import annotations

import bisect
import json
import random
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import cramjam
import google_crc32c
import numpy as np

from dumpbed.images import canary, gpt
from dumpbed.images.layout import DiskLayout

KiB = 1 << 10
MiB = 1 << 20
PAGE = 4096
LEADER = 65536
DIR_AT = 69632
# The writer's directory slot: 32 components, 1024 areas, 1024 calls, 16 violations.
WRITER_DIR_BYTES = 98304

REGISTERS = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15", "rip", "rflags", "cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base", "cr0",
    "cr2", "cr3", "cr4", "efer",
]

# Header fields as (offset, struct format, name), typed from the spec's table (the reserved
# bytes 500..507 are left zero; a version 3 header's compression is 0: reserved there).
HEADER_FIELDS = [
    (0, "8s", "magic"), (8, "I", "version"), (12, "I", "header_size"), (16, "I", "block_size"),
    (20, "I", "status"), (24, "16s", "dump_id"), (40, "I", "generation"), (44, "I", "crash_reason"),
    (48, "I", "crash_vector"), (52, "I", "failure"), (56, "Q", "crash_error_code"),
    (64, "Q", "crash_fault_addr"), (72, "Q", "partition_bytes"), (80, "Q", "dir_offset"),
    (88, "I", "dir_bytes"), (92, "I", "dir_crc"), (96, "Q", "crc_table_offset"),
    (104, "I", "crc_table_bytes"), (108, "I", "crc_table_crc"), (112, "Q", "body_offset"),
    (120, "Q", "body_bytes"), (128, "Q", "body_written"), (136, "Q", "end_offset"),
    (144, "I", "chunk_size"), (148, "I", "component_count"), (152, "I", "area_count"),
    (156, "I", "max_transfer"), (160, "I", "min_transfer"), (164, "I", "level"),
    (168, "Q", "failure_offset"), (176, "Q", "ram_bytes"), (184, "Q", "tsc_hz"), (192, "Q", "tsc_crash"),
    (200, "Q", "tsc_done"), (208, "Q", "estimate_bytes"), (472, "I", "chunks_sealed"),
    (476, "I", "device_role"), (480, "I", "restart_error"), (484, "I", "slot"), (488, "Q", "restart_offset"),
    (496, "I", "compression"),
]
REGISTERS_AT = 216
HEADER_CRC_AT = 508

# Directory records: field -> (offset in the record, struct format)
DIR_HEADER_FIELDS = {
    "magic": (0, "8s"), "component_count": (8, "I"), "area_count": (12, "I"), "component_entry_size": (16, "I"),
    "area_entry_size": (20, "I"), "call_count": (24, "I"), "call_entry_size": (28, "I"),
    "violation_count": (32, "I"), "violation_entry_size": (36, "I"), "level": (40, "I"), "generation": (44, "I"),
    "estimate_bytes": (48, "Q"), "zero": (56, "Q"),
}
COMPONENT_FIELDS = {
    "name": (0, "32s"), "kind": (32, "I"), "status": (36, "I"), "reason": (40, "I"), "first_area": (44, "I"),
    "area_count": (48, "I"), "flags": (52, "I"), "level": (56, "I"), "table_generation": (60, "I"),
    "estimate_bytes": (64, "Q"), "dumped_bytes": (72, "Q"), "failure_rv": (80, "i"), "staging_bytes": (84, "I"),
    "failure_vaddr": (88, "Q"), "failure_handle": (96, "Q"), "global_buffer_bytes": (104, "Q"), "zero": (112, "16s"),
}
AREA_FIELDS = {
    "name": (0, "24s"), "phys_addr": (24, "Q"), "length": (32, "Q"), "disk_offset": (40, "Q"),
    "component": (48, "I"), "flags": (52, "I"), "stored_bytes": (56, "Q"),
}
CALL_FIELDS = {
    "component": (0, "I"), "op": (4, "B"), "generation": (5, "B"), "outcome": (6, "B"), "zero": (7, "B"),
    "entries": (8, "I"), "level": (12, "I"), "value": (16, "q"),
}
VIOLATION_FIELDS = {
    "address": (0, "Q"), "rip": (8, "Q"), "error_code": (16, "I"), "component": (20, "I"), "op": (24, "I"),
    "generation": (28, "I"),
}

VERSION = 4
COMPRESSION_NONE, COMPRESSION_LZ4 = 0, 1  # the header's compression
FRAME_DATA, FRAME_HEADER = 65536, 16
FRAME_LZ4, FRAME_RAW = 1, 2
CHECKPOINT = 64 * MiB  # the writer checkpoints at every 64 MiB of body
IN_PROGRESS, COMPLETE, FAILED = 1, 2, 3
NMI, PANIC, EXCEPTION = 1, 2, 3
CRASH_RECORD, KERNEL, RAM, OTHER = 1, 2, 3, 4
DUMPED, EXCLUDED, COMP_FAILED, DISABLED, PENDING, PARTIAL = 1, 2, 3, 4, 5, 6
VOLATILE, STAGED = 1, 2
PRIMARY, SECONDARY = 1, 2
# component flags
CALL_ON_RESTART, GLOBAL_BUFFER, RAS, UNLIMITED = 1 << 0, 1 << 1, 1 << 2, 1 << 3
PRIVATE_STAGING, SHARED_STAGING, SERIALIO, RTNFAILURE = 1 << 4, 1 << 5, 1 << 6, 1 << 7
PIN_VIOLATION, ENDED_EARLY, TABLE_REUSED = 1 << 8, 1 << 9, 1 << 10
# flags known when the component registers (the others come from its calls)
REGISTRATION_FLAGS = CALL_ON_RESTART | GLOBAL_BUFFER | RAS | PRIVATE_STAGING | SHARED_STAGING | SERIALIO
# calls
START, AGAIN, DONE, ESTIMATE = 1, 2, 3, 4
TABLE, NONE, NEGATIVE, FAULT, VALUE, ACK, BAD = 1, 2, 3, 4, 5, 6, 7
NO_COMPONENT = 0xFFFFFFFF
E2BIG, EIO, EFAULT, EINVAL, ENOSPC, ENODATA = 7, 5, 14, 22, 28, 61

FILL_MULTIPLIER = 0x9E3779B97F4A7C15
LOW_RAM_END = 0x9F000  # the snapshot's first region: [0, 636 KiB)
HIGH_RAM_START = MiB  # the second: [1 MiB, ram_bytes)
# QEMU's multiboot loader leaves its information at 0x9500 (flags at +0, bit 6: a memory map;
# mmap_length at +44, mmap_addr at +48) and the memory map at 0x9000 (entries of u32 size 20,
# u64 base, u64 length, u32 type): the usable RAM the dump must cover, in the snapshot.
MBI_AT, MMAP_AT, MBI_FLAG_MMAP = 0x9500, 0x9000, 1 << 6
E820_USABLE, E820_RESERVED = 1, 2
FPU_FILE = "fpu.json"  # the x87/SSE state QEMU reported at the crash (beside registers.json)
SAMPLE_BSS = 0x300000  # where the samples' .bss areas live (inside ram-high)
# Memory LZ4 shrinks (the first half of each page one byte), so a compressed dump has LZ4 frames
# beside the RAW ones of the fill pattern.
COMPRESSIBLE = (0x180000, 0x280000)


def crc32c(data: bytes) -> int:
    return google_crc32c.value(bytes(data))


def up(value: int, multiple: int = PAGE) -> int:
    return (value + multiple - 1) // multiple * multiple


# --------------------------------------------------------------------------------------------
# The sample pattern (docs/components.md), written from the page
# --------------------------------------------------------------------------------------------


def pattern(component: str, k: int, length: int) -> bytes:
    """The first `length` bytes of the pattern stream of area k of component `component`."""
    mask = (1 << 64) - 1
    x = ((crc32c(component.encode()) << 32) | k) ^ 0x9E3779B97F4A7C15
    words = []
    for _ in range(up(length, 8) // 8):
        x ^= x >> 12
        x ^= (x << 25) & mask
        x ^= x >> 27
        words.append((x * 0x2545F4914F6CDD1D) & mask)
    return struct.pack(f"<{len(words)}Q", *words)[:length]


# --------------------------------------------------------------------------------------------
# What the synthetic facility collects
# --------------------------------------------------------------------------------------------


@dataclass
class SArea:
    name: str
    phys: int
    length: int
    volatile: bool = False
    staged: bool = False  # STAGED (and VOLATILE): produced at dump time
    pattern: tuple[str, int] | None = None  # (component name, k): data is the sample pattern
    data: bytes = b""  # the area's data; filled in by make_run
    disk_offset: int = 0
    stored: bytes = b""  # what goes on disk: the data, or its frames (compressed); _lay_out
    frame_ends: tuple[int, ...] = ()  # compressed: where each frame ends in `stored`

    @property
    def stored_bytes(self) -> int:
        return len(self.stored)

    @property
    def flags(self) -> int:
        return (VOLATILE if self.volatile or self.staged else 0) | (STAGED if self.staged else 0)


@dataclass
class SCall:
    op: int
    outcome: int
    entries: int = 0
    value: int = 0
    generation: int = 1
    level: int | None = None  # None: the component's level for RAS calls and ESTIMATE, else 0


@dataclass
class SViolation:
    address: int
    rip: int
    error_code: int
    component: int  # index, or NO_COMPONENT
    op: int
    generation: int = 1


@dataclass
class SComponent:
    name: str
    kind: int
    status: int = DUMPED
    reason: int = 0
    areas: list[SArea] = field(default_factory=list)
    flags: int = 0
    level: int = 0
    estimate: int | None = None  # None: what it dumps (0 for DISABLED)
    calls: list[SCall] | None = None  # START/AGAIN calls; None: one START returning its table
    done_call: bool | None = None  # a DONE / FINISHED call at the end; None: when it gave data
    failure_rv: int = 0
    failure_vaddr: int = 0
    failure_handle: int = 0
    staging_bytes: int = 0
    global_buffer_bytes: int = 0
    restart_asked: bool = False  # CALL_ON_RESTART asked for (not only assumed)
    table_generation: int | None = None  # None: the generation whose calls produced its areas

    def collection_calls(self) -> list[SCall]:
        if self.calls is not None:
            return list(self.calls)
        if self.status == DISABLED:
            return []
        if self.status == EXCLUDED:
            return [SCall(START, NEGATIVE if self.flags & RAS else NONE, value=-1 if self.flags & RAS else 0)]
        return [SCall(START, TABLE, entries=len(self.areas))]

    def gets_done_call(self) -> bool:
        if self.done_call is not None:
            return self.done_call
        return self.status in (DUMPED, COMP_FAILED) and bool(self.areas) and not any(
            c.outcome in (NEGATIVE, FAULT) for c in self.collection_calls())

    def estimate_bytes(self) -> int:
        if self.estimate is not None:
            return self.estimate
        return 0 if self.status == DISABLED else sum(a.length for a in self.areas)

    def pending_flags(self) -> int:
        """Its flags before it is reached: what registration said."""
        flags = self.flags & REGISTRATION_FLAGS
        if not self.restart_asked and not self.flags & (PRIVATE_STAGING | SHARED_STAGING) and self.flags & UNLIMITED:
            flags &= ~CALL_ON_RESTART  # assumed only once it returns an unlimited table
        return flags


@dataclass
class Options:
    block_size: int = 512
    ram_bytes: int = 8 * MiB
    crash: str = "nmi"
    state: str = "complete"  # complete | in-progress | failed | none
    body_written: int | None = None  # partial: the body the leader describes, cut at the last area
    # boundary at or below (cut_inside: exactly, the area in progress listed with what was written);
    # default half the body
    cut_inside: bool = False
    spill: int = 0  # partial: body bytes written past what the leader describes (the leader lags)
    failure: int = EIO  # failed: the errno
    slot: int | None = None  # the slot the leader names; None: as the writer's alternation gives;
    # 0 (partial only): the first leader, nothing else vouched for
    canary_seed: int = 0x5EED1234
    fill_seed: int = 0x0123456789ABCDEF
    generation: int = 1  # 2: the dump restarted on the secondary
    restart_reached: int = 2  # generation 2: components 0..N had their calls in generation 1
    level: int = 3
    samples: str | list[str] | None = None  # "default", "all" or names: docs/components.md's samples
    seed: int = 1  # everything else random (dump id, registers, low RAM, volatile data)
    extra_components: list = field(default_factory=list)  # SComponents appended to the directory
    violations: list = field(default_factory=list)  # SViolations
    dir_bytes: int = WRITER_DIR_BYTES
    compress: bool = False  # the body holds LZ4 frames (header compression 1)
    version: int = VERSION  # 3: a version 3 dump (no compression, reserved bytes zero)


@dataclass(frozen=True)
class Point:
    """A state a leader can vouch for: `body` bytes of body described; the first `done`
    components finished (their final entries), the next being collected (PARTIAL with its areas
    so far, the last one cut where the body ends; PENDING if it has none yet), the rest PENDING."""

    body: int
    done: int
    status: int = IN_PROGRESS

    @property
    def key(self) -> tuple[int, int, bool]:
        """Order of the writes: the final ones (COMPLETE) after every checkpoint."""
        return (self.body, self.done, self.status == COMPLETE)


@dataclass
class Run:
    dir: Path
    image: Path
    layout: DiskLayout
    options: Options
    part_offset: int
    part_bytes: int
    block_size: int
    header: dict  # the leader's fields
    registers: list[int]  # 32 values, header order
    components: list[SComponent]
    violations: list[SViolation] = field(default_factory=list)
    dir_bytes: int = 0
    table_offset: int = 0  # crc_table_offset: table slot 1
    table_bytes: int = 0
    body_offset: int = 0
    body_bytes: int = 0  # the whole body; header body_bytes is 0 unless COMPLETE
    end_offset: int = 0
    chunk_size: int = 0
    point: Point = Point(0, 0)  # what the leader vouches for
    previous: Point | None = None  # the checkpoint before it, in the other slot (None: never written)
    ops: list = field(default_factory=list, repr=False)  # the dump's I/O and result lines in order (Io)

    # -- addressing -----------------------------------------------------------------------

    @property
    def areas(self) -> list[SArea]:
        return [a for c in self.components for a in c.areas]

    @property
    def slot(self) -> int:
        return self.header["slot"]

    @property
    def listed_areas(self) -> list[SArea]:
        return self.areas_at(self.point)

    @property
    def listed(self) -> int:
        return len(self.listed_areas)

    def area(self, name: str) -> SArea:
        return next(a for a in self.areas if a.name == name)

    def component(self, name: str) -> SComponent:
        return next(c for c in self.components if c.name == name)

    def area_disk_offset(self, name: str) -> int:
        """Disk (image) offset of an area's first data byte."""
        return self.part_offset + self.area(name).disk_offset

    @property
    def leader_at(self) -> int:
        return self.part_offset + LEADER

    @property
    def trailer_at(self) -> int:
        return self.part_offset + self.part_bytes - self.block_size

    @property
    def dump_id(self) -> bytes:
        return self.header["dump_id"]

    @property
    def complete(self) -> bool:
        return self.header["status"] == COMPLETE

    @property
    def body_end(self) -> int:
        return self.body_offset + self.header["body_written"]

    @property
    def nchunks(self) -> int:
        return -(-self.body_bytes // self.chunk_size)

    def dir_slot_at(self, slot: int) -> int:
        """Partition offset of directory slot 1 or 2."""
        return DIR_AT + (slot - 1) * self.dir_bytes

    def table_slot_at(self, slot: int) -> int:
        """Partition offset of CRC table slot 1 or 2."""
        return self.table_offset + (slot - 1) * self.table_bytes

    @property
    def dir_at(self) -> int:
        """Partition offset of the directory slot the leader names (slot 1's for slot 0)."""
        return self.dir_slot_at(self.slot or 1)

    @property
    def table_at(self) -> int:
        """Partition offset of the table slot the leader names (slot 1's for slot 0)."""
        return self.table_slot_at(self.slot or 1)

    def component_entry_at(self, index: int) -> int:
        """Partition offset of component entry `index` in the leader's directory."""
        return self.dir_at + 64 + 128 * index

    def area_entry_at(self, index: int) -> int:
        """Partition offset of area entry `index` in the leader's directory."""
        return self.dir_at + 64 + 128 * len(self.components) + 64 * index

    def call_entry_at(self, index: int) -> int:
        return self.area_entry_at(self.listed) + 24 * index

    def violation_entry_at(self, index: int) -> int:
        return self.call_entry_at(len(self.call_records())) + 32 * index

    def area_index(self, name: str) -> int:
        return [a.name for a in self.areas].index(name)

    # -- the states a leader vouches for ----------------------------------------------------

    def component_ends(self) -> list[int]:
        """Body bytes written when each component is finished."""
        ends, pos = [], 0
        for c in self.components:
            pos += sum(up(a.stored_bytes) for a in c.areas)
            ends.append(pos)
        return ends

    def point_at(self, body: int, status: int = IN_PROGRESS) -> Point:
        """The state at `body` bytes of body: every component whose areas all lie within it is
        finished (those without areas after it too)."""
        return Point(body, sum(1 for end in self.component_ends() if end <= body), status)

    def checkpoints(self) -> list[Point]:
        """Every checkpoint of the write order, in order: after each component, and at each
        64 MiB of body inside an area."""
        ends = self.component_ends()
        points = {Point(end, i + 1) for i, end in enumerate(ends)}
        points |= {self.point_at(m) for m in range(CHECKPOINT, self.body_bytes, CHECKPOINT) if m not in ends}
        return sorted(points, key=lambda p: p.key)

    def areas_at(self, point: Point) -> list[SArea]:
        """The areas a directory at `point` lists; the last cut where the described body ends
        (compressed: its stored bytes so far, its length the data of its whole frames)."""
        end = self.body_offset + point.body
        listed = []
        for a in self.areas:
            if a.disk_offset >= end:
                break
            listed.append(a if a.disk_offset + up(a.stored_bytes) <= end else cut_area(a, end - a.disk_offset))
        return listed

    # -- raw access ------------------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        with open(self.image, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def write(self, offset: int, data: bytes) -> None:
        with open(self.image, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def flip(self, offset: int, mask: int = 0xFF) -> None:
        """XOR one byte of the image (at a disk offset)."""
        old = self.read(offset, 1)
        self.write(offset, bytes([old[0] ^ mask]))

    def write_part(self, offset: int, data: bytes) -> None:
        self.write(self.part_offset + offset, data)

    def read_part(self, offset: int, length: int) -> bytes:
        return self.read(self.part_offset + offset, length)

    # -- damage: rewrite one record field, resealed -----------------------------------------

    def patch(self, offset: int, fmt: str, value) -> None:
        """Pack value at a partition offset of the directory, then reseal every CRC."""
        raw = bytearray(struct.calcsize("<" + fmt))
        struct.pack_into("<" + fmt, raw, 0, value)
        self.write_part(offset, bytes(raw))
        self.reseal()

    def _patch_record(self, base: int, table: dict, fields: dict) -> None:
        for name, value in fields.items():
            off, fmt = table[name]
            if isinstance(value, str):
                value = value.encode()
            raw = bytearray(struct.calcsize("<" + fmt))
            struct.pack_into("<" + fmt, raw, 0, value)
            self.write_part(base + off, bytes(raw))
        self.reseal()

    def patch_dir_header(self, **fields) -> None:
        self._patch_record(self.dir_at, DIR_HEADER_FIELDS, fields)

    def patch_component(self, index: int, **fields) -> None:
        self._patch_record(self.component_entry_at(index), COMPONENT_FIELDS, fields)

    def patch_area(self, index: int, **fields) -> None:
        self._patch_record(self.area_entry_at(index), AREA_FIELDS, fields)

    def patch_call(self, index: int, **fields) -> None:
        self._patch_record(self.call_entry_at(index), CALL_FIELDS, fields)

    def patch_violation(self, index: int, **fields) -> None:
        self._patch_record(self.violation_entry_at(index), VIOLATION_FIELDS, fields)

    # -- the writer ------------------------------------------------------------------------

    def header_bytes(self) -> bytes:
        return pack_header(self.header, self.registers)

    def write_leader(self) -> None:
        self.write_part(LEADER, self.header_bytes() + bytes(PAGE - 512))

    def write_trailer(self) -> None:
        self.write_part(self.part_bytes - self.block_size, self.header_bytes() + bytes(self.block_size - 512))

    def set_header(self, **fields) -> None:
        """Change header fields and rewrite the leader, and the trailer when the state has one."""
        self.header.update(fields)
        self.write_leader()
        if self.options.state in ("complete", "failed"):
            self.write_trailer()

    def header_at(self, point: Point, slot: int) -> dict:
        """The leader that vouches for `point` in `slot` (its CRCs as the slot is on disk now)."""
        h = dict(self.header, status=point.status, slot=slot, failure=0, failure_offset=0)
        complete = point.status == COMPLETE
        h.update(body_bytes=self.body_bytes if complete else 0, end_offset=self.end_offset if complete else 0)
        if slot == 0:
            return dict(h, dir_crc=0, crc_table_crc=0, component_count=0, area_count=0, body_written=0,
                        chunks_sealed=0)
        return dict(
            h, body_written=point.body, component_count=len(self.components), area_count=len(self.areas_at(point)),
            chunks_sealed=self.nchunks if complete else point.body // self.chunk_size,
            dir_crc=crc32c(self.read_part(self.dir_slot_at(slot), self.dir_bytes)),
            crc_table_crc=crc32c(self.read_part(self.table_slot_at(slot), self.table_bytes)),
        )

    def previous_leader(self) -> bytes:
        """The leader of the checkpoint in the other slot (IN_PROGRESS): what the leader slot
        held before the leader on disk now was written."""
        return pack_header(self.header_at(self.previous, 3 - self.slot), self.registers)

    def component_entries(self, point: Point | None = None) -> list[dict]:
        """Every component entry as a directory at `point` (default: the leader's) lists it:
        final for the components done; PARTIAL with its areas so far for the one being
        collected; PENDING for those not reached (DISABLED ones stay DISABLED)."""
        point = point or self.point
        listed = self.areas_at(point)  # a prefix of the areas, in component order
        entries, first, start = [], 0, 0
        for i, c in enumerate(self.components):
            areas = listed[start:start + len(c.areas)]
            start += len(c.areas)
            entry = dict(
                name=c.name, kind=c.kind, status=c.status, reason=c.reason, first_area=first, area_count=len(areas),
                flags=c.flags, level=c.level, table_generation=self.table_generation(c) if areas else 0,
                estimate_bytes=c.estimate_bytes(), dumped_bytes=sum(a.length for a in areas),
                failure_rv=c.failure_rv, staging_bytes=c.staging_bytes, failure_vaddr=c.failure_vaddr,
                failure_handle=c.failure_handle, global_buffer_bytes=c.global_buffer_bytes,
            )
            if i >= point.done and c.status != DISABLED:
                unset = dict(reason=0, failure_rv=0, failure_vaddr=0, failure_handle=0)
                if areas:  # being collected: its areas so far, what only its end decides not yet known
                    entry.update(status=PARTIAL, flags=c.flags & ~(RTNFAILURE | PIN_VIOLATION | ENDED_EARLY),
                                 **unset)
                else:
                    entry.update(status=PENDING, flags=c.pending_flags(), **unset)
            entries.append(entry)
            first += len(areas)
        return entries

    def table_generation(self, c: SComponent) -> int:
        if c.table_generation is not None:
            return c.table_generation
        if self.header["generation"] == 2 and c.flags & TABLE_REUSED:
            return 1
        return self.header["generation"]

    def call_records(self, point: Point | None = None) -> list[dict]:
        """ESTIMATE calls (generation 1), each reached component's calls in order (generation 1,
        then 2 for a restart), and the DONE calls of a finished dump."""
        point = point or self.point
        level = self.header["level"]
        entries = self.component_entries(point)
        records = []

        def add(i: int, call: SCall, generation: int) -> None:
            c = self.components[i]
            lvl = call.level
            if lvl is None:  # ESTIMATE passes the dump level; RAS calls the component's level
                lvl = level if call.op == ESTIMATE else c.level if c.flags & RAS else 0
            records.append(dict(component=i, op=call.op, generation=generation, outcome=call.outcome,
                                entries=call.entries, level=lvl, value=call.value))

        for i, c in enumerate(self.components):
            if c.status != DISABLED:
                add(i, SCall(ESTIMATE, VALUE, value=c.estimate_bytes()), 1)
        generation = self.header["generation"]
        if generation == 2:
            for i, c in enumerate(self.components[:self.options.restart_reached + 1]):
                for call in c.collection_calls():
                    add(i, call, 1)
        for i, (c, e) in enumerate(zip(self.components, entries)):
            if e["status"] == PENDING:
                break
            collecting = e["status"] == PARTIAL
            if self.called_in(i, generation):
                for call in c.collection_calls():
                    if collecting and call.outcome in (NEGATIVE, FAULT, NONE):
                        continue  # its data has not ended yet
                    add(i, replace(call, generation=generation), generation)
            if collecting:
                break
        if point.status == COMPLETE:
            for i, c in enumerate(self.components):
                if c.gets_done_call():
                    add(i, SCall(DONE, ACK), generation)
        return records

    def called_in(self, index: int, generation: int) -> bool:
        """Routines are called once per dump: in generation 2 only those generation 1 did not
        reach, and those called on restart (unless a call of theirs faulted)."""
        reached_before = generation == 2 and index <= self.options.restart_reached
        return not reached_before or _called_on_restart(self.components[index])

    def violation_records(self, point: Point | None = None) -> list[SViolation]:
        """The violations of the components reached so far (and of the facility)."""
        entries = self.component_entries(point)
        return [v for v in self.violations
                if v.component == NO_COMPONENT or entries[v.component]["status"] != PENDING]

    def directory_bytes(self, point: Point | None = None) -> bytes:
        point = point or self.point
        comps, areas = self.component_entries(point), self.areas_at(point)
        calls, violations = self.call_records(point), self.violation_records(point)
        raw = bytearray(self.dir_bytes)
        h = self.header
        struct.pack_into("<8sIIIIIIIIIIQ", raw, 0, b"DBEDDIR\0", len(comps), len(areas), 128, 64, len(calls), 24,
                         len(violations), 32, h["level"], h["generation"], h["estimate_bytes"])
        pos = 64
        for e in comps:
            values = [e[name] for name in COMPONENT_FIELDS if name != "zero"]
            values[0] = values[0].encode()
            struct.pack_into("<32sIIIIIIIIQQiIQQQ", raw, pos, *values)
            pos += 128
        owner = [i for i, c in enumerate(self.components) for _ in c.areas]
        stored = lambda a: a.stored_bytes if h["version"] >= 4 else 0  # reserved in version 3
        for i, a in enumerate(areas):
            struct.pack_into("<24sQQQIIQ", raw, pos, a.name.encode(), a.phys, a.length, a.disk_offset, owner[i], a.flags,
                             stored(a))
            pos += 64
        for r in calls:
            struct.pack_into("<IBBBBIIq", raw, pos, r["component"], r["op"], r["generation"], r["outcome"], 0,
                             r["entries"], r["level"], r["value"])
            pos += 24
        for v in violations:
            struct.pack_into("<QQIIII", raw, pos, v.address, v.rip, v.error_code, v.component, v.op, v.generation)
            pos += 32
        assert pos <= self.dir_bytes
        return bytes(raw)

    def sealed(self) -> int:
        return self.header["chunks_sealed"]

    def chunk_table(self, point: Point | None = None) -> bytes:
        """A table slot at `point`: the CRCs of its sealed chunks as the body is on disk now,
        zeros after."""
        point = point or self.point
        complete = point.status == COMPLETE
        end = self.end_offset if complete else self.body_offset + point.body
        crcs = []
        for k in range(self.nchunks if complete else point.body // self.chunk_size):
            off = self.body_offset + k * self.chunk_size
            crcs.append(crc32c(self.read_part(off, min(self.chunk_size, end - off))))
        table = struct.pack(f"<{len(crcs)}I", *crcs)
        return table + bytes(self.table_bytes - len(table))

    def end_marker(self) -> bytes:
        raw = bytearray(PAGE)
        struct.pack_into(
            "<8sII16sQII", raw, 0, b"DBEDEND\0", self.header["version"], self.header["generation"], self.header["dump_id"],
            self.body_bytes, self.nchunks, self.header["crc_table_crc"],
        )
        struct.pack_into("<I", raw, PAGE - 4, crc32c(raw[:PAGE - 4]))
        return bytes(raw)

    def write_slot(self, point: Point, slot: int) -> None:
        """Table and directory slot `slot` as a checkpoint (or the final writes) at `point`."""
        self.write_part(self.table_slot_at(slot), self.chunk_table(point))
        self.write_part(self.dir_slot_at(slot), self.directory_bytes(point))

    def write_table(self) -> None:
        """The leader's table slot from the body on disk now, and its CRC in the header."""
        table = self.chunk_table()
        self.header["crc_table_crc"] = crc32c(table)
        self.write_part(self.table_at, table)

    def reseal(self) -> None:
        """Recompute the directory CRC, the chunk table, the end marker and both headers from
        what is on disk, so that CRC-based checks pass whatever was changed."""
        if self.slot:
            self.header["dir_crc"] = crc32c(self.read_part(self.dir_at, self.dir_bytes))
            self.write_table()
        if self.complete:
            self.write_part(self.end_offset, self.end_marker())
        self.set_header()

    def crash_record(self) -> bytes:
        h = self.header
        raw = bytearray(1024)
        struct.pack_into(
            "<8sIIIIQQQ", raw, 0, b"DBCRASH\0", h["version"], h["crash_reason"], h["crash_vector"], 0,
            h["crash_error_code"], h["crash_fault_addr"], h["tsc_crash"],
        )
        struct.pack_into("<32Q", raw, 48, *self.registers)
        raw[512:1024] = random.Random(self.options.seed + 7).randbytes(512)  # FXSAVE image
        return bytes(raw)

    def set_crash_record(self, raw: bytes) -> None:
        """A new crash record in place (its stored form: compressed, its frames, which must keep
        their room), the directory rewritten; reseal() then makes the CRCs agree."""
        a = self.area("crash-record")
        room = up(a.stored_bytes)
        a.data = raw
        a.stored, a.frame_ends = frames_of(raw) if self.options.compress else (raw, ())
        assert up(a.stored_bytes) == room, "synth: the crash record's frames no longer fit its room"
        self.write_part(a.disk_offset, a.stored.ljust(room, b"\0"))
        if self.slot:
            self.write_part(self.dir_at, self.directory_bytes())

    def replay(self) -> None:
        """Play the writer's writes again with the areas' data as it is now (a test changed an
        area's `data`, or the crash record), and write the evidence anew: the run stays one a
        writer made, every oracle sees it so (reseal() instead only makes the CRCs agree with
        bytes changed under the write log). The disk starts again from its canary: compressed,
        the areas may now take other room."""
        canary.fill(self.image, self.layout)
        gpt.write(self.image, self.layout)
        _lay_out(self)
        _write(self, self.options)


def pack_header(header: dict, registers: list[int]) -> bytes:
    """512 header bytes from a dict of every HEADER_FIELDS name, with a fresh CRC."""
    raw = bytearray(512)
    for off, fmt, name in HEADER_FIELDS:
        struct.pack_into("<" + fmt, raw, off, header[name])
    struct.pack_into("<32Q", raw, REGISTERS_AT, *registers)
    struct.pack_into("<I", raw, HEADER_CRC_AT, crc32c(raw[:HEADER_CRC_AT]))
    return bytes(raw)


# --------------------------------------------------------------------------------------------
# The sample components of docs/components.md
# --------------------------------------------------------------------------------------------

SAMPLE_ORDER = ["smp-classic", "smp-unlimited", "smp-global", "ras-levels", "ras-private", "ras-shared",
                "smp-rtnfail", "ras-negative", "ras-early", "ras-off", "smp-pinviolator"]
SHORT = {"smp-classic": "cls", "smp-unlimited": "unl", "smp-global": "glb", "ras-levels": "lvl",
         "ras-private": "prv", "ras-shared": "shr", "smp-rtnfail": "rtf", "ras-negative": "neg",
         "ras-early": "erl", "ras-off": "off", "smp-pinviolator": "pin"}


def sample_names(samples: str | list[str]) -> list[str]:
    if isinstance(samples, list):
        return [n for n in SAMPLE_ORDER if n in samples]
    if samples == "all":
        return list(SAMPLE_ORDER)
    if samples == "default":
        return [n for n in SAMPLE_ORDER if n != "smp-pinviolator"]
    if samples == "none":
        return []
    return [n for n in SAMPLE_ORDER if n in samples.split(",")]


class _Placer:
    """Addresses for the samples' .bss areas and their staging buffers (the pinned pool)."""

    def __init__(self, ram_bytes: int):
        self.bss = SAMPLE_BSS
        self.pool = ram_bytes - 2 * MiB

    def in_bss(self, length: int) -> int:
        at = self.bss
        self.bss = up(at + length, 64)
        return at

    def in_pool(self, length: int) -> int:
        at = self.pool
        self.pool = up(at + length)
        return at


def _tables(areas: list[SArea], per_table: int, ras: bool, level: int) -> list[SCall]:
    """START and AGAIN calls handing out `areas` per_table at a time, then the AGAIN with no more."""
    calls = []
    for i in range(0, len(areas), per_table):
        calls.append(SCall(START if i == 0 else AGAIN, TABLE, entries=len(areas[i:i + per_table])))
    calls.append(SCall(AGAIN, NONE))
    return calls


def sample_components(names: list[str], level: int, ram_bytes: int) -> tuple[list[SComponent], list]:
    """The samples as docs/components.md describes them at level `level`, and the pinning
    violations they cause (component indices relative to the first sample)."""
    place = _Placer(ram_bytes)
    comps, violations = [], []
    v = level

    def bss_areas(name: str, lengths: list[int]) -> list[SArea]:
        return [SArea(f"{SHORT[name]}.{k}", place.in_bss(n), n, pattern=(name, k)) for k, n in enumerate(lengths)]

    def staged_area(name: str, length: int) -> SArea:
        return SArea(f"{SHORT[name]}.0", place.in_pool(length), length, staged=True, pattern=(name, 0))

    for name in names:
        if name == "smp-classic":
            c = SComponent(name, OTHER, areas=bss_areas(name, [4096, 10000, 512]))
        elif name == "smp-unlimited":
            areas = bss_areas(name, [64 + 8 * (k % 16) for k in range(300)])
            c = SComponent(name, OTHER, areas=areas, flags=UNLIMITED | CALL_ON_RESTART,
                           calls=_tables(areas, 16, False, 0))
        elif name == "smp-global":
            c = SComponent(name, OTHER, areas=[staged_area(name, 12288)], flags=GLOBAL_BUFFER | CALL_ON_RESTART,
                           global_buffer_bytes=16384, restart_asked=True)
        elif name == "ras-levels":
            c = SComponent(name, OTHER, areas=bss_areas(name, [1024 * (k + 1) for k in range(v + 1)]),
                           flags=RAS | SERIALIO, level=v)
        elif name == "ras-private":
            c = SComponent(name, OTHER, areas=[staged_area(name, 16384 * (v + 1))],
                           flags=RAS | PRIVATE_STAGING | CALL_ON_RESTART, level=v, staging_bytes=262144)
        elif name == "ras-shared":
            areas = bss_areas(name, [2048] * (4 * (v + 1)))
            c = SComponent(name, OTHER, areas=areas, flags=RAS | SHARED_STAGING | UNLIMITED | CALL_ON_RESTART,
                           level=v, staging_bytes=65536, calls=_tables(areas, 3, True, v))
        elif name == "smp-rtnfail":
            c = SComponent(name, OTHER, COMP_FAILED, EIO, areas=bss_areas(name, [4096]), flags=RTNFAILURE,
                           failure_rv=-5, failure_vaddr=0xFFFF800000ABC000, failure_handle=0xD0B5EDF00D)
        elif name == "ras-negative":
            c = SComponent(name, OTHER, EXCLUDED, ENODATA, flags=RAS, level=v, estimate=4096,
                           calls=[SCall(START, NEGATIVE, value=-1)])
        elif name == "ras-early":
            areas = bss_areas(name, [4096] * 8)
            c = SComponent(name, OTHER, areas=areas, flags=RAS | UNLIMITED | ENDED_EARLY | CALL_ON_RESTART, level=v,
                           estimate=12 * 4096, calls=[SCall(START, TABLE, 4), SCall(AGAIN, TABLE, 4),
                                                      SCall(AGAIN, NEGATIVE, value=-2)])
        elif name == "ras-off":
            c = SComponent(name, OTHER, DISABLED, flags=RAS)
        elif name == "smp-pinviolator":
            c = SComponent(name, OTHER, COMP_FAILED, EFAULT, flags=PIN_VIOLATION, estimate=4096,
                           calls=[SCall(START, FAULT)])
            violations.append(SViolation(0x7000, 0xFFFFFFFF80104321, 0x3, len(comps), START))
        else:
            raise ValueError(f"synth: no sample {name!r}")
        comps.append(c)
    return comps, violations


# --------------------------------------------------------------------------------------------
# A whole run
# --------------------------------------------------------------------------------------------


def _fill_words(start: int, end: int, seed: int) -> bytes:
    """The guest's RAM fill pattern (guest-interface.md) for [start, end), 8-byte aligned."""
    addrs = np.arange(start, end, 8, dtype=np.uint64)
    with np.errstate(over="ignore"):
        words = (addrs * np.uint64(FILL_MULTIPLIER)) ^ np.uint64(seed)
    return words.astype("<u8").tobytes()


def usable_ram(components: list[SComponent]) -> list[tuple[int, int]]:
    """The usable regions of the synthetic machine's memory map: exactly what its RAM and KERNEL
    components' areas cover (docs/dump-format.md, "Completeness"), merged."""
    merged: list[list[int]] = []
    for start, end in sorted((a.phys, a.phys + a.length) for c in components if c.kind in (RAM, KERNEL)
                             for a in c.areas):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def loader_memory_map(usable: list[tuple[int, int]]) -> tuple[bytes, bytes]:
    """(the multiboot information, the memory map) as QEMU's loader lays them out: the usable
    regions, and the holes between them reserved."""
    entries, pos = [], 0
    for start, end in usable:
        if start > pos:
            entries.append((pos, start - pos, E820_RESERVED))
        entries.append((start, end - start, E820_USABLE))
        pos = end
    mmap = b"".join(struct.pack("<IQQI", 20, base, length, kind) for base, length, kind in entries)
    mbi = bytearray(52)
    struct.pack_into("<I", mbi, 0, MBI_FLAG_MMAP)
    struct.pack_into("<II", mbi, 44, len(mmap), MMAP_AT)
    return bytes(mbi), mmap


def fpu_state(fxsave: bytes, stack_order: bool = False) -> dict:
    """The x87/SSE state QEMU reports (fpu.json) that an FXSAVE image (docs/dump-format.md,
    "Crash record") saved: FCW, FSW, the abridged tag byte FTW, MXCSR, the eight x87 registers as
    [mantissa, sign+exponent] (physical R0..R7 as TCG prints them: ST(j) is R((TOP + j) mod 8),
    TOP in FSW bits 11..13; in stack order as KVM does) and XMM0..15 as [high, low]."""
    fcw, fsw, ftw = struct.unpack_from("<HHB", fxsave, 0)
    mxcsr, = struct.unpack_from("<I", fxsave, 24)
    top = (fsw >> 11) & 7
    fpr: list = [None] * 8
    for j in range(8):
        mantissa, upper = struct.unpack_from("<QH", fxsave, 32 + 16 * j)
        fpr[j if stack_order else (top + j) & 7] = [mantissa, upper]
    xmm = [list(reversed(struct.unpack_from("<QQ", fxsave, 160 + 16 * i))) for i in range(16)]
    return {"fcw": fcw, "fsw": fsw, "ftw": ftw, "mxcsr": mxcsr, "fpr": fpr, "xmm": xmm}


def _snapshot(run_dir: Path, ram_bytes: int, opts: Options, rng: random.Random,
              patterned: list[SArea], usable: list[tuple[int, int]]) -> dict[int, bytes]:
    """Write snapshot/ (memory.json, two raw regions) and return {phys: bytes}. Sample areas
    in .bss hold their pattern at the crash instant; low RAM holds the loader's multiboot
    information and memory map (`usable`)."""
    snap = run_dir / "snapshot"
    snap.mkdir(parents=True, exist_ok=True)
    high = bytearray(_fill_words(HIGH_RAM_START, ram_bytes, opts.fill_seed))
    for page in range(COMPRESSIBLE[0], min(COMPRESSIBLE[1], ram_bytes), PAGE):
        at = page - HIGH_RAM_START
        high[at:at + PAGE // 2] = bytes([page // PAGE & 0xFF]) * (PAGE // 2)
    for a in patterned:
        high[a.phys - HIGH_RAM_START:a.phys - HIGH_RAM_START + a.length] = pattern(*a.pattern, a.length)
    low = bytearray(rng.randbytes(LOW_RAM_END))
    mbi, mmap = loader_memory_map(usable)
    assert MMAP_AT + len(mmap) <= MBI_AT
    low[MMAP_AT:MMAP_AT + len(mmap)] = mmap
    low[MBI_AT:MBI_AT + len(mbi)] = mbi
    regions = {0: bytes(low), HIGH_RAM_START: bytes(high)}
    entries = []
    for phys, data in regions.items():
        name = f"mem-{phys:016x}.bin"
        (snap / name).write_bytes(data)
        entries.append({"phys": phys, "length": len(data), "file": name})
    (snap / "memory.json").write_text(json.dumps({"regions": entries}, indent=1))
    return regions


def _memory(regions: dict[int, bytes], phys: int, length: int) -> bytes:
    for base, data in regions.items():
        if base <= phys and phys + length <= base + len(data):
            return data[phys - base:phys - base + length]
    raise ValueError(f"synth: 0x{phys:x}+{length} not in the snapshot")


def builtin_components(ram: int, as_the_guest: bool = False) -> list[SComponent]:
    """crash, kernel, ram and log; as_the_guest: the guest's three built-ins (crash-record,
    kernel, ram), which the samples' model expects before the samples."""
    comps = [
        SComponent("crash-record" if as_the_guest else "crash", CRASH_RECORD, areas=[SArea("crash-record", 0x9E000, 1024, volatile=True)]),
        SComponent("kernel", KERNEL, areas=[
            SArea("kernel-text", 0x100000, 0x20123),
            SArea("kernel-data", 0x121000, 0x1F000),
        ]),
        SComponent("ram", RAM, areas=[
            SArea("ram-low", 0, 0x9E000),
            SArea("stack", 0x140000, 0x8000, volatile=True),
            SArea("ram-high", 0x148000, ram - 0x148000),
        ]),
        SComponent("log", OTHER, areas=[SArea("console-log", 0x9E400, 3000)]),
    ]
    return comps[:3] if as_the_guest else comps


def make_run(run_dir: Path, options: Options | None = None, **overrides) -> Run:
    """Write a complete artifacts directory for one synthetic run and return its description."""
    opts = options or Options()
    for key, value in overrides.items():
        if not hasattr(opts, key):
            raise TypeError(f"synth: no option {key!r}")
        setattr(opts, key, value)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(opts.seed)
    ram = opts.ram_bytes
    assert ram >= 4 * MiB and ram % PAGE == 0
    if opts.version not in (3, VERSION) or (opts.compress and opts.version == 3):
        raise ValueError(f"synth: version {opts.version}{' compressed' if opts.compress else ''} is no dump it writes")

    layout = DiskLayout.for_dump(ram, block_size=opts.block_size, canary_seed=opts.canary_seed)
    layout.save(run_dir / "layout.json")
    image = run_dir / layout.image
    canary.fill(image, layout)
    gpt.write(image, layout)

    components = builtin_components(ram, as_the_guest=bool(opts.samples))
    violations = list(opts.violations)
    if opts.samples:
        samples, sample_violations = sample_components(sample_names(opts.samples), opts.level, ram)
        for v in sample_violations:
            v.component += len(components)
        components += samples
        violations += sample_violations
    components += list(opts.extra_components)
    if opts.generation == 2:
        _mark_restart(components, violations, opts.restart_reached)
    patterned = [a for c in components for a in c.areas if a.pattern and not a.staged]
    usable = usable_ram(components)
    regions = _snapshot(run_dir, ram, opts, rng, patterned, usable)

    registers = [rng.getrandbits(64) for _ in range(31)] + [0]
    for name, value in (("cs", 0x8), ("ss", 0x10), ("ds", 0x10), ("es", 0x10), ("fs", 0), ("gs", 0),
                        ("rflags", 0x46), ("cr0", 0x80050033), ("cr4", 0x6A0), ("efer", 0xD01)):
        registers[REGISTERS.index(name)] = value
    reg_json = {name: registers[i] for i, name in enumerate(REGISTERS)}
    (run_dir / "snapshot" / "registers.json").write_text(json.dumps(reg_json, indent=1))

    dump_id = rng.randbytes(16)
    reason, vector = {"nmi": (NMI, 2), "panic": (PANIC, 0xFFFFFFFF)}.get(opts.crash, (EXCEPTION, 14))
    scenario = {
        "version": 1, "disk": "virtio-blk", "crash": opts.crash, "memory_bytes": ram, "accel": "tcg",
        "firmware": "qboot", "dump_id": dump_id.hex(), "fill_seed": f"{opts.fill_seed:016x}",
        "compress": "lz4" if opts.compress else "off",
        "cmdline": f"dumpdev=virtio-blk dumpid={dump_id.hex()} fill={opts.fill_seed:016x}"
                   + (" compress=lz4" if opts.compress else ""),
    }
    if opts.samples:
        scenario.update(level=opts.level, components=opts.samples if isinstance(opts.samples, str)
                        else ",".join(opts.samples))
    if opts.generation == 2:
        scenario.update(secondary="virtio-blk", restart_expected=True)
    # What the run must end with, declared as a real run declares it (harness/dumpbed/oracles/validate.py's
    # run_expectation): a dump cut short is partial, with a DONE status=failed (the writer's
    # failure path) or none at all (QEMU ended mid-dump, as a kill does).
    scenario.update(faults=[], **{
        "in-progress": dict(expect="partial", expect_guest_result=None),
        "failed": dict(expect="partial", expect_guest_result="failed"),
    }.get(opts.state, dict(expect="complete", expect_guest_result="complete")))
    (run_dir / "scenario.json").write_text(json.dumps(scenario, indent=1))

    part_offset, part_bytes = layout.dump_offset, layout.dump_size
    dir_bytes = opts.dir_bytes
    chunk = 65536
    while up(4 * -(-part_bytes // chunk)) > 256 * KiB:
        chunk *= 2
    table_bytes = max(PAGE, up(4 * -(-part_bytes // chunk)))
    table_offset = DIR_AT + 2 * dir_bytes  # two directory slots, then two table slots
    body_offset = table_offset + 2 * table_bytes

    run = Run(
        dir=run_dir, image=image, layout=layout, options=opts, part_offset=part_offset,
        part_bytes=part_bytes, block_size=opts.block_size, header={}, registers=registers,
        components=components, violations=violations, dir_bytes=dir_bytes, table_offset=table_offset,
        table_bytes=table_bytes, body_offset=body_offset, chunk_size=chunk,
    )
    run.header = {
        "magic": b"DBEDDUMP", "version": opts.version, "header_size": 512, "block_size": opts.block_size,
        "status": IN_PROGRESS, "dump_id": dump_id, "generation": opts.generation,
        "crash_reason": reason, "crash_vector": vector, "failure": 0,
        "crash_error_code": 2 if reason == EXCEPTION else 0, "crash_fault_addr": 0xDEAD000 if reason == EXCEPTION else 0,
        "partition_bytes": part_bytes, "dir_offset": DIR_AT, "dir_bytes": dir_bytes, "dir_crc": 0,
        "crc_table_offset": table_offset, "crc_table_bytes": table_bytes, "crc_table_crc": 0,
        "body_offset": body_offset, "body_bytes": 0, "body_written": 0, "end_offset": 0,
        "chunk_size": chunk, "component_count": len(components), "area_count": 0,
        "max_transfer": 128 * KiB, "min_transfer": opts.block_size, "level": opts.level, "failure_offset": 0,
        "ram_bytes": sum(end - start for start, end in usable), "tsc_hz": 2_000_000_000,
        "tsc_crash": 123_456_789_000, "tsc_done": 123_999_999_000,
        "estimate_bytes": sum(c.estimate_bytes() for c in components), "chunks_sealed": 0,
        "device_role": SECONDARY if opts.generation == 2 else PRIMARY,
        "restart_error": EIO if opts.generation == 2 else 0,
        "restart_offset": 0x2345000 if opts.generation == 2 else 0, "slot": 0,
        "compression": COMPRESSION_LZ4 if opts.compress else COMPRESSION_NONE,
    }

    for c in components:
        for a in c.areas:
            if a.name == "crash-record":
                continue
            if a.pattern:
                a.data = pattern(*a.pattern, a.length)
            elif a.volatile:
                a.data = rng.randbytes(a.length)  # the guest changed it after the crash
            else:
                a.data = _memory(regions, a.phys, a.length)
    run.area("crash-record").data = run.crash_record()
    fpu = fpu_state(run.crash_record()[512:1024], stack_order=scenario["accel"] == "kvm")
    (run_dir / "snapshot" / FPU_FILE).write_text(json.dumps(fpu, indent=1))
    _lay_out(run)

    if opts.state == "none":
        return run
    _write(run, opts)
    return run


def _lay_out(run: Run) -> None:
    """Each area's stored form (its data, or its frames) and its place in the body: back to
    back from body_offset, each taking its stored bytes rounded up to a page."""
    offset = run.body_offset
    for a in run.areas:
        a.stored, a.frame_ends = frames_of(a.data) if run.options.compress else (a.data, ())
        a.disk_offset = offset
        offset += up(a.stored_bytes)
    run.body_bytes = offset - run.body_offset
    run.end_offset = offset
    assert run.end_offset + PAGE <= run.part_bytes - run.block_size, "synth: the partition is too small"


def frames_of(data: bytes) -> tuple[bytes, tuple[int, ...]]:
    """An area's data as the page's frames: 65536 data bytes each (the last the rest), a header
    {kind, raw_bytes, payload_bytes, raw_crc} and an LZ4 block, or the data itself (RAW) when
    LZ4 does not make it smaller. Returns the frames and where each ends."""
    out, ends = bytearray(), []
    for at in range(0, len(data), FRAME_DATA):
        raw = data[at:at + FRAME_DATA]
        block = bytes(cramjam.lz4.compress_block(raw, store_size=False))
        kind, payload = (FRAME_LZ4, block) if len(block) < len(raw) else (FRAME_RAW, raw)
        out += struct.pack("<IIII", kind, len(raw), len(payload), crc32c(raw)) + payload
        ends.append(len(out))
    return bytes(out), tuple(ends)


def cut_area(a: SArea, written: int) -> SArea:
    """An area listed as far as `written` (a page multiple) of its stored bytes: uncompressed
    its first `written` data bytes; compressed (a partial area) those stored bytes, its length
    the data of the frames wholly inside them."""
    if not a.frame_ends:
        return replace(a, length=written, stored=a.stored[:written])
    whole = sum(1 for end in a.frame_ends if end <= written)
    return replace(a, length=whole * FRAME_DATA, stored=a.stored[:written], frame_ends=a.frame_ends[:whole])


def _mark_restart(components: list[SComponent], violations: list[SViolation], reached: int) -> None:
    """Generation 2: components reached in generation 1 that are not called on restart reuse
    the table saved in generation 1 (if they gave one); the violations of the components first
    called in generation 2 happen there."""
    for c in components[:reached + 1]:
        if not c.flags & CALL_ON_RESTART and c.status not in (DISABLED, EXCLUDED) and c.areas:
            c.flags |= TABLE_REUSED
    for v in violations:
        if v.component != NO_COMPONENT and (v.component > reached or _called_on_restart(components[v.component])):
            v.generation = 2


def _called_on_restart(c: SComponent) -> bool:
    """CALL_ON_RESTART, and no call of it faulted (a faulted routine is never called again)."""
    return bool(c.flags & CALL_ON_RESTART) and not any(call.outcome == FAULT for call in c.collection_calls())


def _write(run: Run, opts: Options) -> None:
    """Play the writer's writes (docs/dump-format.md, "Write order") up to where the state
    leaves the disk: the leader vouching for run.point, the body described (and `spill` bytes
    more, written after it), the checkpoint before it in the other slot, the end marker, trailer
    and final leader of a COMPLETE dump, the failure path of a FAILED one. Every write goes
    through one Recorder, which applies it to the image and records it; the evidence QEMU keeps
    of the run (write log, trace, result channel) is then written from that record."""
    if opts.state == "complete":
        run.point = Point(run.body_bytes, len(run.components), COMPLETE)
    else:
        status = FAILED if opts.state == "failed" else IN_PROGRESS
        want = opts.body_written if opts.body_written is not None else up(run.body_bytes // 2)
        cut = min(want // PAGE * PAGE, run.body_bytes) if opts.cut_inside else \
            max([end for end in _area_ends(run) if end <= want], default=0)
        run.point = run.point_at(0 if opts.slot == 0 else cut, status)
    # Checkpoints alternate between the slots, slot 1 first; the leader's is the next one (a
    # slot chosen with `slot=` is the one an alternation that started on the other slot gives).
    before = [p for p in run.checkpoints() if p.key < run.point.key]
    slot = opts.slot if opts.slot is not None else 1 + len(before) % 2
    run.previous = before[-1] if before and slot else None
    spill = opts.spill if opts.state != "complete" else 0

    rec = Recorder(run)
    h = run.header
    rec.say(f"CRASH reason={CRASH_NAMES[h['crash_reason']]} " +
            (f"vector=0x{h['crash_vector']:x}" if h["crash_vector"] == 0xFFFFFFFF else f"vector={h['crash_vector']}"))
    rec.say("QUIESCED device=primary")
    if h["generation"] == 2:  # generation 1 ran on the primary, whose disk this run does not model
        rec.say(f"RESTART from=primary to=secondary error={h['restart_error']} stage=body "
                f"offset={h['restart_offset']}")
        rec.say("QUIESCED device=secondary")
    rec.leader(run.header_at(Point(0, 0), 0))  # the first leader: slot 0
    rec.flush()
    rec.progress(0)
    if slot:
        for i, p in enumerate(before):
            rec.body(p.body)
            rec.checkpoint(p, slot if (len(before) - i) % 2 == 0 else 3 - slot)
    point = run.point
    if opts.state == "complete":
        rec.body(point.body)
        rec.slot(point, slot)  # the final table and directory ...
        run.header.update(run.header_at(point, slot))
        rec.write(run.end_offset, run.end_marker(), "end marker")  # ... and the end marker
        rec.flush()
        rec.trailer(run.header)
        rec.flush()
        rec.leader(run.header)  # the commit
        rec.flush()
        rec.say(f"DONE status=complete bytes={run.end_offset + PAGE - LEADER + run.block_size} "
                f"device={rec.device} generation={h['generation']}")
    elif opts.state == "in-progress":
        if slot:
            rec.body(point.body)
            rec.checkpoint(point, slot)
        rec.body(point.body + spill)  # written after the last leader; then QEMU ends (no DONE)
        run.header.update(run.header_at(point, slot))
    else:
        rec.body(point.body)
        rec.body(point.body + spill)
        failure_offset = run.body_offset + point.body + spill
        stage = "body"
        no_room = opts.failure in (ENOSPC, E2BIG)  # the writer stopped: no write failed
        if not no_room:  # a device error: the device failed the next write
            stage = rec.fail_next_write()
        if slot:  # the failure path: the slot the leader on disk does not name (flush) ...
            rec.slot(point, slot)
            rec.flush()
        elif not no_room:  # ... which the failing device refused: the leader keeps slot 0
            rec.fail(run.table_slot_at(1), min(run.table_bytes, run.header["max_transfer"]), "slot 1")
        run.header.update(run.header_at(point, slot), failure=opts.failure, failure_offset=failure_offset)
        rec.leader(run.header)  # ... the FAILED leader (flush), the trailer identical to it (flush)
        rec.flush()
        rec.trailer(run.header)
        rec.flush()
        rec.say(f"DONE status=failed error={opts.failure} stage={stage} offset={failure_offset} "
                f"device={rec.device} generation={h['generation']}")
    run.ops = rec.ops
    write_evidence(run)


def _area_ends(run: Run) -> list[int]:
    """Body bytes at the end of each area."""
    return [a.disk_offset + up(a.stored_bytes) - run.body_offset for a in run.areas]


# --------------------------------------------------------------------------------------------
# The writer's I/O, and the evidence QEMU keeps of it
# --------------------------------------------------------------------------------------------

CRASH_TIME = 1_800_000_000.0  # when the harness injected the crash (timeline.json)
TICK = 10e-6  # between two trace events: every step of the dump takes its own time
VDEV = "0x1"  # QEMU's pointer to the dump disk's virtio-blk device
WRITE_REQ, FLUSH_REQ = "0x2", "0x3"  # the flush's request is never announced as a read or write
RESULT_MR = "0x5"  # the isa-debugcon memory region
VIRTIO_BLK_S_IOERR = 1
CRASH_NAMES = {NMI: "nmi", PANIC: "panic", EXCEPTION: "exception"}
EXIT_STATUS = {"complete": 67, "failed": 69}  # isa-debug-exit: (0x21 or 0x22) << 1 | 1
BLKLOG_MAGIC, BLKLOG_SECTOR = 0x6A736677736872, 512  # dm-log-writes, as QEMU's blklogwrites writes it
BLKLOG_FLUSH = 1


@dataclass
class Io:
    """One step of the dump as the device and the result channel see it, in order."""
    kind: str  # "write" (landed), "failed" (the device failed it: nothing landed), "flush", "line"
    offset: int = 0  # write, failed: partition offset
    length: int = 0  # write, failed
    data: bytes | memoryview = b""  # write: what landed
    what: str = ""  # write, failed: "leader", "trailer", "slot 1", "slot 2", "body", "end marker"
    text: str = ""  # line: a result-channel line ("DUMPBED WORD ..."), without its newline

    @property
    def end(self) -> int:
        return self.offset + self.length


class Recorder:
    """The synthetic writer's device: each write lands on the image at once (so the next step
    reads the disk as it is) and is recorded with its data, beside flushes, writes the device
    failed and the guest's result-channel lines. Transfers are whole blocks of at most
    max_transfer; body transfers never cross an area's end or a 64 MiB boundary of the body."""

    def __init__(self, run: Run):
        self.run = run
        self.ops: list[Io] = []
        self.body_done = 0  # body bytes written so far
        self.device = "secondary" if run.header["device_role"] == SECONDARY else "primary"
        self._starts = [a.disk_offset - run.body_offset for a in run.areas]

    def write(self, offset: int, data: bytes | memoryview, what: str) -> None:
        step = self.run.header["max_transfer"]
        data = memoryview(data)
        for at in range(0, len(data), step):
            piece = data[at:at + step]
            assert len(piece) % self.run.block_size == 0 and (offset + at) % self.run.block_size == 0
            self.run.write_part(offset + at, piece)
            self.ops.append(Io("write", offset + at, len(piece), piece, what))

    def fail(self, offset: int, length: int, what: str) -> None:
        self.ops.append(Io("failed", offset, length, what=what))

    def flush(self) -> None:
        self.ops.append(Io("flush"))

    def say(self, text: str) -> None:
        self.ops.append(Io("line", text="DUMPBED " + text))

    def leader(self, header: dict) -> None:
        self.write(LEADER, pack_header(header, self.run.registers) + bytes(PAGE - 512), "leader")

    def trailer(self, header: dict) -> None:
        run = self.run
        self.write(run.part_bytes - run.block_size, pack_header(header, run.registers) + bytes(run.block_size - 512),
                   "trailer")

    def slot(self, point: Point, slot: int) -> None:
        """Table slot (whole) and directory slot `slot` as a directory at `point` describes them."""
        run = self.run
        self.write(run.table_slot_at(slot), run.chunk_table(point), f"slot {slot}")
        self.write(run.dir_slot_at(slot), run.directory_bytes(point), f"slot {slot}")

    def checkpoint(self, point: Point, slot: int) -> None:
        """The slot (flush), then the leader naming it (flush)."""
        self.slot(point, slot)
        self.flush()
        header = self.run.header_at(point, slot)
        self.leader(header)
        self.flush()
        self.progress(header["body_written"])

    def progress(self, written: int) -> None:
        h = self.run.header
        self.say(f"PROGRESS written={written} total={h['estimate_bytes']} body={self.body_done} "
                 f"device={self.device} generation={h['generation']}")

    def _next_transfer(self, upto: int) -> tuple[int, int, SArea]:
        """The body range [pos, end) of the next transfer towards `upto`, and its area."""
        run, pos = self.run, self.body_done
        a = run.areas[bisect.bisect_right(self._starts, pos) - 1]
        start = a.disk_offset - run.body_offset
        end = min(start + up(a.stored_bytes), upto, (pos // CHECKPOINT + 1) * CHECKPOINT,
                  pos + run.header["max_transfer"])
        return pos, end, a

    def body(self, upto: int) -> None:
        """The body up to `upto` bytes (a block multiple, within the body), areas padded with zeros."""
        run = self.run
        upto = min(up(upto, run.block_size), run.body_bytes)
        while self.body_done < upto:
            pos, end, a = self._next_transfer(upto)
            lo, hi = pos - (a.disk_offset - run.body_offset), end - (a.disk_offset - run.body_offset)
            if hi <= len(a.stored):
                data = memoryview(a.stored)[lo:hi]
            else:
                data = bytes(a.stored[lo:hi]) + bytes(hi - max(lo, len(a.stored)))
            self.write(run.body_offset + pos, data, "body")
            self.body_done = end

    def fail_next_write(self) -> str:
        """The device fails the writer's next write (nothing of it lands); returns the stage the
        guest reports: the body's next transfer, or the end marker once the body is all written."""
        run = self.run
        if self.body_done < run.body_bytes:
            pos, end, _ = self._next_transfer(run.body_bytes)
            self.fail(run.body_offset + pos, end - pos, "body")
            return "body"
        self.fail(run.end_offset, PAGE, "end marker")
        return "end-marker"


def write_evidence(run: Run, ops: list[Io] | None = None) -> None:
    """What QEMU and the harness keep of a run whose dump made `ops` (default: run.ops): the
    write log (write_log), qemu-trace.log (the device's commands and the result channel's bytes
    after the crash, one trace event each), result.log, timeline.json (the crash instant, QEMU's
    exit status: 67 complete, 69 failed, null when QEMU ended with no DONE) and the RFLAGS
    samples taken during the dump.

    Tests rewrite the evidence from an edited list of ops to show the oracles failing on it
    (the image is not touched)."""
    ops = run.ops if ops is None else ops
    write_log(run, ops)
    write_trace(run, ops)


def write_log(run: Run, ops: list[Io] | None = None) -> None:
    """dump.writes beside the image, as QEMU's blklogwrites writes it (harness/dumpbed/capture/blklog.py): a
    superblock, then every write that landed with its data and each flush that had a write to
    flush, in completion order."""
    ops = run.ops if ops is None else ops
    part, sector = run.part_offset, BLKLOG_SECTOR
    entries, dirty = 0, False
    with open(run.image.with_suffix(".writes"), "wb") as log:
        log.write(bytes(sector))
        for op in ops:
            if op.kind == "write":
                head = struct.pack("<QQQQ", (part + op.offset) // sector, op.length // sector, 0, 0)
                log.write(head.ljust(sector, b"\0"))
                log.write(op.data)
                entries, dirty = entries + 1, True
            elif op.kind == "flush" and dirty:  # QEMU flushes (and logs) only when a write came since
                log.write(struct.pack("<QQQQ", 0, 0, BLKLOG_FLUSH, 0).ljust(sector, b"\0"))
                entries, dirty = entries + 1, False
        log.seek(0)
        log.write(struct.pack("<QQQI", BLKLOG_MAGIC, 1, entries, sector))


def write_trace(run: Run, ops: list[Io] | None = None) -> None:
    """qemu-trace.log, result.log, timeline.json and irq-samples.jsonl for `ops` (write_evidence)."""
    ops = run.ops if ops is None else ops
    part = run.part_offset
    trace: list[str] = []

    def event(text: str) -> None:  # each event TICK after the one before, from a millisecond after the crash
        trace.append(f"1@{CRASH_TIME + 0.001 + (len(trace) + 1) * TICK:.6f}:{text}")

    done = None
    for op in ops:
        if op.kind in ("write", "failed"):
            event(f"virtio_queue_notify vdev {VDEV} n 0 vq 0x3")
            event(f"virtio_blk_handle_write vdev {VDEV} req {WRITE_REQ} sector {(part + op.offset) // 512} "
                  f"nsectors {op.length // 512}")
            status = 0 if op.kind == "write" else VIRTIO_BLK_S_IOERR
            event(f"virtio_blk_req_complete vdev {VDEV} req {WRITE_REQ} status {status}")
        elif op.kind == "flush":
            event(f"virtio_queue_notify vdev {VDEV} n 0 vq 0x3")
            event(f"virtio_blk_req_complete vdev {VDEV} req {FLUSH_REQ} status 0")
        elif op.kind == "line":
            for ch in op.text + "\n":
                event(f"memory_region_ops_write cpu 0 mr {RESULT_MR} addr 0xe9 value 0x{ord(ch):x} size 1 "
                      f"name 'isa-debugcon'")
            if op.text.startswith("DUMPBED DONE "):
                done = op.text.split()[2].removeprefix("status=")
    end = CRASH_TIME + 0.001 + len(trace) * TICK  # the last event: DONE's newline, or the last write
    (run.dir / "qemu-trace.log").write_text("\n".join(trace) + "\n")

    h = run.header
    ready = (f"READY ram={h['ram_bytes']} dumpdev=virtio-blk:0 part_lba={run.part_offset // run.block_size} "
             f"part_blocks={run.part_bytes // run.block_size} block={run.block_size} max_transfer={h['max_transfer']} "
             f"dumpdev2={'virtio-blk:1' if h['generation'] == 2 else 'none'} level={h['level']}")
    lines = ["DUMPBED " + ready] + [op.text for op in ops if op.kind == "line"]
    (run.dir / "result.log").write_text("".join(line + "\n" for line in lines))
    timeline = {"crash_injected": CRASH_TIME, "qemu_exit_status": EXIT_STATUS.get(done)}
    (run.dir / "timeline.json").write_text(json.dumps(timeline) + "\n")
    # RFLAGS as the harness samples them during the dump: IF (bit 9) clear, as a polled dump keeps it.
    samples = [{"t": CRASH_TIME + (end - CRASH_TIME) * i / 6, "rflags": 0x86, "rip": 0x104000 + i} for i in range(1, 6)]
    (run.dir / "irq-samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples))
