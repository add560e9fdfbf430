"""Half-open byte ranges [start, end): merged and subtracted (memory maps, disk extents)."""
from __future__ import annotations

from typing import Iterable

Range = tuple[int, int]


def merged(ranges: Iterable[Range]) -> list[Range]:
    """The ranges sorted, overlapping or touching ones joined, empty ones dropped."""
    out: list[Range] = []
    for start, end in sorted(ranges):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def minus(a: list[Range], b: list[Range]) -> list[Range]:
    """The parts of a not in b (both merged)."""
    out = []
    for start, end in a:
        pos = start
        for bs, be in b:
            if be <= pos or bs >= end:
                continue
            if bs > pos:
                out.append((pos, bs))
            pos = max(pos, be)
        if pos < end:
            out.append((pos, end))
    return out
