"""The guest's memory map, as its loader gave it, read from the ground-truth snapshot.

QEMU's multiboot loader (hw/i386/multiboot.c and its option ROM) builds the multiboot
information at fixed physical addresses before the guest runs: the info structure at 0x9500
(flags at +0, bit 6: a memory map; mmap_length at +44, mmap_addr at +48) and the map itself at
0x9000, filled from the firmware's e820 (entries of u32 size, u64 base, u64 length, u32 type,
each `size + 4` bytes long). That is evidence from outside the guest: the completeness oracle
holds the dump's RAM to it, byte for byte.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Optional

from dumpbed.oracles.ranges import merged

MBI_ADDR = 0x9500
MMAP_ADDR = 0x9000
MBI_FLAG_MMAP = 1 << 6
USABLE = 1
MAX_ENTRIES = 128


@dataclass(frozen=True)
class Region:
    base: int
    length: int
    type: int

    @property
    def end(self) -> int:
        return self.base + self.length


def from_multiboot(read: Callable[[int, int], Optional[bytes]]) -> tuple[list[Region], str]:
    """The loader's map through `read(phys, length)` (None where the snapshot has nothing);
    ([], why) when it is not there."""
    mbi = read(MBI_ADDR, 52)
    if mbi is None or len(mbi) < 52:
        return [], f"the snapshot has no multiboot information at 0x{MBI_ADDR:x}"
    flags, = struct.unpack_from("<I", mbi, 0)
    length, addr = struct.unpack_from("<II", mbi, 44)
    if not flags & MBI_FLAG_MMAP or addr != MMAP_ADDR or not 0 < length <= MAX_ENTRIES * 24:
        return [], (f"the multiboot information at 0x{MBI_ADDR:x} names no memory map of QEMU's loader "
                    f"(flags 0x{flags:x}, mmap at 0x{addr:x}, {length} bytes)")
    raw = read(addr, length)
    if raw is None:
        return [], f"the snapshot does not hold the memory map at 0x{addr:x}"
    regions, at = [], 0
    while at + 24 <= length:
        size, base, size_bytes, kind = struct.unpack_from("<IQQI", raw, at)
        if size < 20:
            return [], f"memory map entry at 0x{addr + at:x} has size {size}"
        if size_bytes:
            regions.append(Region(base, size_bytes, kind))
        at += size + 4
    return regions, ""


def usable(regions: list[Region]) -> list[tuple[int, int]]:
    return merged((r.base, r.end) for r in regions if r.type == USABLE)
