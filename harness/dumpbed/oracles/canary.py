"""The placement oracle: nothing outside the dump extent was written.

The GPT structures must equal the GPT regenerated from layout.json byte for byte; every other
sector outside the dump extent (leader slot .. end marker, plus the trailer block) must still
hold its canary.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from dumpbed.capture import blklog
from dumpbed.images import canary, gpt
from dumpbed.images.layout import DiskLayout
from dumpbed.oracles.base import Check, make_check
from dumpbed.reader import dumpfmt
from dumpbed.units import SECTOR



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


def runtime_writes(log: Optional[blklog.WriteLog], layout: DiskLayout) -> tuple[list[blklog.Entry], list[blklog.Entry]]:
    """The writes outside the dump partition in a disk's write log: those that landed before the
    dump's first write (runtime I/O, legitimately on the disk) and those that landed after it
    (runtime I/O the driver let through after the dump began)."""
    if log is None:
        return [], []
    start, end = layout.dump_offset, layout.dump_offset + layout.dump_size
    writes = log.writes
    first_dump = next((i for i, e in enumerate(writes) if start <= e.offset and e.end <= end), len(writes))
    outside = lambda e: e.end <= start or e.offset >= end  # noqa: E731
    return ([e for e in writes[:first_dump] if outside(e)], [e for e in writes[first_dump:] if outside(e)])


def _runtime_problems(image: dumpfmt.Image, log: blklog.WriteLog, early: list[blklog.Entry], late: list[blklog.Entry],
                      layout: DiskLayout) -> tuple[list[str], list[tuple[int, int]]]:
    """The ranges runtime writes put on the disk must hold exactly what the last of them wrote
    there (replayed from the write log); a runtime write after the dump began is damage."""
    problems = [f"{e.describe()} ({where(layout, e.offset // SECTOR)}) reached the disk after the dump's first write: "
                f"runtime I/O was not stopped" for e in late[:3]]
    if len(late) > 3:
        problems.append(f"{len(late) - 3} more runtime writes after the dump began")
    expected: dict[int, bytes] = {}  # sector -> its bytes after the runtime writes, in log order
    with log.opener() as data:
        for e in early:
            chunk = data.read(e, 0, e.length)
            for k in range(0, e.length, SECTOR):
                expected[(e.offset + k) // SECTOR] = chunk[k:k + SECTOR]
    bad = [s for s in sorted(expected) if image.read(s * SECTOR, SECTOR) != expected[s]]
    if bad:
        problems.append(f"{len(bad)} sectors written by runtime I/O before the crash no longer hold what it wrote, "
                        f"first: sector {bad[0]} ({where(layout, bad[0])})")
    ranges = [(s * SECTOR, (s + 1) * SECTOR) for s in sorted(expected)]
    return problems, ranges


def check_canary(dump: Optional[dumpfmt.Dump], image: dumpfmt.Image, layout: DiskLayout,
                 log: Optional[blklog.WriteLog] = None,
                 extent: Optional[tuple[list[tuple[int, int]], str]] = None) -> Check:
    """With the disk's write log, sectors that runtime I/O wrote before the dump began are held
    to what it wrote instead of their canary. `extent`: the disk ranges the dump may have
    written and how they were determined, when not from a dumpbed dump's header (a vmcore:
    its whole partition)."""
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

    extent, how = extent if extent is not None else dump_extent_on_disk(dump)
    early, late = runtime_writes(log, layout)
    runtime_ranges: list[tuple[int, int]] = []
    if early or late:
        runtime_problems, runtime_ranges = _runtime_problems(image, log, early, late, layout)
        problems += runtime_problems
        how += f"; {len(early)} runtime writes before the dump replayed from the write log"
    skip = sorted([(r.offset, r.end) for r in regions] + extent + list(layout.holes) + runtime_ranges)
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
