"""Synthetic dumpbed runs for unit tests.

A second, minimal writer of docs/dump-format.md, written from the page with its own offset
tables (it shares no format code with harness/dumpfmt.py), plus the artifacts of a run
(docs/artifacts.md): scenario.json, layout.json, snapshot/, dump.img. The disk itself is
prepared with the harness's own canary and GPT writers, as a real run would.

    run = synth.make_run(tmp_path)                 # a complete, valid dump of 8 MiB of RAM
    run.flip(run.area_disk_offset("ram-high") + 7) # damage one byte of an area
    run.reseal()                                   # recompute every CRC so only content differs
"""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np

from harness import canary, gpt
from harness.layout import DiskLayout

KiB = 1 << 10
MiB = 1 << 20
PAGE = 4096
LEADER = 65536
DIR_AT = 69632

REGISTERS = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15", "rip", "rflags", "cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base", "cr0",
    "cr2", "cr3", "cr4", "efer",
]

# Header fields as (offset, struct format, name), typed from the spec's table.
HEADER_FIELDS = [
    (0, "8s", "magic"), (8, "I", "version"), (12, "I", "header_size"), (16, "I", "block_size"),
    (20, "I", "status"), (24, "16s", "dump_id"), (40, "I", "generation"), (44, "I", "crash_reason"),
    (48, "I", "crash_vector"), (52, "I", "failure"), (56, "Q", "crash_error_code"),
    (64, "Q", "crash_fault_addr"), (72, "Q", "partition_bytes"), (80, "Q", "dir_offset"),
    (88, "I", "dir_bytes"), (92, "I", "dir_crc"), (96, "Q", "crc_table_offset"),
    (104, "I", "crc_table_bytes"), (108, "I", "crc_table_crc"), (112, "Q", "body_offset"),
    (120, "Q", "body_bytes"), (128, "Q", "body_written"), (136, "Q", "end_offset"),
    (144, "I", "chunk_size"), (148, "I", "component_count"), (152, "I", "area_count"),
    (156, "I", "max_transfer"), (160, "I", "min_transfer"), (168, "Q", "failure_offset"),
    (176, "Q", "ram_bytes"), (184, "Q", "tsc_hz"), (192, "Q", "tsc_crash"), (200, "Q", "tsc_done"),
]
REGISTERS_AT = 216
HEADER_CRC_AT = 508

IN_PROGRESS, COMPLETE, FAILED = 1, 2, 3
NMI, PANIC, EXCEPTION = 1, 2, 3
CRASH_RECORD, KERNEL, RAM, OTHER = 1, 2, 3, 4
DUMPED, EXCLUDED, COMP_FAILED = 1, 2, 3
VOLATILE = 1

FILL_MULTIPLIER = 0x9E3779B97F4A7C15
LOW_RAM_END = 0x9F000  # the snapshot's first region: [0, 636 KiB)
HIGH_RAM_START = MiB  # the second: [1 MiB, ram_bytes)


def crc32c(data: bytes) -> int:
    return google_crc32c.value(bytes(data))


def up(value: int, multiple: int = PAGE) -> int:
    return (value + multiple - 1) // multiple * multiple


@dataclass
class SArea:
    name: str
    phys: int
    length: int
    volatile: bool = False
    data: bytes = b""  # what goes on disk; filled in by make_run
    disk_offset: int = 0


@dataclass
class SComponent:
    name: str
    kind: int
    status: int = DUMPED
    reason: int = 0
    areas: list[SArea] = field(default_factory=list)


@dataclass
class Options:
    block_size: int = 512
    ram_bytes: int = 8 * MiB
    crash: str = "nmi"
    state: str = "complete"  # complete | in-progress | failed | none
    body_written: int | None = None  # for in-progress / failed; default: half the body, page aligned
    canary_seed: int = 0x5EED1234
    fill_seed: int = 0x0123456789ABCDEF
    generation: int = 1
    seed: int = 1  # everything else random (dump id, registers, low RAM, volatile data)
    extra_components: list = field(default_factory=list)  # SComponents appended to the directory


@dataclass
class Run:
    dir: Path
    image: Path
    layout: DiskLayout
    options: Options
    part_offset: int
    part_bytes: int
    block_size: int
    header: dict
    registers: list[int]  # 32 values, header order
    components: list[SComponent]
    dir_bytes: int = 0
    table_offset: int = 0
    table_bytes: int = 0
    body_offset: int = 0
    body_bytes: int = 0
    end_offset: int = 0
    chunk_size: int = 0

    # -- addressing -----------------------------------------------------------------------

    @property
    def areas(self) -> list[SArea]:
        return [a for c in self.components for a in c.areas]

    def area(self, name: str) -> SArea:
        return next(a for a in self.areas if a.name == name)

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

    def component_entry_at(self, index: int) -> int:
        """Partition offset of component entry `index` in the directory."""
        return DIR_AT + 64 + 64 * index

    def area_entry_at(self, index: int) -> int:
        """Partition offset of area entry `index` in the directory."""
        return DIR_AT + 64 + 64 * len(self.components) + 64 * index

    def area_index(self, name: str) -> int:
        return [a.name for a in self.areas].index(name)

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

    def directory_bytes(self) -> bytes:
        comps, areas = self.components, self.areas
        raw = bytearray(self.dir_bytes)
        struct.pack_into("<8sIIII", raw, 0, b"DBEDDIR\0", len(comps), len(areas), 64, 64)
        first = 0
        for i, c in enumerate(comps):
            struct.pack_into(
                "<32sIIIII", raw, 64 + 64 * i, c.name.encode(), c.kind, c.status, c.reason, first, len(c.areas)
            )
            first += len(c.areas)
        base = 64 + 64 * len(comps)
        index = 0
        for ci, c in enumerate(comps):
            for a in c.areas:
                struct.pack_into(
                    "<24sQQQII", raw, base + 64 * index, a.name.encode(), a.phys, a.length, a.disk_offset, ci,
                    VOLATILE if a.volatile else 0,
                )
                index += 1
        return bytes(raw)

    def chunk_table(self) -> tuple[bytes, int]:
        """The CRC table computed from the body as it is on disk now, and its CRC."""
        crcs = []
        for off in range(self.body_offset, self.end_offset, self.chunk_size):
            crcs.append(crc32c(self.read_part(off, min(self.chunk_size, self.end_offset - off))))
        table = struct.pack(f"<{len(crcs)}I", *crcs)
        table += bytes(self.table_bytes - len(table))
        return table, crc32c(table)

    def end_marker(self) -> bytes:
        nchunks = (self.body_bytes + self.chunk_size - 1) // self.chunk_size
        raw = bytearray(PAGE)
        struct.pack_into(
            "<8sII16sQII", raw, 0, b"DBEDEND\0", 1, self.header["generation"], self.header["dump_id"],
            self.body_bytes, nchunks, self.header["crc_table_crc"],
        )
        struct.pack_into("<I", raw, PAGE - 4, crc32c(raw[:PAGE - 4]))
        return bytes(raw)

    def reseal(self) -> None:
        """Recompute the directory CRC, the chunk table, the end marker and both headers from
        what is on disk, so that CRC-based checks pass whatever was changed in the body."""
        self.header["dir_crc"] = crc32c(self.read_part(DIR_AT, self.dir_bytes))
        table, table_crc = self.chunk_table()
        self.write_part(self.table_offset, table)
        self.header["crc_table_crc"] = table_crc
        self.write_part(self.end_offset, self.end_marker())
        self.set_header()

    def crash_record(self) -> bytes:
        h = self.header
        raw = bytearray(1024)
        struct.pack_into(
            "<8sIIIIQQQ", raw, 0, b"DBCRASH\0", 1, h["crash_reason"], h["crash_vector"], 0,
            h["crash_error_code"], h["crash_fault_addr"], h["tsc_crash"],
        )
        struct.pack_into("<32Q", raw, 48, *self.registers)
        raw[512:1024] = random.Random(self.options.seed + 7).randbytes(512)  # FXSAVE image
        return bytes(raw)

    def set_crash_record(self, raw: bytes) -> None:
        a = self.area("crash-record")
        a.data = raw
        self.write_part(a.disk_offset, raw)


def pack_header(header: dict, registers: list[int]) -> bytes:
    """512 header bytes from a dict of every HEADER_FIELDS name, with a fresh CRC."""
    raw = bytearray(512)
    for off, fmt, name in HEADER_FIELDS:
        struct.pack_into("<" + fmt, raw, off, header[name])
    struct.pack_into("<32Q", raw, REGISTERS_AT, *registers)
    struct.pack_into("<I", raw, HEADER_CRC_AT, crc32c(raw[:HEADER_CRC_AT]))
    return bytes(raw)


def _fill_words(start: int, end: int, seed: int) -> bytes:
    """The guest's RAM fill pattern (guest-interface.md) for [start, end), 8-byte aligned."""
    addrs = np.arange(start, end, 8, dtype=np.uint64)
    with np.errstate(over="ignore"):
        words = (addrs * np.uint64(FILL_MULTIPLIER)) ^ np.uint64(seed)
    return words.astype("<u8").tobytes()


def _snapshot(run_dir: Path, ram_bytes: int, opts: Options, rng: random.Random) -> dict[int, bytes]:
    """Write snapshot/ (memory.json, two raw regions) and return {phys: bytes}."""
    snap = run_dir / "snapshot"
    snap.mkdir(parents=True, exist_ok=True)
    regions = {
        0: rng.randbytes(LOW_RAM_END),
        HIGH_RAM_START: _fill_words(HIGH_RAM_START, ram_bytes, opts.fill_seed),
    }
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


def make_run(run_dir: Path, options: Options | None = None, **overrides) -> Run:
    """Write a complete artifacts directory for one synthetic run and return its description."""
    opts = options or Options()
    for key, value in overrides.items():
        setattr(opts, key, value)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(opts.seed)
    ram = opts.ram_bytes
    assert ram >= 4 * MiB and ram % PAGE == 0

    layout = DiskLayout.for_dump(ram, block_size=opts.block_size, canary_seed=opts.canary_seed)
    layout.save(run_dir / "layout.json")
    image = run_dir / layout.image
    canary.fill(image, layout)
    gpt.write(image, layout)
    regions = _snapshot(run_dir, ram, opts, rng)

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
        "cmdline": f"dumpdev=virtio-blk dumpid={dump_id.hex()} fill={opts.fill_seed:016x}",
    }
    (run_dir / "scenario.json").write_text(json.dumps(scenario, indent=1))

    components = [
        SComponent("crash", CRASH_RECORD, areas=[SArea("crash-record", 0x9E000, 1024, volatile=True)]),
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
    ] + list(opts.extra_components)
    part_offset, part_bytes = layout.dump_offset, layout.dump_size
    nareas = sum(len(c.areas) for c in components)
    dir_bytes = up(64 + 64 * (len(components) + nareas))
    body_bytes = sum(up(a.length) for c in components for a in c.areas)
    chunk = 65536
    while 4 * -(-body_bytes // chunk) > 256 * KiB:
        chunk *= 2
    nchunks = -(-body_bytes // chunk)
    table_bytes = max(PAGE, up(4 * nchunks))
    table_offset = DIR_AT + dir_bytes
    body_offset = table_offset + table_bytes
    end_offset = body_offset + body_bytes

    run = Run(
        dir=run_dir, image=image, layout=layout, options=opts, part_offset=part_offset,
        part_bytes=part_bytes, block_size=opts.block_size, header={}, registers=registers,
        components=components, dir_bytes=dir_bytes, table_offset=table_offset, table_bytes=table_bytes,
        body_offset=body_offset, body_bytes=body_bytes, end_offset=end_offset, chunk_size=chunk,
    )
    run.header = {
        "magic": b"DBEDDUMP", "version": 1, "header_size": 512, "block_size": opts.block_size,
        "status": IN_PROGRESS, "dump_id": dump_id, "generation": opts.generation,
        "crash_reason": reason, "crash_vector": vector, "failure": 0,
        "crash_error_code": 0 if reason == NMI else 2, "crash_fault_addr": 0 if reason == NMI else 0xDEAD000,
        "partition_bytes": part_bytes, "dir_offset": DIR_AT, "dir_bytes": dir_bytes, "dir_crc": 0,
        "crc_table_offset": table_offset, "crc_table_bytes": table_bytes, "crc_table_crc": 0,
        "body_offset": body_offset, "body_bytes": body_bytes, "body_written": 0, "end_offset": end_offset,
        "chunk_size": chunk, "component_count": len(components), "area_count": nareas,
        "max_transfer": 128 * KiB, "min_transfer": opts.block_size, "failure_offset": 0,
        "ram_bytes": ram - (HIGH_RAM_START - LOW_RAM_END), "tsc_hz": 2_000_000_000,
        "tsc_crash": 123_456_789_000, "tsc_done": 123_999_999_000,
    }

    offset = body_offset
    for c in components:
        for a in c.areas:
            a.disk_offset = offset
            offset += up(a.length)
            if a.name == "crash-record":
                continue
            if a.volatile:
                a.data = rng.randbytes(a.length)  # the guest changed it after the crash
            else:
                a.data = _memory(regions, a.phys, a.length)
    run.area("crash-record").data = run.crash_record()
    assert offset == end_offset

    if opts.state == "none":
        return run

    run.header["dir_crc"] = crc32c(run.directory_bytes())
    run.write_leader()
    run.write_part(DIR_AT, run.directory_bytes())

    written = body_bytes
    if opts.state in ("in-progress", "failed"):
        written = opts.body_written if opts.body_written is not None else up(body_bytes // 2)
    for a in run.areas:  # the body, area by area, only as far as body_written
        padded = a.data + bytes(up(a.length) - a.length)
        keep = max(0, min(len(padded), body_offset + written - a.disk_offset))
        if keep:
            run.write_part(a.disk_offset, padded[:keep])

    if opts.state == "in-progress":
        run.set_header(body_written=written)
        _write_trace(run, run_dir, up(body_offset + written))
        return run
    if opts.state == "failed":
        run.set_header(status=FAILED, body_written=written, failure=5, failure_offset=body_offset + written)
        _write_trace(run, run_dir, up(body_offset + written))
        return run

    run.header["body_written"] = body_bytes
    table, table_crc = run.chunk_table()
    run.write_part(table_offset, table)
    run.header["crc_table_crc"] = table_crc
    run.write_part(end_offset, run.end_marker())
    run.set_header(status=COMPLETE)
    _write_trace(run, run_dir, end_offset + PAGE)
    return run


CRASH_TIME = 1_800_000_000.0


def _write_trace(run: Run, run_dir: Path, extent_end: int) -> None:
    """What QEMU's trace would log for this dump: virtio-blk write commands after the crash, in
    transfers of at most max_transfer, then the trailer block (harness/writelog.py reads it)."""
    step = run.header["max_transfer"]
    spans = [(o, min(step, extent_end - o)) for o in range(LEADER, extent_end, step)]
    spans.append((run.part_bytes - run.block_size, run.block_size))
    lines = [f"1@{CRASH_TIME + 1 + i / 1000:.6f}:virtio_blk_handle_write vdev 0x1 req 0x2 "
             f"sector {(run.part_offset + o) // 512} nsectors {n // 512}" for i, (o, n) in enumerate(spans)]
    (run_dir / "qemu-trace.log").write_text("\n".join(lines) + "\n")
    (run_dir / "timeline.json").write_text(json.dumps({"crash_injected": CRASH_TIME}) + "\n")
    # RFLAGS as the harness samples them during the dump: IF (bit 9) clear, as a polled dump keeps it.
    samples = [{"t": CRASH_TIME + 0.01 * i, "rflags": 0x86, "rip": 0x104000 + i} for i in range(1, 6)]
    (run_dir / "irq-samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples))
