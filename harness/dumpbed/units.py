"""Sizes, once: binary units, the sector the trace events count in, the page; sizes as people
type them (`parse_size`) and as messages show them (`format_size`)."""
from __future__ import annotations

import re
from fractions import Fraction

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
SECTOR = 512  # QEMU's sector, virtio-blk's unit, and the canary's
PAGE = 4096
SIZE_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>[KMGT]?)(?:I?B)?", re.IGNORECASE)


def parse_size(text: str, option: str = "size") -> int:
    """'256M', '1G', '1.5G', '64MiB', '65536' -> bytes (binary units, as QEMU's -m). Anything
    else is a DumpbedError naming the option: not a number (`inf`, `lots`), negative, zero, or a
    fraction of a byte."""
    from dumpbed.errors import DumpbedError

    word = text.strip()
    shown = f"{option} {word}" if word else f"{option} ''"
    m = _SIZE.fullmatch(word)
    if m is None:
        if word.startswith("-") and _SIZE.fullmatch(word[1:]):
            raise DumpbedError(f"{shown}: a size must be positive (e.g. 256M or 1G)")
        raise DumpbedError(f"{shown}: not a size: a number of bytes with an optional K, M, G or T suffix "
                           "(powers of 1024), e.g. 256M or 1G")
    value = Fraction(m["number"]) * SIZE_UNITS[m["unit"].upper()]
    if value.denominator != 1:
        raise DumpbedError(f"{shown}: not a whole number of bytes")
    if value <= 0:
        raise DumpbedError(f"{shown}: a size must be positive (e.g. 256M or 1G)")
    return int(value)


def format_size(n: int) -> str:
    """Bytes for a message: '1.0 TiB', '22.8 GiB', '64.0 MiB', '512 bytes'."""
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
