"""GUID partition table: build the exact bytes for a DiskLayout, write them, parse them back.

build() is used twice: by the image builder to write the table, and by the validator to
regenerate it and compare byte for byte. Every GPT structure is written as whole blocks
(unused parts of the MBR and header blocks are zero), so the GPT regions and the canary
regions of the disk tile it exactly.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dumpbed.errors import DumpbedError
from dumpbed.images.layout import (
    BLOCK_SIZES,
    DUMP_PARTITION_TYPE,
    GPT_ENTRY_COUNT,
    GPT_ENTRY_SIZE,
    DiskLayout,
    Partition,
)

SIGNATURE = b"EFI PART"
REVISION = 0x00010000
HEADER_SIZE = 92
# signature, revision, header size, header crc, reserved, my lba, alternate lba,
# first usable, last usable, disk guid, entries lba, entry count, entry size, entries crc
_HEADER = struct.Struct("<8sIIII QQQQ 16s QII I")
_ENTRY = struct.Struct("<16s16sQQQ72s")
_MBR_ENTRY = struct.Struct("<B3sB3sII")
_MBR_PROTECTIVE_TYPE = 0xEE
_MAX_ENTRY_ARRAY = 1 << 20  # parse() refuses bigger entry arrays (hostile headers)


class GptError(DumpbedError):
    """The image has no valid GPT, or no dump partition in it."""


@dataclass(frozen=True)
class GptRegion:
    """One GPT structure on the disk: what it is, where, and its exact bytes."""

    name: str
    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True)
class GptInfo:
    """What parse() found: block size, disk GUID and the non-empty partition entries."""

    block_size: int
    disk_guid: str
    partitions: tuple[Partition, ...]

    def dump_partition(self) -> Partition:
        found = [p for p in self.partitions if p.type_guid == DUMP_PARTITION_TYPE]
        if not found:
            raise GptError(f"GPT has no dump partition (type {DUMP_PARTITION_TYPE})")
        if len(found) > 1:
            raise GptError(f"GPT has {len(found)} dump partitions (type {DUMP_PARTITION_TYPE})")
        return found[0]

    def dump_span(self) -> tuple[int, int]:
        """(byte offset, byte size) of the dump partition."""
        p = self.dump_partition()
        return p.first_lba * self.block_size, (p.last_lba - p.first_lba + 1) * self.block_size


def guid_to_gpt(text: str) -> bytes:
    """GPT stores the first three GUID fields little-endian, the rest as written."""
    return uuid.UUID(text).bytes_le


def guid_from_gpt(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=bytes(raw)))


def build(layout: DiskLayout) -> list[GptRegion]:
    """The GPT of a layout as regions in disk order: MBR, primary header, primary entries,
    backup entries, backup header. Each region is a whole number of blocks."""
    layout.check()
    b = layout.block_size
    total = layout.total_blocks
    entries = bytearray(GPT_ENTRY_COUNT * GPT_ENTRY_SIZE)
    for i, p in enumerate(layout.partitions):
        _ENTRY.pack_into(
            entries, i * GPT_ENTRY_SIZE,
            guid_to_gpt(p.type_guid), guid_to_gpt(p.unique_guid),
            p.first_lba, p.last_lba, 0, p.name.encode("utf-16-le"),
        )
    entries_bytes = _pad(bytes(entries), b)
    entries_crc = zlib.crc32(entries)

    backup_entries_lba = layout.last_usable_lba + 1
    backup_header_lba = total - 1

    def header(my_lba: int, alternate_lba: int, entries_lba: int) -> bytes:
        fields = [
            SIGNATURE, REVISION, HEADER_SIZE, 0, 0,
            my_lba, alternate_lba, layout.first_usable_lba, layout.last_usable_lba,
            guid_to_gpt(layout.disk_guid), entries_lba, GPT_ENTRY_COUNT, GPT_ENTRY_SIZE, entries_crc,
        ]
        fields[3] = zlib.crc32(_HEADER.pack(*fields))
        return _pad(_HEADER.pack(*fields), b)

    mbr = bytearray(b)
    _MBR_ENTRY.pack_into(
        mbr, 446, 0x00, b"\x00\x02\x00", _MBR_PROTECTIVE_TYPE, b"\xff\xff\xff", 1, min(total - 1, 0xFFFFFFFF)
    )
    mbr[510:512] = b"\x55\xaa"

    return [
        GptRegion("protective MBR", 0, bytes(mbr)),
        GptRegion("primary GPT header", b, header(1, backup_header_lba, 2)),
        GptRegion("primary GPT entries", 2 * b, entries_bytes),
        GptRegion("backup GPT entries", backup_entries_lba * b, entries_bytes),
        GptRegion("backup GPT header", backup_header_lba * b, header(backup_header_lba, 1, backup_entries_lba)),
    ]


def blocks(layout: DiskLayout) -> list[tuple[int, bytes]]:
    """build() as plain (disk offset, bytes) pairs."""
    return [(r.offset, r.data) for r in build(layout)]


def write(image_path: str | Path, layout: DiskLayout) -> None:
    """Write the GPT of layout into the image (created, or resized to size_bytes, as needed)."""
    regions = build(layout)
    path = Path(image_path)
    mode = "r+b" if path.exists() else "w+b"
    with open(path, mode) as f:
        if os.fstat(f.fileno()).st_size != layout.size_bytes:
            f.truncate(layout.size_bytes)
        for r in regions:
            f.seek(r.offset)
            f.write(r.data)


def parse(image: str | Path | BinaryIO | bytes) -> GptInfo:
    """Read and validate the primary GPT (signature, header and entry CRCs) of an image."""
    if isinstance(image, (str, Path)):
        try:
            with open(image, "rb") as f:
                return _parse_file(f, str(image))
        except OSError as e:
            raise GptError(f"{image}: cannot read: {e.strerror or e}") from None
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return _parse(lambda off, n: data[off:off + n], "image")
    return _parse_file(image, getattr(image, "name", "image"))


def find_dump_partition(image: str | Path | BinaryIO | bytes) -> tuple[int, int, int]:
    """(byte offset, byte size, block size) of the image's dump partition, through its GPT."""
    info = parse(image)
    offset, size = info.dump_span()
    return offset, size, info.block_size


def _parse_file(f: BinaryIO, name: str) -> GptInfo:
    def read(off: int, n: int) -> bytes:
        f.seek(off)
        return f.read(n)

    return _parse(read, name)


def _parse(read, name: str) -> GptInfo:
    for b in BLOCK_SIZES:
        if read(b, 8) == SIGNATURE:
            break
    else:
        raise GptError(f"{name}: no GPT (no 'EFI PART' signature at LBA 1 for 512- or 4096-byte blocks)")
    raw = read(b, _HEADER.size)
    if len(raw) < _HEADER.size:
        raise GptError(f"{name}: GPT header truncated")
    fields = list(_HEADER.unpack(raw))
    (_, revision, header_size, header_crc, _, my_lba, _, first_usable, last_usable,
     disk_guid, entries_lba, entry_count, entry_size, entries_crc) = fields
    if header_size < HEADER_SIZE or header_size > b:
        raise GptError(f"{name}: GPT header size {header_size} invalid")
    check = read(b, header_size)
    check = check[:16] + b"\0\0\0\0" + check[20:]
    if len(check) != header_size or zlib.crc32(check) != header_crc:
        raise GptError(f"{name}: GPT header CRC mismatch")
    if my_lba != 1:
        raise GptError(f"{name}: GPT primary header says it is at LBA {my_lba}, not 1")
    if entry_size < GPT_ENTRY_SIZE or entry_size % 8 or entry_count * entry_size > _MAX_ENTRY_ARRAY:
        raise GptError(f"{name}: GPT entry array of {entry_count} x {entry_size} bytes unsupported")
    entries = read(entries_lba * b, entry_count * entry_size)
    if len(entries) != entry_count * entry_size:
        raise GptError(f"{name}: GPT entry array truncated")
    if zlib.crc32(entries) != entries_crc:
        raise GptError(f"{name}: GPT entry array CRC mismatch")
    partitions = []
    for i in range(entry_count):
        e = entries[i * entry_size:i * entry_size + GPT_ENTRY_SIZE]
        type_raw, unique_raw, first, last, _attrs, name_raw = _ENTRY.unpack(e)
        if type_raw == bytes(16):
            continue
        part_name = name_raw.decode("utf-16-le", "replace").split("\0", 1)[0]
        if not first_usable <= first <= last <= last_usable:
            raise GptError(f"{name}: GPT partition {i} LBAs {first}..{last} outside {first_usable}..{last_usable}")
        partitions.append(Partition(part_name, guid_from_gpt(type_raw), guid_from_gpt(unique_raw), first, last))
    return GptInfo(b, guid_from_gpt(disk_guid), tuple(partitions))


def _pad(data: bytes, block: int) -> bytes:
    return data + bytes(-len(data) % block)
