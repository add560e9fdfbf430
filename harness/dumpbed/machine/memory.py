"""Where guest RAM sits in guest-physical address space on QEMU's i440fx `pc` machine."""
from __future__ import annotations

from typing import Optional

from dumpbed.units import GiB, KiB, MiB

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


def parse_size(text: str) -> int:
    """'256M', '1G', '65536' -> bytes (binary units, as QEMU's -m)."""
    from dumpbed.errors import DumpbedError

    units = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": GiB << 10}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (t[:-1], t[-1]) if t and t[-1] in units and t[-1] != "" else (t, "")
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise DumpbedError(f"not a size: {text!r} (try 256M or 1G)") from None
    if value <= 0:
        raise DumpbedError(f"size must be positive: {text!r}")
    return value
