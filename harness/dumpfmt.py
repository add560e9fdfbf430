"""Reader of the dumpbed dump format, version 1 (docs/dump-format.md). Pure: no QEMU.

read() parses a dump partition into dataclasses and classifies the dump as none / partial /
corrupt / complete exactly as the spec's last section says. It never raises on what it finds
on the disk: every problem becomes a Finding, in the order it was found, so the first
inconsistency can be named. Hostile input is bounded: every size and count is checked
against the partition before anything is allocated or looped over, and big regions (the
directory, the body) are read a few MiB at a time.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import google_crc32c
import numpy as np

KiB = 1 << 10
MiB = 1 << 20
PAGE = 4096
HEADER_SIZE = 512
LEADER_OFFSET = 65536
DIR_OFFSET = 69632
VERSION = 1
ENTRY_SIZE = 64
DIR_HEADER_SIZE = 64
CRASH_RECORD_BYTES = 1024
BLOCK_SIZES = (512, 4096)
WRITER_CHUNK_SIZE = 65536
WRITER_TABLE_LIMIT = 256 * KiB
NO_VECTOR = 0xFFFFFFFF
NMI_VECTOR = 2
AREA_VOLATILE = 1
# Reader limit: directories with more entries are rejected (a real dump has tens).
MAX_DIRECTORY_ENTRIES = 65536
MAX_LISTED_BAD_CHUNKS = 64
_STEP = 8 * MiB  # bytes read at a time from big regions

HEADER_MAGIC = b"DBEDDUMP"
DIR_MAGIC = b"DBEDDIR\0"
END_MAGIC = b"DBEDEND\0"
CRASH_MAGIC = b"DBCRASH\0"

REGISTER_NAMES = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
    "rip", "rflags", "cs", "ss", "ds", "es", "fs", "gs",
    "fs_base", "gs_base", "cr0", "cr2", "cr3", "cr4", "efer", "reserved",
)


class HeaderStatus(IntEnum):
    IN_PROGRESS = 1
    COMPLETE = 2
    FAILED = 3


class CrashReason(IntEnum):
    NMI = 1
    PANIC = 2
    EXCEPTION = 3


class ComponentKind(IntEnum):
    CRASH_RECORD = 1
    KERNEL = 2
    RAM = 3
    OTHER = 4


class ComponentStatus(IntEnum):
    DUMPED = 1
    EXCLUDED = 2
    FAILED = 3


def enum_name(enum: type[IntEnum], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return f"unknown({value})"


def crc32c(data: bytes) -> int:
    return google_crc32c.value(bytes(data))


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def writer_chunk_size(body_bytes: int) -> int:
    """The chunk size the spec's writer picks: 64 KiB, doubled while the table would exceed 256 KiB."""
    size = WRITER_CHUNK_SIZE
    while 4 * -(-body_bytes // size) > WRITER_TABLE_LIMIT:
        size *= 2
    return size


def crc_table_bytes_for(nchunks: int) -> int:
    return max(PAGE, round_up(4 * nchunks, PAGE))


# --------------------------------------------------------------------------------------------
# On-disk structures
# --------------------------------------------------------------------------------------------

_HEADER_FIELDS = (
    ("magic", "8s"), ("version", "I"), ("header_size", "I"), ("block_size", "I"), ("status", "I"),
    ("dump_id", "16s"), ("generation", "I"), ("crash_reason", "I"), ("crash_vector", "I"),
    ("failure", "I"), ("crash_error_code", "Q"), ("crash_fault_addr", "Q"), ("partition_bytes", "Q"),
    ("dir_offset", "Q"), ("dir_bytes", "I"), ("dir_crc", "I"), ("crc_table_offset", "Q"),
    ("crc_table_bytes", "I"), ("crc_table_crc", "I"), ("body_offset", "Q"), ("body_bytes", "Q"),
    ("body_written", "Q"), ("end_offset", "Q"), ("chunk_size", "I"), ("component_count", "I"),
    ("area_count", "I"), ("max_transfer", "I"), ("min_transfer", "I"), ("reserved_164", "I"),
    ("failure_offset", "Q"), ("ram_bytes", "Q"), ("tsc_hz", "Q"), ("tsc_crash", "Q"),
    ("tsc_done", "Q"), ("reserved_208", "Q"), ("registers", "32Q"), ("reserved_472", "36s"),
    ("header_crc", "I"),
)
_HEADER = struct.Struct("<" + "".join(f for _, f in _HEADER_FIELDS))
assert _HEADER.size == HEADER_SIZE


def _field_offsets(fields) -> list[tuple[int, int, str]]:
    out, off = [], 0
    for name, fmt in fields:
        size = struct.calcsize("<" + fmt)
        out.append((off, size, name))
        off += size
    return out


_HEADER_LAYOUT = _field_offsets(_HEADER_FIELDS)


def header_field_at(byte_offset: int) -> str:
    """Name of the header field that holds byte_offset (0..511)."""
    for off, size, name in _HEADER_LAYOUT:
        if off <= byte_offset < off + size:
            if name == "registers":
                return f"registers[{(byte_offset - off) // 8}] ({REGISTER_NAMES[(byte_offset - off) // 8]})"
            return name
    return f"byte {byte_offset}"


@dataclass(frozen=True)
class Header:
    raw: bytes
    magic: bytes
    version: int
    header_size: int
    block_size: int
    status: int
    dump_id: bytes
    generation: int
    crash_reason: int
    crash_vector: int
    failure: int
    crash_error_code: int
    crash_fault_addr: int
    partition_bytes: int
    dir_offset: int
    dir_bytes: int
    dir_crc: int
    crc_table_offset: int
    crc_table_bytes: int
    crc_table_crc: int
    body_offset: int
    body_bytes: int
    body_written: int
    end_offset: int
    chunk_size: int
    component_count: int
    area_count: int
    max_transfer: int
    min_transfer: int
    reserved_164: int
    failure_offset: int
    ram_bytes: int
    tsc_hz: int
    tsc_crash: int
    tsc_done: int
    reserved_208: int
    registers: tuple[int, ...]
    reserved_472: bytes
    header_crc: int

    @classmethod
    def parse(cls, raw: bytes) -> "Header":
        values = list(_HEADER.unpack(raw[:HEADER_SIZE]))
        regs_at = [name for name, _ in _HEADER_FIELDS].index("registers")
        values[regs_at:regs_at + 32] = [tuple(values[regs_at:regs_at + 32])]
        names = [name for name, _ in _HEADER_FIELDS]
        return cls(raw=bytes(raw[:HEADER_SIZE]), **dict(zip(names, values)))

    @property
    def computed_crc(self) -> int:
        return crc32c(self.raw[:HEADER_SIZE - 4])

    @property
    def crc_ok(self) -> bool:
        return self.computed_crc == self.header_crc

    @property
    def valid(self) -> bool:
        """Valid in the spec's sense: magic, version (and size) and CRC."""
        return self.magic == HEADER_MAGIC and self.version == VERSION and self.header_size == HEADER_SIZE and self.crc_ok

    @property
    def status_name(self) -> str:
        return enum_name(HeaderStatus, self.status)

    @property
    def reason_name(self) -> str:
        return enum_name(CrashReason, self.crash_reason)

    @property
    def nchunks(self) -> int:
        if self.chunk_size <= 0:
            return 0
        return -(-self.body_bytes // self.chunk_size)

    def register_dict(self) -> dict[str, int]:
        return {name: value for name, value in zip(REGISTER_NAMES, self.registers) if name != "reserved"}


@dataclass(frozen=True)
class Component:
    index: int
    name: str
    kind: int
    status: int
    reason: int
    first_area: int
    area_count: int
    flags: int
    reserved: int

    @property
    def kind_name(self) -> str:
        return enum_name(ComponentKind, self.kind)

    @property
    def status_name(self) -> str:
        return enum_name(ComponentStatus, self.status)


@dataclass(frozen=True)
class Area:
    index: int
    name: str
    phys_addr: int
    length: int
    disk_offset: int
    component: int
    flags: int
    reserved: int

    @property
    def volatile(self) -> bool:
        return bool(self.flags & AREA_VOLATILE)

    @property
    def padded_length(self) -> int:
        return round_up(self.length, PAGE)


@dataclass(frozen=True)
class EndMarker:
    magic: bytes
    version: int
    generation: int
    dump_id: bytes
    body_bytes: int
    nchunks: int
    crc_table_crc: int
    crc: int
    computed_crc: int


@dataclass(frozen=True)
class CrashRecord:
    area: int  # index of the area holding it
    magic: bytes
    version: int
    crash_reason: int
    crash_vector: int
    cpu: int
    crash_error_code: int
    crash_fault_addr: int
    tsc_crash: int
    registers: tuple[int, ...]
    fxsave: bytes

    def register_dict(self) -> dict[str, int]:
        return {name: value for name, value in zip(REGISTER_NAMES, self.registers) if name != "reserved"}


@dataclass(frozen=True)
class BadChunk:
    index: int
    offset: int  # partition offset
    length: int
    expected: int
    actual: int
    areas: tuple[str, ...]

    def describe(self) -> str:
        where = ", ".join(self.areas) if self.areas else "no area"
        return (
            f"chunk {self.index} at partition offset 0x{self.offset:x} ({self.length} bytes, areas: {where}): "
            f"CRC32C 0x{self.actual:08x}, table says 0x{self.expected:08x}"
        )


# Stages of a finding, in the order the reader works; they decide the classification.
STAGE_LEADER = "leader"
STAGE_TRAILER = "trailer"
STAGE_STRUCTURE = "structure"  # directory, areas, body padding, CRC table, end marker
STAGE_CHUNK = "chunk"
STAGE_CRASH_RECORD = "crash-record"


@dataclass(frozen=True)
class Finding:
    stage: str
    message: str
    offset: int | None = None  # partition offset concerned, when there is one

    @property
    def check(self) -> str:
        """The validator check that reports this finding."""
        return {STAGE_CHUNK: "chunk-crc", STAGE_CRASH_RECORD: "crash-record"}.get(self.stage, "format")

    def __str__(self) -> str:
        return self.message


@dataclass
class Dump:
    partition_offset: int
    partition_bytes: int
    block_size: int
    image_bytes: int
    status: str = "none"  # none / partial / corrupt / complete
    reason: str = ""  # one line: why this classification
    first_inconsistency: str | None = None
    findings: list[Finding] = field(default_factory=list)
    leader: Header | None = None
    trailer: Header | None = None  # None when the trailer block has no header magic
    trailer_matches: bool = False
    header: Header | None = None  # the header the layout was read from (leader, or a valid trailer)
    geometry_ok: bool = False
    directory_ok: bool = False
    components: list[Component] = field(default_factory=list)
    areas: list[Area] = field(default_factory=list)
    crc_table: tuple[int, ...] | None = None
    crc_table_ok: bool = False
    end_marker: EndMarker | None = None
    end_marker_ok: bool = False
    chunks_verified: bool = False
    chunk_count: int = 0
    bad_chunks: list[BadChunk] = field(default_factory=list)
    bad_chunk_count: int = 0
    crash_record: CrashRecord | None = None

    @property
    def extent(self) -> list[tuple[int, int]] | None:
        """Partition ranges [start, end) the writer may write: leader slot .. end marker, and the
        trailer block. None when no header says where the dump ends."""
        h = self.header
        if h is None or not self.geometry_ok:
            return None
        return [
            (LEADER_OFFSET, h.end_offset + PAGE),
            (self.partition_bytes - self.block_size, self.partition_bytes),
        ]

    @property
    def extent_bytes(self) -> int:
        """Size of the dump extent, as the guest's DONE line reports it; 0 when unknown."""
        ext = self.extent
        return sum(end - start for start, end in ext) if ext else 0

    @property
    def bytes(self) -> int:
        """The dump extent's size (what the guest's DONE line reports as bytes)."""
        return self.extent_bytes

    @property
    def generation(self) -> int | None:
        return self.header.generation if self.header else None

    @property
    def dump_id(self) -> bytes | None:
        return self.header.dump_id if self.header else None

    def findings_for(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def component_areas(self, component: Component) -> list[Area]:
        return [a for a in self.areas if a.component == component.index]

    def area_written(self, area: Area) -> bool:
        """True when every chunk the area touches lies within body_written."""
        h = self.header
        if h is None or not self.geometry_ok:
            return False
        written_end = h.body_offset + h.body_written
        if area.padded_length == 0:
            return area.disk_offset <= written_end
        last_chunk = (area.disk_offset + area.padded_length - 1 - h.body_offset) // h.chunk_size
        chunk_end = min(h.body_offset + (last_chunk + 1) * h.chunk_size, h.end_offset)
        return chunk_end <= written_end


# --------------------------------------------------------------------------------------------
# Image access
# --------------------------------------------------------------------------------------------


class Image:
    """Read-only byte access to an image: a path, an open binary file, an mmap or bytes.

    Files are read with pread a few MiB at a time, so memory stays bounded however big the
    image (the page cache does the caching). Reads never fail: past the end of the image they
    come back short.
    """

    def __init__(self, source):
        self._file = None
        self._fd = None
        self._buf = None
        if isinstance(source, (str, Path)):
            self._file = open(source, "rb")
            self._fd = self._file.fileno()
        elif isinstance(source, (bytes, bytearray, memoryview, mmap.mmap)):
            self._buf = source
        elif hasattr(source, "fileno"):
            self._fd = source.fileno()
        else:
            raise TypeError(f"cannot read an image from {type(source).__name__}")
        self.size = os.fstat(self._fd).st_size if self._fd is not None else len(self._buf)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        if self._buf is not None:
            return bytes(self._buf[offset:offset + length])
        return os.pread(self._fd, min(length, self.size - offset), offset)

    def first_data(self, start: int, end: int) -> int | None:
        """Where [start, end) first holds allocated data (a file: SEEK_DATA; a buffer: a
        non-zero byte), or None if the range is still a hole."""
        end = min(end, self.size)
        if start >= end:
            return None
        if self._fd is None:
            view = memoryview(self._buf)[start:end]
            nonzero = np.flatnonzero(np.frombuffer(view, np.uint8))
            return start + int(nonzero[0]) if len(nonzero) else None
        try:
            found = os.lseek(self._fd, start, os.SEEK_DATA)
        except OSError:  # ENXIO: nothing but hole from start to the end of the file
            return None
        return found if found < end else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "Image":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_image(source) -> Image:
    return Image(source)


class _Partition:
    """Partition-relative reads; None when a range leaves the partition or the image."""

    def __init__(self, image: Image, offset: int, size: int):
        self.image = image
        self.offset = offset
        self.size = size

    def read(self, off: int, n: int) -> bytes | None:
        if off < 0 or n < 0 or off + n > self.size:
            return None
        data = self.image.read(self.offset + off, n)
        return data if len(data) == n else None

    def available(self, off: int, n: int) -> bool:
        return 0 <= off and off + n <= self.size and self.offset + off + n <= self.image.size

    def crc(self, off: int, n: int) -> int | None:
        if not self.available(off, n):
            return None
        crc = 0
        for pos in range(off, off + n, _STEP):
            crc = google_crc32c.extend(crc, self.image.read(self.offset + pos, min(_STEP, off + n - pos)))
        return crc

    def first_nonzero(self, off: int, n: int) -> tuple[str, int] | None:
        """None if [off, off+n) is all zero, else ("nonzero", offset) or ("missing", offset)."""
        for pos in range(off, off + n, _STEP):
            length = min(_STEP, off + n - pos)
            data = self.read(pos, length)
            if data is None:
                return ("missing", pos)
            if data.count(0) != length:
                return ("nonzero", pos + int(np.flatnonzero(np.frombuffer(data, dtype=np.uint8))[0]))
        return None


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------


def read(
    source,
    partition_offset: int,
    partition_bytes: int,
    block_size: int | None = None,
    verify_chunks: bool = True,
) -> Dump:
    """Parse and classify the dump in the partition [partition_offset, +partition_bytes) of an
    image (path, open file, mmap, bytes or Image). block_size is the device's logical block
    size when known (it locates the trailer and must equal the header's)."""
    if isinstance(source, Image):
        return _Reader(source, partition_offset, partition_bytes, block_size, verify_chunks).run()
    with Image(source) as image:
        return _Reader(image, partition_offset, partition_bytes, block_size, verify_chunks).run()


def read_image(image_path: str | Path, verify_chunks: bool = True) -> Dump:
    """Find the dump partition through the image's GPT and read it (GptError if there is none)."""
    from harness import gpt

    offset, size, block = gpt.find_dump_partition(image_path)
    return read(image_path, offset, size, block, verify_chunks)


class _Reader:
    def __init__(self, image: Image, offset: int, size: int, block_size: int | None, verify_chunks: bool):
        self.part = _Partition(image, offset, max(0, size))
        self.expected_block = block_size
        self.verify_chunks = verify_chunks
        self.magic_found = False
        self.dump = Dump(
            partition_offset=offset,
            partition_bytes=size,
            block_size=block_size or 0,
            image_bytes=image.size,
        )

    def note(self, stage: str, message: str, offset: int | None = None) -> None:
        self.dump.findings.append(Finding(stage, message, offset))

    # -- top level ---------------------------------------------------------------------------

    def run(self) -> Dump:
        d = self.dump
        if self.part.offset + d.partition_bytes > self.part.image.size:
            self.note(
                STAGE_STRUCTURE,
                f"image is {self.part.image.size} bytes but the partition ends at "
                f"{self.part.offset + d.partition_bytes}: truncated",
            )
        if self.read_leader():
            self.read_trailer()
            if self.choose_geometry():
                self.read_directory()
                self.check_padding()
                if d.header.status == HeaderStatus.COMPLETE:
                    self.read_crc_table()
                    self.read_end_marker()
                    if self.verify_chunks:
                        self.check_chunks()
                self.read_crash_record()
        self.classify()
        return d

    # -- leader and trailer ------------------------------------------------------------------

    def read_leader(self) -> bool:
        d = self.dump
        magic = self.part.read(LEADER_OFFSET, 8)
        self.magic_found = magic == HEADER_MAGIC
        if not self.magic_found:
            self.note(STAGE_LEADER, "no dump header magic in the leader slot", LEADER_OFFSET)
            return False
        raw = self.part.read(LEADER_OFFSET, HEADER_SIZE)
        if raw is None:
            self.note(STAGE_LEADER, "leader header truncated by the end of the image", LEADER_OFFSET)
            return False
        d.leader = Header.parse(raw)
        if not self.header_valid(d.leader, "leader", STAGE_LEADER, LEADER_OFFSET):
            return True
        bad = self.part.first_nonzero(LEADER_OFFSET + HEADER_SIZE, PAGE - HEADER_SIZE)
        if bad:
            self.note(STAGE_LEADER, f"leader slot: {_zero_problem(bad)} after the header", bad[1])
        if self.expected_block is None and d.leader.block_size in BLOCK_SIZES:
            d.block_size = d.leader.block_size
        self.check_header_fields(d.leader, "leader", STAGE_LEADER)
        return True

    def header_valid(self, h: Header, which: str, stage: str, offset: int) -> bool:
        ok = True
        if h.version != VERSION:
            self.note(stage, f"{which}: version {h.version}, expected {VERSION}", offset + 8)
            ok = False
        if h.header_size != HEADER_SIZE:
            self.note(stage, f"{which}: header_size {h.header_size}, expected {HEADER_SIZE}", offset + 12)
            ok = False
        if not h.crc_ok:
            self.note(
                stage,
                f"{which}: header CRC32C 0x{h.computed_crc:08x}, header says 0x{h.header_crc:08x}",
                offset + 508,
            )
            ok = False
        return ok

    def read_trailer(self) -> None:
        d = self.dump
        if not d.block_size:
            d.block_size = 512
        b = d.block_size
        off = d.partition_bytes - b
        leader = d.leader
        status = leader.status if leader else None
        wants_trailer = status == HeaderStatus.COMPLETE
        if off < LEADER_OFFSET + PAGE:
            self.note(STAGE_TRAILER, f"partition of {d.partition_bytes} bytes has no room for a trailer")
            return
        raw = self.part.read(off, b)
        if raw is None or raw[:8] != HEADER_MAGIC:
            if wants_trailer:
                why = "beyond the end of the image" if raw is None else "no header magic"
                self.note(STAGE_TRAILER, f"trailer block: {why}, but the leader is COMPLETE", off)
            return
        d.trailer = Header.parse(raw)
        d.trailer_matches = d.trailer.raw == leader.raw
        if not d.trailer_matches:
            at = next(i for i in range(HEADER_SIZE) if d.trailer.raw[i] != leader.raw[i])
            self.note(
                STAGE_TRAILER,
                f"trailer differs from the leader at byte {at} ({header_field_at(at)})",
                off + at,
            )
        bad = self.part.first_nonzero(off + HEADER_SIZE, b - HEADER_SIZE)
        if bad:
            self.note(STAGE_TRAILER, f"trailer block: {_zero_problem(bad)} after the header", bad[1])

    def choose_geometry(self) -> bool:
        """Pick the header to read the rest with and check its geometry against the page."""
        d = self.dump
        if d.leader.valid:
            d.header = d.leader
        elif d.trailer is not None and d.trailer.valid:
            # The leader is damaged; the trailer still tells where things are, for diagnosis.
            d.header = d.trailer
            self.check_header_fields(d.trailer, "trailer", STAGE_TRAILER)
        else:
            return False
        d.geometry_ok = self.check_geometry(d.header)
        return d.geometry_ok

    def check_header_fields(self, h: Header, which: str, stage: str) -> None:
        """Field rules that do not locate anything (geometry is check_geometry's)."""
        base = LEADER_OFFSET if which == "leader" else self.dump.partition_bytes - self.dump.block_size
        bad = lambda msg, at: self.note(stage, f"{which}: {msg}", base + at)
        if self.expected_block is not None and h.block_size != self.expected_block:
            bad(f"block_size {h.block_size}, but the device's block size is {self.expected_block}", 16)
        elif h.block_size not in BLOCK_SIZES:
            bad(f"block_size {h.block_size} (512 or 4096)", 16)
        if h.status not in HeaderStatus._value2member_map_:
            bad(f"status {h.status} unknown", 20)
        if h.generation < 1:
            bad("generation 0 (the first dump is 1)", 40)
        if h.crash_reason not in CrashReason._value2member_map_:
            bad(f"crash_reason {h.crash_reason} unknown", 44)
        if h.crash_reason == CrashReason.NMI and h.crash_vector != NMI_VECTOR:
            bad(f"crash_vector {h.crash_vector} for an NMI (expected 2)", 48)
        elif h.crash_vector > 255 and h.crash_vector != NO_VECTOR:
            bad(f"crash_vector {h.crash_vector} is no x86 vector", 48)
        if h.status != HeaderStatus.FAILED and (h.failure or h.failure_offset):
            bad(f"failure {h.failure} / failure_offset {h.failure_offset} set, but status is {h.status_name}", 52)
        if h.failure_offset >= max(h.partition_bytes, 1) and h.failure_offset:
            bad(f"failure_offset 0x{h.failure_offset:x} beyond the partition", 168)
        if h.status == HeaderStatus.COMPLETE and h.body_written != h.body_bytes:
            bad(f"COMPLETE with body_written {h.body_written} != body_bytes {h.body_bytes}", 128)
        if h.status == HeaderStatus.IN_PROGRESS and h.crc_table_crc != 0:
            bad(f"IN_PROGRESS with crc_table_crc 0x{h.crc_table_crc:08x} (0 until the table is written)", 108)
        if h.body_written > h.body_bytes:
            bad(f"body_written {h.body_written} > body_bytes {h.body_bytes}", 128)
        if h.max_transfer and h.min_transfer > h.max_transfer:
            bad(f"min_transfer {h.min_transfer} > max_transfer {h.max_transfer}", 156)
        if h.reserved_164:
            bad("reserved field at 164 not zero", 164)
        if h.reserved_208:
            bad("reserved field at 208 not zero", 208)
        if h.registers[31]:
            bad("register slot 31 (reserved) not zero", 216 + 31 * 8)
        if h.reserved_472 != bytes(36):
            bad("reserved bytes 472..507 not zero", 472)

    def check_geometry(self, h: Header) -> bool:
        """Every location and size in the header, against each other and the partition.
        Nothing is read beyond the header unless all of these hold."""
        d = self.dump
        stage = STAGE_LEADER if h is d.leader else STAGE_TRAILER
        which = "leader" if h is d.leader else "trailer"
        problems = []
        if h.partition_bytes != d.partition_bytes:
            problems.append(f"partition_bytes {h.partition_bytes}, the partition is {d.partition_bytes}")
        if h.dir_offset != DIR_OFFSET:
            problems.append(f"dir_offset {h.dir_offset}, expected {DIR_OFFSET}")
        entries = h.component_count + h.area_count
        if entries > MAX_DIRECTORY_ENTRIES:
            problems.append(f"{h.component_count} components + {h.area_count} areas exceed the reader's limit")
        if h.dir_bytes % PAGE or h.dir_bytes < round_up(DIR_HEADER_SIZE + ENTRY_SIZE * entries, PAGE):
            problems.append(
                f"dir_bytes {h.dir_bytes} is not a page multiple holding {h.component_count} components "
                f"and {h.area_count} areas"
            )
        if h.crc_table_offset != h.dir_offset + h.dir_bytes:
            problems.append(f"crc_table_offset {h.crc_table_offset} != dir_offset + dir_bytes")
        if h.body_bytes % PAGE:
            problems.append(f"body_bytes {h.body_bytes} not a page multiple")
        if h.chunk_size != writer_chunk_size(h.body_bytes):
            problems.append(
                f"chunk_size {h.chunk_size}, the spec's writer uses {writer_chunk_size(h.body_bytes)} "
                f"for {h.body_bytes} body bytes"
            )
        elif h.crc_table_bytes != crc_table_bytes_for(h.nchunks):
            problems.append(f"crc_table_bytes {h.crc_table_bytes} for {h.nchunks} chunks")
        if h.body_offset != h.crc_table_offset + h.crc_table_bytes:
            problems.append(f"body_offset {h.body_offset} != crc_table_offset + crc_table_bytes")
        if h.end_offset != h.body_offset + h.body_bytes:
            problems.append(f"end_offset {h.end_offset} != body_offset + body_bytes")
        if h.end_offset + PAGE > d.partition_bytes - d.block_size:
            problems.append(f"dump ends at {h.end_offset + PAGE}, beyond the trailer block")
        for p in problems:
            self.note(stage, f"{which}: {p}")
        return not problems

    # -- directory and body ------------------------------------------------------------------

    def read_directory(self) -> None:
        d, h = self.dump, self.dump.header
        first_finding = len(d.findings)
        note = lambda msg, at=None: self.note(STAGE_STRUCTURE, f"directory: {msg}", at)
        crc = self.part.crc(h.dir_offset, h.dir_bytes)
        if crc is None:
            note("beyond the end of the image", h.dir_offset)
            return
        if crc != h.dir_crc:
            note(f"CRC32C 0x{crc:08x}, header says 0x{h.dir_crc:08x}", h.dir_offset)
        cc, ac = h.component_count, h.area_count
        used = DIR_HEADER_SIZE + ENTRY_SIZE * (cc + ac)
        raw = self.part.read(h.dir_offset, used)
        magic, dcc, dac, csize, asize = struct.unpack_from("<8sIIII", raw)
        if magic != DIR_MAGIC:
            note(f"magic {magic!r}, expected {DIR_MAGIC!r}", h.dir_offset)
        if (dcc, dac) != (cc, ac):
            note(f"counts {dcc} components / {dac} areas, header says {cc} / {ac}", h.dir_offset + 8)
        if (csize, asize) != (ENTRY_SIZE, ENTRY_SIZE):
            note(f"entry sizes {csize} / {asize}, expected 64 / 64", h.dir_offset + 16)
        if raw[24:DIR_HEADER_SIZE] != bytes(DIR_HEADER_SIZE - 24):
            note("header bytes 24..63 not zero", h.dir_offset + 24)
        bad = self.part.first_nonzero(h.dir_offset + used, h.dir_bytes - used)
        if bad:
            note(f"{_zero_problem(bad)} after the last entry", bad[1])

        for i, values in enumerate(struct.iter_unpack("<32sIIIIIIQ", raw[DIR_HEADER_SIZE:DIR_HEADER_SIZE + ENTRY_SIZE * cc])):
            name, kind, status, reason, first, count, flags, reserved = values
            at = h.dir_offset + DIR_HEADER_SIZE + ENTRY_SIZE * i
            text = self.check_name(name, f"component {i}", at)
            d.components.append(Component(i, text, kind, status, reason, first, count, flags, reserved))
        area_base = DIR_HEADER_SIZE + ENTRY_SIZE * cc
        for i, values in enumerate(struct.iter_unpack("<24sQQQIIQ", raw[area_base:used])):
            name, phys, length, disk_offset, comp, flags, reserved = values
            at = h.dir_offset + area_base + ENTRY_SIZE * i
            text = self.check_name(name, f"area {i}", at)
            d.areas.append(Area(i, text, phys, length, disk_offset, comp, flags, reserved))
        self.check_components()
        self.check_areas()
        d.directory_ok = len(d.findings) == first_finding

    def check_name(self, raw: bytes, what: str, at: int) -> str:
        text = raw.split(b"\0", 1)[0]
        if any(c >= 0x80 for c in raw) or raw[len(text):] != bytes(len(raw) - len(text)):
            self.note(STAGE_STRUCTURE, f"directory: {what} name {raw!r} is not NUL-padded ASCII", at)
        return text.decode("ascii", "replace")

    def check_components(self) -> None:
        d = self.dump
        ac = len(d.areas)
        crash_records = 0
        # Area ranges must not overlap, so together they claim at most ac entries; when they
        # claim more, walking every range could take components x areas steps: don't.
        claimed = sum(c.area_count for c in d.components)
        walk_areas = claimed <= ac
        if not walk_areas:
            self.note(STAGE_STRUCTURE, f"directory: components claim {claimed} area entries, there are {ac}")
        for c in d.components:
            bad = lambda msg: self.note(STAGE_STRUCTURE, f"component {c.index} ({c.name}): {msg}")
            if c.kind not in ComponentKind._value2member_map_:
                bad(f"kind {c.kind} unknown")
            if c.status not in ComponentStatus._value2member_map_:
                bad(f"status {c.status} unknown")
            if c.status == ComponentStatus.DUMPED and c.reason:
                bad(f"DUMPED with reason {c.reason}")
            if c.status != ComponentStatus.DUMPED and c.area_count:
                bad(f"{c.status_name} but has {c.area_count} areas (only DUMPED components have areas)")
            if c.flags:
                bad(f"flags 0x{c.flags:x} (0 in version 1)")
            if c.reserved:
                bad("reserved field not zero")
            in_range = c.area_count == 0 or c.first_area + c.area_count <= ac
            if not in_range:
                bad(f"areas {c.first_area}..{c.first_area + c.area_count - 1} beyond the {ac} area entries")
            elif walk_areas:
                for a in d.areas[c.first_area:c.first_area + c.area_count]:
                    if a.component != c.index:
                        bad(f"its area {a.index} ({a.name}) names component {a.component}")
            if c.kind == ComponentKind.CRASH_RECORD:
                crash_records += 1
                if c.status == ComponentStatus.DUMPED:
                    if c.area_count != 1 or not in_range or d.areas[c.first_area].length != CRASH_RECORD_BYTES:
                        bad(f"a crash record is one area of {CRASH_RECORD_BYTES} bytes")
                    elif not d.areas[c.first_area].volatile:
                        bad("the crash record area is not marked VOLATILE")
        if crash_records > 1:
            self.note(STAGE_STRUCTURE, f"directory: {crash_records} CRASH_RECORD components")

    def check_areas(self) -> None:
        d, h = self.dump, self.dump.header
        expected = h.body_offset
        comps = d.components
        for a in d.areas:
            bad = lambda msg: self.note(STAGE_STRUCTURE, f"area {a.index} ({a.name}): {msg}", a.disk_offset)
            if a.component >= len(comps):
                bad(f"component {a.component} does not exist")
            else:
                c = comps[a.component]
                if not c.first_area <= a.index < c.first_area + c.area_count:
                    bad(f"outside the area range of its component {c.index} ({c.name})")
            if a.flags & ~AREA_VOLATILE:
                bad(f"flags 0x{a.flags:x} (only bit 0, VOLATILE, is defined)")
            if a.reserved:
                bad("reserved field not zero")
            if a.phys_addr + a.length > 1 << 64:
                bad("phys_addr + length overflows 64 bits")
            if a.disk_offset != expected:
                bad(f"disk_offset 0x{a.disk_offset:x}, expected 0x{expected:x} (areas are back to back)")
                expected = None
                break
            expected = a.disk_offset + a.padded_length
            if expected > h.end_offset:
                bad(f"ends at 0x{expected:x}, beyond the body end 0x{h.end_offset:x}")
                expected = None
                break
        if expected is not None and expected != h.end_offset:
            self.note(
                STAGE_STRUCTURE,
                f"areas fill {expected - h.body_offset} body bytes, header says body_bytes {h.body_bytes}",
                expected,
            )

    def check_padding(self) -> None:
        """The bytes between an area's data and the next page boundary are zero."""
        d = self.dump
        if not d.directory_ok:
            return
        for a in d.areas:
            if a.length == a.padded_length or not d.area_written(a):
                continue
            bad = self.part.first_nonzero(a.disk_offset + a.length, a.padded_length - a.length)
            if bad:
                self.note(STAGE_STRUCTURE, f"area {a.index} ({a.name}): padding: {_zero_problem(bad)}", bad[1])

    # -- CRC table, end marker, chunks -------------------------------------------------------

    def read_crc_table(self) -> None:
        d, h = self.dump, self.dump.header
        n = h.nchunks
        raw = self.part.read(h.crc_table_offset, h.crc_table_bytes)  # at most 256 KiB (geometry)
        if raw is None:
            self.note(STAGE_STRUCTURE, "CRC table: beyond the end of the image", h.crc_table_offset)
            return
        crc = crc32c(raw)
        ok = True
        if crc != h.crc_table_crc:
            self.note(
                STAGE_STRUCTURE,
                f"CRC table: CRC32C 0x{crc:08x}, header says 0x{h.crc_table_crc:08x}",
                h.crc_table_offset,
            )
            ok = False
        tail = raw[4 * n:]
        if tail.count(0) != len(tail):
            at = 4 * n + next(i for i, c in enumerate(tail) if c)
            self.note(STAGE_STRUCTURE, f"CRC table: nonzero byte after the {n} entries", h.crc_table_offset + at)
            ok = False
        d.crc_table = struct.unpack_from(f"<{n}I", raw)
        d.crc_table_ok = ok

    def read_end_marker(self) -> None:
        d, h = self.dump, self.dump.header
        off = h.end_offset
        raw = self.part.read(off, PAGE)
        note = lambda msg, at=0: self.note(STAGE_STRUCTURE, f"end marker: {msg}", off + at)
        if raw is None:
            note("beyond the end of the image")
            return
        magic, version, generation, dump_id, body_bytes, nchunks, table_crc = struct.unpack_from("<8sII16sQII", raw)
        crc = struct.unpack_from("<I", raw, PAGE - 4)[0]
        m = EndMarker(magic, version, generation, dump_id, body_bytes, nchunks, table_crc, crc, crc32c(raw[:PAGE - 4]))
        d.end_marker = m
        first = len(d.findings)
        if magic != END_MAGIC:
            note(f"magic {magic!r}, expected {END_MAGIC!r}")
        if m.computed_crc != crc:
            note(f"CRC32C 0x{m.computed_crc:08x}, marker says 0x{crc:08x}", PAGE - 4)
        if version != VERSION:
            note(f"version {version}", 8)
        if generation != h.generation:
            note(f"generation {generation}, header says {h.generation}", 12)
        if dump_id != h.dump_id:
            note(f"dump_id {dump_id.hex()}, header says {h.dump_id.hex()}", 16)
        if body_bytes != h.body_bytes:
            note(f"body_bytes {body_bytes}, header says {h.body_bytes}", 32)
        if nchunks != h.nchunks:
            note(f"nchunks {nchunks}, expected {h.nchunks}", 40)
        if table_crc != h.crc_table_crc:
            note(f"crc_table_crc 0x{table_crc:08x}, header says 0x{h.crc_table_crc:08x}", 44)
        zeros = raw[48:PAGE - 4]
        if zeros.count(0) != len(zeros):
            note("nonzero byte in the zero region 48..4091", 48 + next(i for i, c in enumerate(zeros) if c))
        d.end_marker_ok = len(d.findings) == first

    def check_chunks(self) -> None:
        d, h = self.dump, self.dump.header
        if not d.crc_table_ok:
            return
        cs = h.chunk_size
        d.chunk_count = h.nchunks
        # Read a few MiB at a time, a whole number of chunks each (or one chunk in pieces,
        # for the big chunks of huge bodies).
        per_step = max(1, _STEP // cs)
        for first in range(0, h.nchunks, per_step):
            step_off = h.body_offset + first * cs
            step_len = min(per_step * cs, h.end_offset - step_off)
            if cs > _STEP:
                crc = self.part.crc(step_off, step_len)
                actual = None if crc is None else [crc]
            else:
                data = self.part.read(step_off, step_len)
                actual = None if data is None else [
                    google_crc32c.value(data[rel:rel + cs]) for rel in range(0, step_len, cs)
                ]
            if actual is None:
                self.note(STAGE_CHUNK, f"body beyond the end of the image from chunk {first}", step_off)
                d.bad_chunk_count += h.nchunks - first
                return
            for k, crc in enumerate(actual, first):
                if crc != d.crc_table[k]:
                    self.bad_chunk(k, crc)
        d.chunks_verified = True

    def bad_chunk(self, k: int, actual: int) -> None:
        d, h = self.dump, self.dump.header
        d.bad_chunk_count += 1
        if len(d.bad_chunks) >= MAX_LISTED_BAD_CHUNKS:
            return
        start = h.body_offset + k * h.chunk_size
        end = min(start + h.chunk_size, h.end_offset)
        areas = tuple(
            a.name or f"area {a.index}" for a in self.areas_between(start, end)
        )
        bc = BadChunk(k, start, end - start, d.crc_table[k], actual, areas)
        d.bad_chunks.append(bc)
        self.note(STAGE_CHUNK, bc.describe(), start)

    def areas_between(self, start: int, end: int) -> list[Area]:
        """Areas whose padded data overlaps [start, end) of the partition."""
        areas = self.dump.areas
        if self.dump.directory_ok:  # areas are back to back in disk order: bisect
            i = max(0, bisect.bisect_right([a.disk_offset for a in areas], start) - 1)
            areas = areas[i:]
        found = []
        for a in areas:
            if a.disk_offset < end and a.disk_offset + a.padded_length > start:
                found.append(a)
            elif self.dump.directory_ok and a.disk_offset >= end:
                break
        return found

    # -- crash record ------------------------------------------------------------------------

    def read_crash_record(self) -> None:
        d, h = self.dump, self.dump.header
        if not d.directory_ok:
            return
        comps = [c for c in d.components if c.kind == ComponentKind.CRASH_RECORD and c.status == ComponentStatus.DUMPED]
        if len(comps) != 1:
            return
        area = d.areas[comps[0].first_area]
        if not d.area_written(area):
            return
        raw = self.part.read(area.disk_offset, CRASH_RECORD_BYTES)
        if raw is None:
            return
        magic, version, reason, vector, cpu, error_code, fault_addr, tsc = struct.unpack_from("<8sIIIIQQQ", raw)
        regs = struct.unpack_from("<32Q", raw, 48)
        rec = CrashRecord(area.index, magic, version, reason, vector, cpu, error_code, fault_addr, tsc, regs, raw[512:])
        d.crash_record = rec
        note = lambda msg, at=0: self.note(STAGE_CRASH_RECORD, f"crash record: {msg}", area.disk_offset + at)
        if magic != CRASH_MAGIC:
            note(f"magic {magic!r}, expected {CRASH_MAGIC!r}")
        if version != VERSION:
            note(f"version {version}", 8)
        if cpu != 0:
            note(f"cpu {cpu}, expected 0", 20)
        if raw[304:512] != bytes(208):
            note("nonzero byte in the zero region 304..511", 304)
        for name, rec_value, hdr_value, at in (
            ("crash_reason", reason, h.crash_reason, 12),
            ("crash_vector", vector, h.crash_vector, 16),
            ("crash_error_code", error_code, h.crash_error_code, 24),
            ("crash_fault_addr", fault_addr, h.crash_fault_addr, 32),
            ("tsc_crash", tsc, h.tsc_crash, 40),
        ):
            if rec_value != hdr_value:
                note(f"{name} 0x{rec_value:x}, header says 0x{hdr_value:x}", at)
        for i, (r, hv) in enumerate(zip(regs, h.registers)):
            if r != hv:
                note(f"register {REGISTER_NAMES[i]} 0x{r:x}, header says 0x{hv:x}", 48 + 8 * i)

    # -- classification ----------------------------------------------------------------------

    def classify(self) -> None:
        d = self.dump
        stages = lambda *s: [f for f in d.findings if f.stage in s]
        leader = d.leader
        if leader is None and not self.magic_found:
            d.status = "none"
            d.reason = d.first_inconsistency = "no dump header magic in the leader slot"
            return
        first_leader = stages(STAGE_LEADER)
        if first_leader:
            self.corrupt(first_leader[0])
            return
        if leader.status in (HeaderStatus.IN_PROGRESS, HeaderStatus.FAILED):
            first_trailer = stages(STAGE_TRAILER)
            if first_trailer:
                self.corrupt(first_trailer[0])
                return
            d.status = "partial"
            if leader.status == HeaderStatus.FAILED:
                d.reason = (
                    f"dump FAILED: errno {leader.failure} at partition offset 0x{leader.failure_offset:x}, "
                    f"{leader.body_written} of {leader.body_bytes} body bytes written"
                )
            else:
                d.reason = f"dump IN_PROGRESS: {leader.body_written} of {leader.body_bytes} body bytes written"
            return
        # COMPLETE (any other status was a leader finding)
        first = stages(STAGE_LEADER, STAGE_TRAILER, STAGE_STRUCTURE, STAGE_CHUNK)
        if first:
            self.corrupt(first[0])
            return
        if not d.chunks_verified:
            d.status = "corrupt"
            d.reason = d.first_inconsistency = "chunk CRCs not verified"
            return
        d.status = "complete"
        d.reason = f"complete: {leader.body_bytes} body bytes, {d.chunk_count} chunks verified"

    def corrupt(self, finding: Finding) -> None:
        self.dump.status = "corrupt"
        self.dump.first_inconsistency = self.dump.reason = finding.message


def _zero_problem(bad: tuple[str, int]) -> str:
    kind, at = bad
    if kind == "missing":
        return f"beyond the end of the image at partition offset 0x{at:x}"
    return f"nonzero byte at partition offset 0x{at:x}"
