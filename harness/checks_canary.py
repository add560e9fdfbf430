"""The placement oracle: nothing outside the dump extent was written.

The GPT structures must equal the GPT regenerated from layout.json byte for byte; every other
sector outside the dump extent (leader slot .. end marker, plus the trailer block) must still
hold its canary.
"""

from __future__ import annotations

import numpy as np

from harness import canary, dumpfmt, gpt
from harness.checks_base import Check, make_check
from harness.layout import DiskLayout

SECTOR = canary.SECTOR


def dump_extent_on_disk(dump: dumpfmt.Dump) -> tuple[list[tuple[int, int]], str]:
    """Disk byte ranges the writer may have written, and how they were determined."""
    base = dump.partition_offset
    if dump.extent:
        return [(base + s, base + e) for s, e in dump.extent], "dump extent from the header"
    if dump.status == "none":
        return [], "no dump: the whole disk must hold GPT or canary"
    # A header magic is there but no header says where the dump ends: spare it all.
    return [(base + dumpfmt.LEADER_OFFSET, base + dump.partition_bytes)], (
        "dump extent unknown (no valid header): the partition from the leader slot on is not checked"
    )


def where(layout: DiskLayout, sector: int) -> str:
    offset = sector * SECTOR
    for p in layout.partitions:
        start, end = layout.partition_span(p)
        if start <= offset < end:
            return f"{p.name} partition +0x{offset - start:x}"
    return f"disk offset 0x{offset:x}, outside the partitions"


def check_canary(dump: dumpfmt.Dump, image: dumpfmt.Image, layout: DiskLayout) -> Check:
    problems: list[str] = []
    if image.size != layout.size_bytes:
        problems.append(f"image is {image.size} bytes, layout.json says {layout.size_bytes}")

    regions = gpt.build(layout)
    for r in regions:
        got = image.read(r.offset, len(r.data))
        if got == r.data:
            continue
        if len(got) < len(r.data) and r.data.startswith(got):  # what is there is right; the rest is missing
            problems.append(f"{r.name}: missing from disk offset 0x{r.offset + len(got):x} (the image is "
                            f"{image.size} bytes)")
            continue
        got = got + bytes(len(r.data) - len(got))
        diff = np.frombuffer(got, np.uint8) != np.frombuffer(r.data, np.uint8)
        first = int(np.flatnonzero(diff)[0])
        sectors = np.flatnonzero(diff.reshape(-1, SECTOR).any(axis=1))
        problems.append(
            f"{r.name}: differs from the GPT regenerated from layout.json at disk offset 0x{r.offset + first:x} "
            f"(sector {(r.offset + first) // SECTOR}; {len(sectors)} sectors differ)"
        )

    extent, how = dump_extent_on_disk(dump)
    skip = sorted([(r.offset, r.end) for r in regions] + extent + list(layout.holes))
    for start, end in layout.holes:
        data_at = image.first_data(start, end)
        if data_at is None:
            continue
        problems.append(f"the hole at disk offset 0x{start:x} holds data from 0x{data_at:x} "
                        f"({where(layout, data_at // SECTOR)}): something wrote there")
    ranges, pos = [], 0
    for start, end in skip:
        if start > pos:
            ranges.append((pos, start))
        pos = max(pos, end)
    if pos < layout.size_bytes:
        ranges.append((pos, layout.size_bytes))

    result = canary.check(image, layout.canary_seed, ranges)
    runs = []
    for run in result.runs:
        what = "missing (beyond the end of the image)" if run.missing else "not canary"
        span = f"sector {run.first}" if run.count == 1 else f"sectors {run.first}..{run.last}"
        runs.append(f"{span} ({where(layout, run.first)}): {what}")
    if runs:
        problems.append(f"{result.bad_sectors} sectors outside the dump extent damaged, first: {runs[0]}")
        problems.extend(runs[1:])
        if result.more_runs:
            problems.append("more damaged sector runs not listed")
    ok_detail = (
        f"GPT equals layout.json's; {result.checked_sectors} sectors outside the dump extent hold their canary "
        f"({how})"
    )
    return make_check("canary", problems, ok_detail)


def check_unchanged_since(dump: dumpfmt.Dump, image: dumpfmt.Image, before: dumpfmt.Image,
                          layout: DiskLayout) -> Check:
    """`stale` (docs/faults.md): the disk held an older dump before the run. Every sector
    outside the new dump's extent must still hold what it held then: the older dump's bytes,
    the canary, the GPT."""
    extent, how = dump_extent_on_disk(dump)
    ranges, pos = [], 0
    for start, end in sorted(extent):
        if start > pos:
            ranges.append((pos, start))
        pos = max(pos, end)
    if pos < layout.size_bytes:
        ranges.append((pos, layout.size_bytes))
    checked, step = 0, 1 << 20
    for start, end in ranges:
        for at in range(start, end, step):
            n = min(step, end - at)
            got, was = image.read(at, n), before.read(at, n)
            if got != was:
                diff = np.frombuffer(got.ljust(n, b"\0"), np.uint8) != np.frombuffer(was.ljust(n, b"\0"), np.uint8)
                diff[min(len(got), len(was)):] |= len(got) != len(was)  # a truncated image differs where it ends
                first = at + int(np.flatnonzero(diff)[0])
                return Check("canary", False, f"sector {first // SECTOR} ({where(layout, first // SECTOR)}), outside "
                                              f"the new dump's extent, changed since before the run")
            checked += n
    return Check("canary", True, f"{checked // SECTOR} sectors outside the new dump's extent ({how}) are as they "
                                 f"were before the run (the older dump, the canary, the GPT)")
