"""Where guest RAM sits in guest-physical address space on QEMU's i440fx `pc` machine."""
from __future__ import annotations

from typing import Optional

from dumpbed.units import GiB

FOUR_GIB = 4 * GiB
DEFAULT_MAX_BELOW_4G = 0xE0000000  # 3.5 GiB, the traditional split
GIGABYTE_ALIGNED_SPLIT = 0xC0000000  # newer machine types move the split to 3 GiB


def ram_regions(ram_bytes: int, max_below_4g: Optional[int] = None) -> list[tuple[int, int]]:
    """(phys, length) of RAM, as hw/i386/pc_piix.c splits it for machine `pc`; max_below_4g is
    its max-ram-below-4g property (a small guest with RAM above 4 GiB)."""
    lowmem = DEFAULT_MAX_BELOW_4G
    if ram_bytes >= lowmem:
        lowmem = GIGABYTE_ALIGNED_SPLIT
    if max_below_4g is not None:
        lowmem = min(lowmem, max_below_4g)
    if ram_bytes >= lowmem:
        return [(0, lowmem), (FOUR_GIB, ram_bytes - lowmem)]
    return [(0, ram_bytes)]


