"""Reader of the dumpbed dump format, version 4 and version 3 (docs/dump-format.md). Pure: no QEMU.

read() parses a dump partition into dataclasses and classifies the dump as none /
unsupported / partial / corrupt / complete exactly as the spec's last section says. It never
raises on what it finds on the disk: every problem becomes a Finding, in the order it was
found, so the first inconsistency can be named. Hostile input is bounded: every size and
count is checked against the partition (and the reader's limits) before anything is allocated
or looped over, and big regions (the directory slot, the body) are read a few MiB at a time.

Version 3 keeps two directory slots and two CRC table slots; the leader names the one it
vouches for (`slot`), or none yet (0). The reader reads only what the leader vouches for: the
other slot holds an earlier checkpoint (or nothing) and is never looked at. Version 4 adds
compressed bodies (`compression` 1: each area's data as LZ4 frames, harness/dumpbed/reader/frames.py);
a version 3 dump reads as a version 4 one with compression 0. Whatever the compression, an
area's data is read through one accessor, Dump.read_area.

The chunk CRCs of the body come from Image.chunk_crcs(), which a subclass may serve from a
cache (a caller that classifies many states of one disk need not re-read the body each time).

The directory's records and their rules are in harness/dumpbed/reader/dumpdir.py; this module re-exports them.
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

from dumpbed.guest_interface import Errno
from dumpbed.reader import dumpdir, frames
from dumpbed.reader.dumpdir import (  # noqa: F401  (re-exported)
    AREA_ENTRY_SIZE,
    CALL_ENTRY_SIZE,
    COMPONENT_ENTRY_SIZE,
    CRASH_RECORD_BYTES,
    DIR_HEADER_SIZE,
    DIR_MAGIC,
    MAX_DIRECTORY_ENTRIES,
    NO_COMPONENT,
    PAGE,
    VIOLATION_ENTRY_SIZE,
    Area,
    AreaFlag,
    CallOp,
    CallOutcome,
    CallRecord,
    Component,
    ComponentFlag,
    ComponentKind,
    ComponentStatus,
    DirectoryHeader,
    Violation,
    enum_name,
    round_up,
)
from dumpbed.units import KiB, MiB

HEADER_SIZE = 512
LEADER_OFFSET = 65536
DIR_OFFSET = 69632
VERSION = 4  # the version this reader's page describes
READ_VERSIONS = (3, 4)  # the versions it reads (version 3: as version 4 with compression 0)
COMPRESSION_NAMES = {0: "none", 1: "lz4"}
SLOTS = (1, 2)  # the directory and CRC table slots a leader may name (0: none yet)
BLOCK_SIZES = (512, 4096)
WRITER_CHUNK_SIZE = 65536
WRITER_DIR_BYTES = 98304  # the dumpbed guest's directory slot (docs/dump-format.md, "Layout")
WRITER_TABLE_LIMIT = 256 * KiB
NO_VECTOR = 0xFFFFFFFF
NMI_VECTOR = 2
MAX_LEVEL = 9
AREA_VOLATILE = AreaFlag.VOLATILE
MAX_LISTED_BAD_CHUNKS = 64
CHECKPOINT_BYTES = 64 * MiB  # the writer checkpoints at every 64 MiB of body
_STEP = 8 * MiB  # bytes read at a time from big regions

HEADER_MAGIC = b"DBEDDUMP"
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


class DeviceRole(IntEnum):
    PRIMARY = 1
    SECONDARY = 2


def crc32c(data: bytes) -> int:
    return google_crc32c.value(bytes(data))


def writer_chunk_size(partition_bytes: int) -> int:
    """The chunk size the partition size fixes: 64 KiB, doubled while the table for the whole
    partition would exceed 256 KiB."""
    size = WRITER_CHUNK_SIZE
    while round_up(4 * -(-partition_bytes // size), PAGE) > WRITER_TABLE_LIMIT:
        size *= 2
    return size


def crc_table_bytes_for(partition_bytes: int) -> int:
    """The CRC table slot's capacity for a partition (at least one page)."""
    chunks = -(-partition_bytes // writer_chunk_size(partition_bytes))
    return max(PAGE, round_up(4 * chunks, PAGE))


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
    ("area_count", "I"), ("max_transfer", "I"), ("min_transfer", "I"), ("level", "I"),
    ("failure_offset", "Q"), ("ram_bytes", "Q"), ("tsc_hz", "Q"), ("tsc_crash", "Q"),
    ("tsc_done", "Q"), ("estimate_bytes", "Q"), ("registers", "32Q"), ("chunks_sealed", "I"),
    ("device_role", "I"), ("restart_error", "I"), ("slot", "I"), ("restart_offset", "Q"),
    ("compression", "I"), ("reserved_500", "8s"), ("header_crc", "I"),
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
    level: int
    failure_offset: int
    ram_bytes: int
    tsc_hz: int
    tsc_crash: int
    tsc_done: int
    estimate_bytes: int
    registers: tuple[int, ...]
    chunks_sealed: int
    device_role: int
    restart_error: int
    slot: int
    restart_offset: int
    compression: int  # version 3: reserved (0)
    reserved_500: bytes
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
        """A header of a version this reader reads: magic, version, size and CRC (the field
        rules aside)."""
        return (self.magic == HEADER_MAGIC and self.version in READ_VERSIONS and self.header_size == HEADER_SIZE
                and self.crc_ok)

    @property
    def of_another_version(self) -> bool:
        """A valid header of another version: the magic, header_size and CRC at 508 that every
        dumpbed version shares, and a version this reader does not read."""
        return (self.magic == HEADER_MAGIC and self.version not in READ_VERSIONS and self.header_size == HEADER_SIZE
                and self.crc_ok)

    @property
    def complete(self) -> bool:
        return self.status == HeaderStatus.COMPLETE

    @property
    def status_name(self) -> str:
        return enum_name(HeaderStatus, self.status)

    @property
    def compression_name(self) -> str:
        return COMPRESSION_NAMES.get(self.compression, f"unknown({self.compression})")

    @property
    def reason_name(self) -> str:
        return enum_name(CrashReason, self.crash_reason)

    @property
    def device_role_name(self) -> str:
        return enum_name(DeviceRole, self.device_role)

    @property
    def nchunks(self) -> int:
        """Chunks of the finished body (0 until COMPLETE: body_bytes is 0)."""
        if self.chunk_size <= 0:
            return 0
        return -(-self.body_bytes // self.chunk_size)

    @property
    def body_end(self) -> int:
        """Partition offset where the body described so far ends."""
        return self.end_offset if self.complete else self.body_offset + self.body_written

    @property
    def sealed_chunks(self) -> int:
        """Chunks whose CRC the table vouches for (= nchunks when COMPLETE, a field rule)."""
        return self.chunks_sealed

    @property
    def sealed_end(self) -> int:
        """Partition offset where the sealed chunks end (the last, short chunk of a COMPLETE
        body ends with it)."""
        return self.end_offset if self.complete else self.body_offset + self.chunks_sealed * self.chunk_size

    @property
    def dir_slot_offset(self) -> int:
        """Partition offset of the directory slot this header names (slot 1 or 2)."""
        return self.dir_offset + (self.slot - 1) * self.dir_bytes

    @property
    def table_slot_offset(self) -> int:
        """Partition offset of the CRC table slot this header names (slot 1 or 2)."""
        return self.crc_table_offset + (self.slot - 1) * self.crc_table_bytes

    def register_dict(self) -> dict[str, int]:
        return {name: value for name, value in zip(REGISTER_NAMES, self.registers) if name != "reserved"}


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
STAGE_FRAME = "frame"  # a compressed area's frames (after the chunks: a damaged chunk is named first)
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
    status: str = "none"  # none / unsupported / partial / corrupt / complete
    reason: str = ""  # one line: why this classification
    first_inconsistency: str | None = None  # corrupt: the first one found (none: why there is no dump)
    findings: list[Finding] = field(default_factory=list)
    version: int | None = None  # the leader's format version, when it has the header magic
    leader: Header | None = None  # parsed whenever the leader slot has the header magic
    trailer: Header | None = None  # the trailer of this dump, when the trailer block holds one
    trailer_matches: bool = False
    stale_trailer: Header | None = None  # another dump's trailer under an unfinished leader: ignored
    header: Header | None = None  # the header the layout was read from (the leader, or for the
    # diagnosis of a damaged leader a valid trailer); None for none and unsupported dumps
    geometry_ok: bool = False
    directory_ok: bool = False
    directory_header: DirectoryHeader | None = None
    components: list[Component] = field(default_factory=list)
    areas: list[Area] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    crc_table: tuple[int, ...] | None = None  # the valid entries (the first chunks_sealed)
    crc_table_ok: bool = False
    end_marker: EndMarker | None = None
    end_marker_ok: bool = False
    chunks_verified: bool = False  # every sealed chunk was checked against the table
    chunk_count: int = 0  # chunks checked
    bad_chunks: list[BadChunk] = field(default_factory=list)
    bad_chunk_count: int = 0
    # the sealed chunks' CRC32C as the image held them (check_chunks), whatever the table says:
    # a caller that proves other bytes equal to the image's takes their CRCs from here
    chunk_crcs: list[int] | None = field(default=None, repr=False, compare=False)
    crash_record: CrashRecord | None = None
    partial_area: int | None = None  # the area that may be listed as far as written (dumpdir.partial_area)
    frame_indexes: dict[int, frames.FrameIndex] = field(default_factory=dict, repr=False)  # by area index
    _last_frame: tuple | None = field(default=None, repr=False)  # (image, area, k, data): read_area's cache

    def __getstate__(self) -> dict:
        """Pickled (the validation sends a dump to its sweep's process) without read_area's cache:
        it holds the image read, an open file of this process."""
        return {**self.__dict__, "_last_frame": None}

    @property
    def compression(self) -> int:
        """How the body holds the areas' data: 0 as it is (version 3 too), 1 LZ4 frames."""
        return self.header.compression if self.header is not None else 0

    def read_area(self, image: "Image", area: Area, pos: int, n: int, out: bytearray | None = None
                  ) -> bytes | memoryview:
        """Data bytes [pos, pos+n) of an area (clipped to its length), from the image the dump
        was read from: the one way to an area's data. Uncompressed: the bytes at its
        disk_offset (short past the end of the image); with `out` (at least n bytes), read into
        it and a view of them returned, for a caller that reads a GiB a step at a time into one
        buffer. Compressed: the frames holding them, decoded (only those; the last one decoded
        is kept for the next read), into `out` too when given; a frame that breaks a rule or
        lies past the image raises frames.AreaDataError (its raw_crc checked again only when
        the reader's walk did not decode it already)."""
        n = min(n, area.length - pos)
        if n <= 0 or pos < 0:
            return b""
        if self.compression != 1:
            at = self.partition_offset + area.disk_offset + pos
            if out is not None:
                return memoryview(out)[:image.read_into(at, memoryview(out)[:n])]
            return image.read(at, n)
        index = self.frame_index(image, area)
        first, last = pos // frames.FRAME_DATA, (pos + n - 1) // frames.FRAME_DATA
        if last >= len(index.frames):
            raise frames.AreaDataError(
                f"{area_label(area)}: its data from byte {len(index.frames) * frames.FRAME_DATA} "
                f"cannot be read: {index.problem or 'no frame holds it'}")
        # the image itself, not its id(): an id may be reused by another image once this one is gone
        kept = self._last_frame
        cached = kept[2:] if kept and kept[0] is image and kept[1] == area.index else None
        start = pos - first * frames.FRAME_DATA
        # decoded straight into `out` when the frames' data starts at pos and fits it
        into = out if out is not None and start == 0 and \
            len(out) >= sum(f.raw_bytes for f in index.frames[first:last + 1]) else None
        data = frames.decode_range(self._partition(image).read, index, first, last, cached, into)
        self._last_frame = (image, area.index, last, bytes(data[len(data) - index.frames[last].raw_bytes:]))
        if into is not None:
            return data[:n]
        if out is not None:
            out[:n] = data[start:start + n]
            return memoryview(out)[:n]
        return bytes(data[start:start + n])

    def frame_index(self, image: "Image", area: Area) -> frames.FrameIndex:
        """The frames of a compressed area: those the reader checked, or (an area it was not
        asked to check: written, not sealed) their headers walked now."""
        index = self.frame_indexes.get(area.index)
        if index is None:
            index = frames.walk(self._partition(image).read, area_label(area), area.disk_offset, area.length,
                                area.stored_bytes, area.index == self.partial_area, decode=False)
            self.frame_indexes[area.index] = index
        return index

    def _partition(self, image: "Image") -> "_Partition":
        return _Partition(image, self.partition_offset, self.partition_bytes)

    @property
    def complete_header(self) -> bool:
        return self.header is not None and self.header.complete

    @property
    def slot(self) -> int | None:
        """The directory and table slot the header vouches for (0: none yet)."""
        return self.header.slot if self.header else None

    @property
    def extent(self) -> list[tuple[int, int]] | None:
        """Partition ranges [start, end) the writer may have written, as the page's "The dump
        extent" says: from the leader slot to the end marker for a COMPLETE leader, to 64 MiB
        of body past its body_written for an IN_PROGRESS or FAILED one (the leader on disk lags
        the writes by less than a checkpoint; slot 0 included), and the trailer block. None
        when no header of this dump says where (a none dump: nothing was written)."""
        h = self.header
        if h is None or not self.geometry_ok:
            return None
        trailer = self.partition_bytes - self.block_size
        if h.complete:
            end = h.end_offset + PAGE
        else:
            end = min(h.body_offset + h.body_written + CHECKPOINT_BYTES, trailer)
        return [(LEADER_OFFSET, end), (trailer, self.partition_bytes)]

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

    def component_calls(self, component: Component) -> list[CallRecord]:
        return [r for r in self.calls if r.component == component.index]

    def component_violations(self, component: Component) -> list[Violation]:
        return [v for v in self.violations if v.component == component.index]

    def area_written(self, area: Area) -> bool:
        """True when the area's padded data lies within the body written (body_written)."""
        h = self.header
        if h is None or not self.geometry_ok:
            return False
        return h.body_offset <= area.disk_offset and area.disk_offset + area.padded_length <= h.body_end

    def area_sealed(self, area: Area) -> bool:
        """True when the area lies in chunks the header seals (their CRCs vouch for it)."""
        return self.area_written(area) and area.disk_offset + area.padded_length <= self.header.sealed_end

    def area_vouched(self, area: Area) -> bool:
        """True when the area lies in sealed chunks and they were verified good."""
        return self.area_sealed(area) and self.chunks_verified and not self.bad_chunk_count


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

    def read_into(self, offset: int, out: memoryview) -> int:
        """Read into `out` the bytes at `offset` (read() without a new buffer: a caller that reads
        a GiB a step at a time reuses one); returns how many there were (short past the end)."""
        n = max(0, min(len(out), self.size - offset)) if offset >= 0 else 0
        if n == 0:
            return 0
        if self._buf is not None:
            out[:n] = memoryview(self._buf)[offset:offset + n]
            return n
        return pread_into(self._fd, out[:n], offset)

    def chunk_crcs(self, offset: int, chunk_size: int, count: int, end: int) -> list[int] | None:
        """CRC32C of each of the first `count` chunks of the body [offset, end) of the image cut
        in chunk_size pieces (the last may be shorter: it ends at `end`); None if the image
        ends before the last of them does.

        The reader's only way to the body's chunks: a subclass may serve them from a cache
        (keyed by offset and chunk_size, the CRC of a chunk never changes while its bytes do
        not). This one reads a few MiB at a time."""
        if count <= 0:
            return []
        stop = min(end, offset + count * chunk_size)
        if offset < 0 or chunk_size <= 0 or stop <= offset + (count - 1) * chunk_size or stop > self.size:
            return None
        crcs: list[int] = []
        if chunk_size > _STEP:  # the big chunks of huge partitions: each in pieces
            for k in range(count):
                start = offset + k * chunk_size
                crc, chunk_end = 0, min(start + chunk_size, stop)
                for pos in range(start, chunk_end, _STEP):
                    crc = google_crc32c.extend(crc, self.read(pos, min(_STEP, chunk_end - pos)))
                crcs.append(crc)
            return crcs
        per_step = _STEP // chunk_size * chunk_size  # a whole number of chunks at a time
        for pos in range(offset, stop, per_step):
            data = self.read(pos, min(per_step, stop - pos))
            crcs += [google_crc32c.value(data[rel:rel + chunk_size]) for rel in range(0, len(data), chunk_size)]
        return crcs

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


def same_bytes(a: bytearray, b: bytearray, n: int) -> bool:
    """Whether the first n bytes of two buffers are equal: whole bytearrays compare in place at
    memcmp speed (memoryviews a byte at a time), a shorter prefix is copied first."""
    return a == b if n == len(a) == len(b) else a[:n] == b[:n]


def pread_into(fd: int, out: memoryview, offset: int) -> int:
    """Fill `out` from the file at `offset` (preadv may return less at a time); the bytes read."""
    done = 0
    while done < len(out):
        n = os.preadv(fd, [out[done:]], offset + done)
        if n <= 0:
            break
        done += n
    return done


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

    def chunk_crcs(self, off: int, chunk_size: int, count: int, end: int) -> list[int] | None:
        """Image.chunk_crcs of partition offsets; None when [off, end) leaves the partition."""
        if off < 0 or end > self.size:
            return None
        return self.image.chunk_crcs(self.offset + off, chunk_size, count, self.offset + end)

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
    dump_id: bytes | None = None,
    cache: ReadCache | None = None,
    keep_decoded: frames.DecodedStore | None = None,
) -> Dump:
    """Parse and classify the dump in the partition [partition_offset, +partition_bytes) of an
    image (path, open file, mmap, bytes or Image). block_size is the device's logical block
    size when known (it locates the trailer and must equal the header's). dump_id is the dump
    the caller looks for (the harness gives its run's): a valid leader of another dump makes
    the dump none. A cache shared by reads of one partition saves re-parsing what they share.
    A read without one decodes every frame itself; keep_decoded keeps those frames for the
    cached reads of the same bytes to come (a ReadCache made with that store)."""
    if isinstance(source, Image):
        return _Reader(source, partition_offset, partition_bytes, block_size, verify_chunks, dump_id, cache,
                       keep_decoded).run()
    with Image(source) as image:
        return _Reader(image, partition_offset, partition_bytes, block_size, verify_chunks, dump_id, cache,
                       keep_decoded).run()


def read_image(image_path: str | Path, verify_chunks: bool = True, dump_id: bytes | None = None) -> Dump:
    """Find the dump partition through the image's GPT and read it (GptError if there is none)."""
    from dumpbed.images import gpt

    offset, size, block = gpt.find_dump_partition(image_path)
    return read(image_path, offset, size, block, verify_chunks, dump_id)


def another_dump(found: bytes, wanted: bytes | None) -> str | None:
    """Why a header with dump id `found` is not the dump looked for (None: it is, or no id was
    given). The one place of the rule "another dump's leader is no dump of this run"."""
    if wanted is None or found == wanted:
        return None
    return f"the leader is a valid header of another dump (dump id {found.hex()}): no dump with id {wanted.hex()}"


class ReadCache:
    """What one read may hand to the next of the same partition: the crash-consistency oracle
    reads thousands of states of one disk, most sharing their directory slot byte for byte."""

    def __init__(self, decoded: frames.DecodedStore | None = None):
        self.directories: dict = {}
        self.frames: dict = {}  # an area's checked frames, by its entry and its chunks' CRCs
        # frames that decoded, by offset, with their chunks' CRCs, and the run of them each walk
        # took, by its start (frames.Decoded): `decoded` shares those a plain read of the image
        # left (read's keep_decoded: the validator's, before the sweep reads its states)
        self.decoded = decoded if decoded is not None else frames.DecodedStore()


class _Reader:
    def __init__(self, image: Image, offset: int, size: int, block_size: int | None, verify_chunks: bool,
                 dump_id: bytes | None, cache: ReadCache | None = None,
                 keep_decoded: frames.DecodedStore | None = None):
        self.cache = cache
        self.keep_decoded = keep_decoded
        self.part = _Partition(image, offset, max(0, size))
        self.expected_block = block_size
        self.verify_chunks = verify_chunks
        self.wanted_id = dump_id
        self.settled: tuple[str, str] | None = None  # (status, reason) of a none or unsupported dump
        self.chunk_crcs: list[int] | None = None  # the sealed chunks' CRCs as the image holds them
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
        self.read_leader()
        if self.settled is None and d.leader is not None:
            self.read_trailer()
            if self.choose_geometry():
                self.read_vouched()
        self.classify()
        return d

    def read_vouched(self) -> None:
        """What the header vouches for: directory and table slot `slot`, the body's sealed
        chunks, the end marker when COMPLETE. The first leader (slot 0) vouches for nothing
        else: there is no directory, table or sealed chunk to read yet."""
        d = self.dump
        if d.header.slot == 0:
            d.directory_ok = d.crc_table_ok = d.chunks_verified = True
            d.crc_table = ()
            return
        self.read_directory()
        self.check_padding()
        self.read_crc_table()
        if d.header.complete:
            self.read_end_marker()
        if self.verify_chunks:
            self.check_chunks()
        self.check_frames()
        self.read_crash_record()

    # -- leader and trailer ------------------------------------------------------------------

    def read_leader(self) -> None:
        d = self.dump
        magic = self.part.read(LEADER_OFFSET, 8)
        if magic != HEADER_MAGIC:
            self.settled = ("none", "no dump header magic in the leader slot")
            return
        raw = self.part.read(LEADER_OFFSET, HEADER_SIZE)
        if raw is None:
            self.note(STAGE_LEADER, "leader header truncated by the end of the image", LEADER_OFFSET)
            return
        h = d.leader = Header.parse(raw)
        d.version = h.version
        if h.of_another_version:
            self.settled = ("unsupported", f"a version {h.version} dump: this reader reads versions "
                                           f"{' and '.join(map(str, READ_VERSIONS))} only")
            return
        if not self.header_valid(h, "leader", STAGE_LEADER, LEADER_OFFSET):
            return  # corrupt; a valid trailer may still tell where things are (choose_geometry)
        other = another_dump(h.dump_id, self.wanted_id)
        if other:
            self.settled = ("none", other)
            return
        bad = self.part.first_nonzero(LEADER_OFFSET + HEADER_SIZE, PAGE - HEADER_SIZE)
        if bad:
            self.note(STAGE_LEADER, f"leader slot: {_zero_problem(bad)} after the header", bad[1])
        if self.expected_block is None and h.block_size in BLOCK_SIZES:
            self.dump.block_size = h.block_size
        self.check_header_fields(h, "leader", STAGE_LEADER)

    def header_valid(self, h: Header, which: str, stage: str, offset: int) -> bool:
        ok = True
        if h.version not in READ_VERSIONS:
            self.note(stage, f"{which}: version {h.version}, expected {' or '.join(map(str, READ_VERSIONS))}",
                      offset + 8)
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
        if off < LEADER_OFFSET + PAGE:
            self.note(STAGE_TRAILER, f"partition of {d.partition_bytes} bytes has no room for a trailer")
            return
        raw = self.part.read(off, b)
        trailer = Header.parse(raw) if raw is not None and raw[:8] == HEADER_MAGIC else None
        leader = d.leader if d.leader.valid else None
        if leader is None:
            # The leader is damaged (corrupt): a valid trailer of the dump looked for still
            # tells where things are, for the diagnosis.
            if trailer is not None and trailer.valid and not another_dump(trailer.dump_id, self.wanted_id):
                d.trailer = trailer
            return
        if leader.complete:
            self.check_final_trailer(leader, trailer, raw, off)
        else:
            self.check_early_trailer(leader, trailer, raw, off)

    def check_final_trailer(self, leader: Header, trailer: Header | None, raw: bytes | None, off: int) -> None:
        """A COMPLETE leader is the commit: the trailer written before it is byte-identical."""
        d = self.dump
        if trailer is None:
            why = "beyond the end of the image" if raw is None else "no header magic"
            self.note(STAGE_TRAILER, f"trailer block: {why}, but the leader is COMPLETE", off)
            return
        d.trailer = trailer
        d.trailer_matches = trailer.raw == leader.raw
        if not d.trailer_matches:
            self.note_difference(trailer, leader, "the leader", off)
        self.check_trailer_padding(off)

    def check_early_trailer(self, leader: Header, trailer: Header | None, raw: bytes | None, off: int) -> None:
        """An IN_PROGRESS or FAILED leader needs no trailer. A valid trailer of this dump is
        COMPLETE (the final leader had not landed) or FAILED, never IN_PROGRESS; under a FAILED
        leader a FAILED trailer is identical to it. Anything else in the block is ignored: a
        block without a valid header, another dump's trailer (an older dump's)."""
        d = self.dump
        if trailer is None or not trailer.valid:
            return
        if trailer.dump_id != leader.dump_id:
            d.stale_trailer = trailer
            return
        d.trailer = trailer
        d.trailer_matches = trailer.raw == leader.raw
        if d.trailer_matches:
            self.check_trailer_padding(off)
            return
        if trailer.status == HeaderStatus.IN_PROGRESS:
            self.note(STAGE_TRAILER, "trailer of this dump is IN_PROGRESS (a trailer is written COMPLETE or FAILED)",
                      off + 20)
        elif trailer.status == HeaderStatus.FAILED and leader.status == HeaderStatus.FAILED:
            self.note_difference(trailer, leader, "the FAILED leader", off)
        else:
            self.check_header_fields(trailer, "trailer", STAGE_TRAILER)
            for p in self.geometry_problems(trailer):
                self.note(STAGE_TRAILER, f"trailer: {p}", off)
            if (trailer.version, trailer.compression) != (leader.version, leader.compression):
                self.note(STAGE_TRAILER, f"trailer: version {trailer.version} / compression {trailer.compression}, "
                                         f"the leader's {leader.version} / {leader.compression}", off + 8)
        self.check_trailer_padding(off)

    def note_difference(self, trailer: Header, leader: Header, what: str, off: int) -> None:
        at = next(i for i in range(HEADER_SIZE) if trailer.raw[i] != leader.raw[i])
        self.note(STAGE_TRAILER, f"trailer differs from {what} at byte {at} ({header_field_at(at)})", off + at)

    def check_trailer_padding(self, off: int) -> None:
        b = self.dump.block_size
        bad = self.part.first_nonzero(off + HEADER_SIZE, b - HEADER_SIZE)
        if bad:
            self.note(STAGE_TRAILER, f"trailer block: {_zero_problem(bad)} after the header", bad[1])

    def choose_geometry(self) -> bool:
        """Pick the header to read the rest with and check its geometry against the page."""
        d = self.dump
        if d.leader.valid:
            d.header = d.leader
            which, stage = "leader", STAGE_LEADER
        elif d.trailer is not None:
            d.header = d.trailer
            which, stage = "trailer", STAGE_TRAILER
            self.check_header_fields(d.trailer, which, stage)
        else:
            return False
        problems = self.geometry_problems(d.header)
        for p in problems:
            self.note(stage, f"{which}: {p}")
        d.geometry_ok = not problems
        return d.geometry_ok

    def check_header_fields(self, h: Header, which: str, stage: str) -> None:
        """Field rules that do not locate anything (geometry_problems has those)."""
        base = LEADER_OFFSET if which == "leader" else self.dump.partition_bytes - self.dump.block_size
        bad = lambda msg, at: self.note(stage, f"{which}: {msg}", base + at)
        if self.expected_block is not None and h.block_size != self.expected_block:
            bad(f"block_size {h.block_size}, but the device's block size is {self.expected_block}", 16)
        elif h.block_size not in BLOCK_SIZES:
            bad(f"block_size {h.block_size} (512 or 4096)", 16)
        if h.status not in HeaderStatus._value2member_map_:
            bad(f"status {h.status} unknown", 20)
        self.check_crash_fields(h, bad)
        self.check_failure_fields(h, bad)
        self.check_restart_fields(h, bad)
        self.check_transfer_fields(h, bad)
        if h.level > MAX_LEVEL:
            bad(f"level {h.level} (0..9)", 164)
        if h.ram_bytes == 0:
            bad("ram_bytes 0 (the usable RAM of the guest's memory map is never none)", 176)
        if h.tsc_done < h.tsc_crash:
            bad(f"tsc_done {h.tsc_done} before tsc_crash {h.tsc_crash}", 200)
        if h.registers[31]:
            bad("register slot 31 (reserved) not zero", 216 + 31 * 8)
        self.check_compression_fields(h, bad)

    @staticmethod
    def check_compression_fields(h: Header, bad) -> None:
        """Version 4's compression (version 3: bytes 496..507 reserved); E2BIG ends only a
        compressed dump, ENOSPC only an uncompressed one (a compressed writer checks each body
        write, not each area)."""
        if h.version == 3:
            if h.compression or h.reserved_500 != bytes(8):
                bad("reserved bytes 496..507 not zero (version 3)", 496)
            return
        if h.compression not in COMPRESSION_NAMES:
            bad(f"compression {h.compression} (0 none, 1 LZ4 frames)", 496)
        if h.reserved_500 != bytes(8):
            bad("reserved bytes 500..507 not zero", 500)
        if h.status == HeaderStatus.FAILED and h.failure == Errno.E2BIG and h.compression != 1:
            bad(f"failure E2BIG with compression {h.compression} (only a compressed dump outgrows its partition so)",
                52)
        if h.status == HeaderStatus.FAILED and h.failure == Errno.ENOSPC and h.compression == 1:
            bad("failure ENOSPC with compression 1 (a compressed dump that does not fit ends with E2BIG)", 52)

    @staticmethod
    def check_transfer_fields(h: Header, bad) -> None:
        """The writes that put this header on disk were whole blocks between min_transfer and
        max_transfer: a block fits (max_transfer >= B), min_transfer is no more than
        max_transfer and not 0, and once the trailer (one block) is written, at most B."""
        b = h.block_size if h.block_size in BLOCK_SIZES else 512
        if h.min_transfer == 0 or h.min_transfer > h.max_transfer:
            bad(f"min_transfer {h.min_transfer} / max_transfer {h.max_transfer} (0 < min <= max)", 156)
        elif h.max_transfer < b:
            bad(f"max_transfer {h.max_transfer} below the block size {b} (no write fits)", 156)
        elif h.status == HeaderStatus.COMPLETE and h.min_transfer > b:
            bad(f"min_transfer {h.min_transfer} above the block size {b}, yet the trailer block was written", 160)

    @staticmethod
    def check_crash_fields(h: Header, bad) -> None:
        if h.crash_reason not in CrashReason._value2member_map_:
            bad(f"crash_reason {h.crash_reason} unknown", 44)
        if h.crash_reason == CrashReason.NMI and h.crash_vector != NMI_VECTOR:
            bad(f"crash_vector {h.crash_vector} for an NMI (expected 2)", 48)
        elif h.crash_vector > 255 and h.crash_vector != NO_VECTOR:
            bad(f"crash_vector {h.crash_vector} is no x86 vector", 48)

    @staticmethod
    def check_failure_fields(h: Header, bad) -> None:
        if h.status == HeaderStatus.FAILED and not h.failure:
            bad("FAILED with failure 0 (the errno that ended the dump)", 52)
        if h.status != HeaderStatus.FAILED and (h.failure or h.failure_offset):
            bad(f"failure {h.failure} / failure_offset {h.failure_offset} set, but status is {h.status_name}", 52)
        if h.failure_offset >= max(h.partition_bytes, 1) and h.failure_offset:
            bad(f"failure_offset 0x{h.failure_offset:x} beyond the partition", 168)

    @staticmethod
    def check_restart_fields(h: Header, bad) -> None:
        """generation 1 is the primary's first dump; generation 2 the restart on the secondary."""
        if h.generation not in (1, 2):
            bad(f"generation {h.generation} (1, or 2 for the dump restarted on the secondary)", 40)
        if h.device_role not in DeviceRole._value2member_map_:
            bad(f"device_role {h.device_role} unknown (1 primary, 2 secondary)", 476)
        elif h.generation == 2 and h.device_role != DeviceRole.SECONDARY:
            bad("generation 2 on the primary device (a restarted dump is written to the secondary)", 476)
        elif h.generation == 1 and h.device_role != DeviceRole.PRIMARY:
            bad("generation 1 on the secondary device (the secondary holds only a restarted dump)", 476)
        if h.generation == 2:
            if not h.restart_error:
                bad("generation 2 with restart_error 0 (the errno that ended generation 1)", 480)
            if 0 < h.restart_offset < LEADER_OFFSET:
                bad(f"generation 2 with restart_offset 0x{h.restart_offset:x} (a write on the primary is "
                    f"at or after 0x{LEADER_OFFSET:x})", 488)
        elif h.restart_error or h.restart_offset:
            bad(f"restart_error {h.restart_error} / restart_offset 0x{h.restart_offset:x} in generation "
                f"{h.generation} (0 unless restarted)", 480)

    def geometry_problems(self, h: Header) -> list[str]:
        """Every location and size in the header, against each other and the partition, and
        the slot it names. Nothing is read beyond the header unless all of these hold."""
        problems = self.layout_problems(h) + self.slot_problems(h)
        problems += self.body_problems(h) if h.complete else self.progress_problems(h)
        return problems

    def layout_problems(self, h: Header) -> list[str]:
        """The leader, directory and table slots; the chunk size the partition fixes."""
        d = self.dump
        problems = []
        if h.partition_bytes != d.partition_bytes:
            problems.append(f"partition_bytes {h.partition_bytes}, the partition is {d.partition_bytes}")
        if h.dir_offset != DIR_OFFSET:
            problems.append(f"dir_offset {h.dir_offset}, expected {DIR_OFFSET}")
        entries = h.component_count + h.area_count
        if entries > MAX_DIRECTORY_ENTRIES:
            problems.append(f"{h.component_count} components + {h.area_count} areas exceed the reader's limit")
        needed = round_up(DIR_HEADER_SIZE + COMPONENT_ENTRY_SIZE * h.component_count + AREA_ENTRY_SIZE * h.area_count,
                          PAGE)
        if h.dir_bytes % PAGE or h.dir_bytes < needed:
            problems.append(
                f"dir_bytes {h.dir_bytes} is not a page multiple holding {h.component_count} components "
                f"and {h.area_count} areas"
            )
        if h.crc_table_offset != h.dir_offset + 2 * h.dir_bytes:
            problems.append(f"crc_table_offset {h.crc_table_offset} != dir_offset + 2 x dir_bytes (two slots)")
        chunk = writer_chunk_size(d.partition_bytes)
        if h.chunk_size != chunk:
            problems.append(f"chunk_size {h.chunk_size}, a partition of {d.partition_bytes} bytes has {chunk}")
        table = crc_table_bytes_for(d.partition_bytes)
        if h.crc_table_bytes != table:
            problems.append(f"crc_table_bytes {h.crc_table_bytes}, a partition of {d.partition_bytes} bytes "
                            f"has {table}")
        if h.body_offset != h.crc_table_offset + 2 * h.crc_table_bytes:
            problems.append(f"body_offset {h.body_offset} != crc_table_offset + 2 x crc_table_bytes (two slots)")
        elif h.body_offset + PAGE > d.partition_bytes - d.block_size:
            problems.append(f"body_offset {h.body_offset}: no room for an end marker and the trailer (a partition "
                            f"that small gets no write)")
        return problems

    @staticmethod
    def slot_problems(h: Header) -> list[str]:
        """slot is 1 or 2 when COMPLETE, 0 (the first leader: nothing written it vouches for)
        otherwise too; with slot 0 every figure of the directory and the body is 0."""
        if h.slot not in (0, *SLOTS):
            return [f"slot {h.slot} (0, 1 or 2)"]
        if h.slot == 0 and h.complete:
            return ["COMPLETE with slot 0 (a COMPLETE leader names its final directory and table)"]
        if h.slot == 0:
            figures = ("dir_crc", "crc_table_crc", "component_count", "area_count", "body_written", "chunks_sealed")
            set_ = [f"{name} {getattr(h, name)}" for name in figures if getattr(h, name)]
            if set_:
                return [f"slot 0 with {', '.join(set_)} (0 until a directory is written)"]
        return []

    def body_problems(self, h: Header) -> list[str]:
        """A COMPLETE dump: the body, the end marker, every chunk sealed."""
        problems = []
        if h.body_bytes % PAGE:
            problems.append(f"body_bytes {h.body_bytes} not a page multiple")
        if h.body_written != h.body_bytes:
            problems.append(f"COMPLETE with body_written {h.body_written} != body_bytes {h.body_bytes}")
        if h.end_offset != h.body_offset + h.body_bytes:
            problems.append(f"end_offset {h.end_offset} != body_offset + body_bytes")
        if h.end_offset + PAGE > self.dump.partition_bytes - self.dump.block_size:
            problems.append(f"dump ends at {h.end_offset + PAGE}, beyond the trailer block")
        elif h.chunks_sealed != h.nchunks:
            problems.append(f"COMPLETE with chunks_sealed {h.chunks_sealed}, the body has {h.nchunks} chunks")
        return problems

    def progress_problems(self, h: Header) -> list[str]:
        """An IN_PROGRESS or FAILED dump: no body size or end yet; body_written within the
        partition and its whole chunks, exactly, sealed."""
        problems = []
        if h.body_bytes or h.end_offset:
            problems.append(f"{h.status_name} with body_bytes {h.body_bytes} / end_offset {h.end_offset} "
                            f"(0 until COMPLETE)")
        if h.body_written % PAGE:
            problems.append(f"body_written {h.body_written} not a page multiple")
        if h.body_offset + h.body_written + PAGE > self.dump.partition_bytes - self.dump.block_size:
            problems.append(f"body_written {h.body_written} leaves no room for the end marker and trailer")
        elif h.chunk_size and h.chunks_sealed != h.body_written // h.chunk_size:
            problems.append(f"chunks_sealed {h.chunks_sealed}, but body_written {h.body_written} fills "
                            f"{h.body_written // h.chunk_size} chunks (each whole chunk written is sealed)")
        return problems

    # -- directory and body ------------------------------------------------------------------

    def directory_context(self) -> dumpdir.Context:
        h = self.dump.header
        return dumpdir.Context(
            offset=h.dir_slot_offset, dir_bytes=h.dir_bytes, component_count=h.component_count,
            area_count=h.area_count, level=h.level, generation=h.generation, estimate_bytes=h.estimate_bytes,
            body_offset=h.body_offset, body_end=h.body_end, complete=h.complete, version=h.version,
            compression=h.compression,
        )

    def read_directory(self) -> None:
        d, h = self.dump, self.dump.header
        first_finding = len(d.findings)
        note = lambda msg, at=None: self.note(STAGE_STRUCTURE, msg, at)
        at = h.dir_slot_offset
        crc = self.part.crc(at, h.dir_bytes)
        if crc is None:
            note(f"directory slot {h.slot}: beyond the end of the image", at)
            return
        if crc != h.dir_crc:
            note(f"directory slot {h.slot}: CRC32C 0x{crc:08x}, header says 0x{h.dir_crc:08x}", at)
        ctx = self.directory_context()
        key = (crc, ctx)  # the same slot bytes under the same header read the same
        if self.cache is not None and key in self.cache.directories:
            dh, directory, notes = self.cache.directories[key]
            d.directory_header = dh
            d.findings += notes
        else:
            dh, directory = self.parse_directory(at, ctx, note)
            if self.cache is not None:
                self.cache.directories[key] = (dh, directory, d.findings[first_finding:])
        if directory is not None:
            d.components, d.areas = directory.components, directory.areas
            d.calls, d.violations = directory.calls, directory.violations
            d.partial_area = dumpdir.partial_area(directory, h.complete)
            d.directory_ok = len(d.findings) == first_finding

    def parse_directory(self, at: int, ctx: dumpdir.Context, note):
        """The directory slot's records and their rules; (header, Directory or None)."""
        h = self.dump.header
        dh = dumpdir.parse_header(self.part.read(at, DIR_HEADER_SIZE))
        self.dump.directory_header = dh
        if not dumpdir.check_header(dh, ctx, note):
            return dh, None
        used = dh.used_bytes  # bounded: MAX_DIRECTORY_ENTRIES records, within dir_bytes
        directory = dumpdir.parse_records(self.part.read(at, used), dh, ctx, note)
        bad = self.part.first_nonzero(at + used, h.dir_bytes - used)
        if bad:
            note(f"directory: {_zero_problem(bad)} after the last record", bad[1])
        dumpdir.check(directory, ctx, note)
        self.check_violations_against_header(directory)
        return dh, directory

    def check_violations_against_header(self, directory) -> None:
        """A fault in the facility or a driver fails the dump on its device."""
        h = self.dump.header
        for v in directory.violations:
            if v.component == NO_COMPONENT and v.generation == h.generation and h.complete:
                self.note(STAGE_STRUCTURE, f"violation {v.index} (address 0x{v.address:x}): a fault in the facility "
                          f"or a driver in generation {v.generation}, yet the dump is COMPLETE")

    def check_padding(self) -> None:
        """The bytes between an area's stored bytes and the next page boundary are zero."""
        d = self.dump
        if not d.directory_ok:
            return
        for a in d.areas:
            if a.stored_bytes == a.padded_length or not d.area_written(a):
                continue
            bad = self.part.first_nonzero(a.disk_offset + a.stored_bytes, a.padded_length - a.stored_bytes)
            if bad:
                self.note(STAGE_STRUCTURE, f"area {a.index} ({a.name}): padding: {_zero_problem(bad)}", bad[1])

    # -- CRC table, end marker, chunks -------------------------------------------------------

    def read_crc_table(self) -> None:
        """Table slot `slot` must match crc_table_crc. Its first chunks_sealed entries are valid,
        every entry after them is zero (partial or complete)."""
        d, h = self.dump, self.dump.header
        n = h.chunks_sealed
        at = h.table_slot_offset
        raw = self.part.read(at, h.crc_table_bytes)  # at most 256 KiB (geometry)
        if raw is None:
            self.note(STAGE_STRUCTURE, f"CRC table slot {h.slot}: beyond the end of the image", at)
            return
        crc = crc32c(raw)
        ok = True
        if crc != h.crc_table_crc:
            self.note(STAGE_STRUCTURE, f"CRC table slot {h.slot}: CRC32C 0x{crc:08x}, header says "
                                       f"0x{h.crc_table_crc:08x}", at)
            ok = False
        tail = raw[4 * n:]
        if tail.count(0) != len(tail):
            pos = 4 * n + next(i for i, c in enumerate(tail) if c)
            self.note(STAGE_STRUCTURE, f"CRC table slot {h.slot}: entry {pos // 4} not zero, past the {n} sealed "
                                       f"entries", at + pos)
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
        if version != h.version:
            note(f"version {version}, the header's is {h.version}", 8)
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
        """Every sealed chunk (all of a COMPLETE dump's) against its CRC table entry, the CRCs
        from the image's chunk_crcs()."""
        d, h = self.dump, self.dump.header
        if not d.crc_table_ok:
            return
        sealed, end = h.chunks_sealed, h.sealed_end
        actual = self.part.chunk_crcs(h.body_offset, h.chunk_size, sealed, end)
        if actual is None:
            present = self.part.image.size - (self.part.offset + h.body_offset)
            first = min(sealed, max(0, present // h.chunk_size))
            self.note(STAGE_CHUNK, f"body beyond the end of the image from chunk {first}",
                      h.body_offset + first * h.chunk_size)
            d.bad_chunk_count += sealed - first
            return
        for k, crc in enumerate(actual):
            if crc != d.crc_table[k]:
                self.bad_chunk(k, crc, end)
        d.chunk_count = sealed
        d.chunks_verified = True
        self.chunk_crcs = d.chunk_crcs = actual

    # -- compressed areas' frames ---------------------------------------------------------

    def check_frames(self) -> None:
        """With compression 1, the frames of every area the header vouches for: all of a
        COMPLETE dump's, those wholly inside the sealed chunks of a partial one (a partial
        area's whole frames). Each decoded, its first broken rule a finding."""
        d = self.dump
        if d.compression != 1 or not d.directory_ok:
            return
        for a in d.areas:
            if not (d.header.complete or d.area_sealed(a)):
                continue
            index = self.checked_frames(a)
            d.frame_indexes[a.index] = index
            if index.problem:
                self.note(STAGE_FRAME, f"{index.label}: {index.problem}", index.problem_offset)

    def checked_frames(self, a: Area) -> frames.FrameIndex:
        """The area's frames walked and decoded, or (a cache shared by reads of one partition)
        as the last read found them under the same entry and the same chunk CRCs."""
        may_be_cut = a.index == self.dump.partial_area
        # a cached read takes frames decoded before; a plain one decodes all, and may leave them
        kept = self.cache.decoded if self.cache is not None else self.keep_decoded
        decoded = frames.Decoded(kept, self.chunks_holding, look=self.cache is not None) \
            if kept is not None and self.chunk_crcs is not None else None
        walk = lambda: frames.walk(self.part.read, area_label(a), a.disk_offset, a.length, a.stored_bytes,
                                   may_be_cut, decode=True, decoded=decoded)
        key = self.frames_key(a, may_be_cut)
        if key is None:
            return walk()
        if key not in self.cache.frames:
            self.cache.frames[key] = walk()
        return self.cache.frames[key]

    def frames_key(self, a: Area, may_be_cut: bool) -> tuple | None:
        """What an area's frames are a function of: its entry and the bytes of the chunks that
        hold it (their CRCs, computed from the image); None without a cache or those CRCs."""
        h = self.dump.header
        if self.cache is None or self.chunk_crcs is None:
            return None
        first = (a.disk_offset - h.body_offset) // h.chunk_size
        last = -(-(a.disk_offset + a.padded_length - h.body_offset) // h.chunk_size)
        return (a.index, a.disk_offset, a.length, a.stored_bytes, may_be_cut, tuple(self.chunk_crcs[first:last]))

    def chunks_holding(self, start: int, end: int) -> tuple | None:
        """The bytes [start, end) of the body as the CRCs of the chunks that hold them (computed
        from the image), after where those chunks lie (the body's offset, the chunk size: equal
        CRCs of chunks elsewhere say nothing of these bytes); None past the sealed chunks."""
        h = self.dump.header
        first = (start - h.body_offset) // h.chunk_size
        last = -(-(end - h.body_offset) // h.chunk_size)
        if first < 0 or last > len(self.chunk_crcs):
            return None
        return (h.body_offset, h.chunk_size, first, *self.chunk_crcs[first:last])

    def bad_chunk(self, k: int, actual: int, body_end: int) -> None:
        d, h = self.dump, self.dump.header
        d.bad_chunk_count += 1
        if len(d.bad_chunks) >= MAX_LISTED_BAD_CHUNKS:
            return
        start = h.body_offset + k * h.chunk_size
        end = min(start + h.chunk_size, body_end)
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
        try:
            raw = d.read_area(self.part.image, area, 0, CRASH_RECORD_BYTES)
        except frames.AreaDataError:
            return  # its frames' finding says why (a compressed area)
        if len(raw) != CRASH_RECORD_BYTES:
            return
        magic, version, reason, vector, cpu, error_code, fault_addr, tsc = struct.unpack_from("<8sIIIIQQQ", raw)
        regs = struct.unpack_from("<32Q", raw, 48)
        rec = CrashRecord(area.index, magic, version, reason, vector, cpu, error_code, fault_addr, tsc, regs, raw[512:])
        d.crash_record = rec
        note = lambda msg, at=0: self.note(STAGE_CRASH_RECORD, f"crash record: {msg}", area.disk_offset + at)
        if magic != CRASH_MAGIC:
            note(f"magic {magic!r}, expected {CRASH_MAGIC!r}")
        if version != h.version:
            note(f"version {version}, the header's is {h.version}", 8)
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
        """The spec's last section. The crash record's findings do not change the class (they
        are the crash-record check's)."""
        d = self.dump
        if self.settled is not None:  # none, or unsupported: nothing of it was read
            d.status, d.reason = self.settled
            if d.status == "none":
                d.first_inconsistency = d.reason
            return
        # The leader's own problems name the dump best, then the trailer's, then the rest.
        for stage in (STAGE_LEADER, STAGE_TRAILER, STAGE_STRUCTURE, STAGE_CHUNK, STAGE_FRAME):
            first = [f for f in d.findings if f.stage == stage]
            if first:
                self.corrupt(first[0])
                return
        leader = d.leader
        if leader.status in (HeaderStatus.IN_PROGRESS, HeaderStatus.FAILED):
            d.status = "partial"
            d.reason = self.partial_reason(leader)
            return
        # COMPLETE (any other status was a leader finding)
        if not d.chunks_verified:
            d.status = "corrupt"
            d.reason = d.first_inconsistency = "chunk CRCs not verified"
            return
        d.status = "complete"
        d.reason = f"complete: {leader.body_bytes} body bytes, {d.chunk_count} chunks verified"

    def partial_reason(self, h: Header) -> str:
        d = self.dump
        if h.slot == 0:
            progress = "slot 0: the dump has begun, no directory yet (nothing usable)"
        else:
            count = lambda status: sum(1 for c in d.components if c.status == status)
            pending, partial = count(ComponentStatus.PENDING), count(ComponentStatus.PARTIAL)
            progress = (f"slot {h.slot}: {h.body_written} body bytes written in {len(d.areas)} areas, "
                        f"{h.chunks_sealed} chunks sealed{' and verified' if d.chunks_verified and h.chunks_sealed else ''}, "
                        f"{pending} component{'' if pending == 1 else 's'} PENDING"
                        + (f", {partial} PARTIAL" if partial else ""))
        if d.trailer is not None and d.trailer.complete:
            progress += "; the trailer is COMPLETE (the final leader had not landed)"
        if h.status == HeaderStatus.FAILED:
            return f"dump FAILED: errno {h.failure} at partition offset 0x{h.failure_offset:x}; {progress}"
        return f"dump IN_PROGRESS: {progress}"

    def corrupt(self, finding: Finding) -> None:
        self.dump.status = "corrupt"
        self.dump.first_inconsistency = self.dump.reason = finding.message


def area_label(a: Area) -> str:
    return f"area {a.index} ({a.name})"


def _zero_problem(bad: tuple[str, int]) -> str:
    kind, at = bad
    if kind == "missing":
        return f"beyond the end of the image at partition offset 0x{at:x}"
    return f"nonzero byte at partition offset 0x{at:x}"
