"""The checks of a Linux dump that read the vmcore itself (docs/linux-kdump.md; the pattern pages
are oracles/pattern_pages.py): its classification against the run's expectation, the first
kernel's RAM it describes, and the kernel log it holds."""
from __future__ import annotations

from typing import Optional

import numpy as np

from dumpbed.oracles.base import Check, make_check
from dumpbed.reader.vmcore.dmesg import read_dmesg

PAGE = 4096
PANIC = "Kernel panic - not syncing"
_SHOWN = 3


def check_vmcore(core, expected: str, allowed: tuple[str, ...] = ()) -> Check:
    """The vmcore, every page read (decompressed), is classified as the run must end
    (docs/faults.md's outcome: complete, or partial when a fault cut the dump short). `allowed`:
    the readings that are the expected outcome's too (a cut vmcore's: oracles/vmcore_run.py)."""
    core.verify()
    if core.status in allowed:
        return Check("vmcore", True, f"{core.format} vmcore cut short, as the run must end ({expected}): the reader "
                                     f"says {core.status} ({core.reason})")
    if core.status != expected:
        return Check("vmcore", False, f"the vmcore reads {core.status} ({core.reason}), the run must end with a "
                                      f"{expected} dump", [f"{f.status}: {f.message}" for f in core.findings])
    pages = int(len(core.dumped_pfns()))
    return Check("vmcore", True, f"{core.format} vmcore, {core.status}: {pages} pages "
                                 f"({pages * core.page_size} bytes) read back whole ({core.reason})")


def described_pfns(core) -> np.ndarray:
    """The page frames the vmcore says the first kernel had, dumped or excluded by the dump
    level: a kdump-compressed file's 1st bitmap, an ELF vmcore's PT_LOADs (memsz)."""
    if hasattr(core, "present_pfns"):
        return np.asarray(core.present_pfns(), dtype=np.uint64)
    runs = [np.arange(s.paddr // PAGE, -(-(s.paddr + s.memsz) // PAGE), dtype=np.uint64)
            for s in getattr(core, "segments", [])]
    return np.unique(np.concatenate(runs)) if runs else np.zeros(0, dtype=np.uint64)


def check_coverage(core, ram: list[tuple[int, int]], reserved: list[tuple[int, int]], low: int = 0) -> Check:
    """Every page of the first kernel's RAM (the snapshot's regions: [start, end) byte ranges)
    from `low` up but the capture kernel's reservation (`reserved`) is described by the vmcore;
    the vmcore describes no page outside RAM. (Which of them it dumps is the dump level's choice;
    the pattern oracle holds the pages that matter to their bytes. Below `low` the firmware's
    memory map may reserve RAM the kernel then does not count as its own.)"""
    have = described_pfns(core)
    want = np.unique(np.concatenate([np.arange(-(-max(lo, low) // PAGE), hi // PAGE, dtype=np.uint64)
                                     for lo, hi in ram if hi > low] or [np.zeros(0, dtype=np.uint64)]))
    for lo, hi in reserved:
        want = want[(want < lo // PAGE) | (want >= -(-hi // PAGE))]
    missing = np.setdiff1d(want, have, assume_unique=True)
    ram_pfns = np.unique(np.concatenate([np.arange(lo // PAGE, -(-hi // PAGE), dtype=np.uint64) for lo, hi in ram]
                                        or [np.zeros(0, dtype=np.uint64)]))
    outside = np.setdiff1d(have, ram_pfns, assume_unique=True)
    problems = []
    if len(missing):
        problems.append(f"{len(missing)} pages of the first kernel's RAM are not described by the vmcore, e.g. "
                        + ", ".join(f"0x{int(p) * PAGE:x}" for p in missing[:_SHOWN]))
    if len(outside):
        problems.append(f"the vmcore describes {len(outside)} pages outside the guest's RAM, e.g. "
                        + ", ".join(f"0x{int(p) * PAGE:x}" for p in outside[:_SHOWN]))
    below = f" from 0x{low:x} up" if low else ""
    return make_check("coverage", problems, f"the vmcore describes all {len(want)} pages of the first kernel's RAM"
                                            f"{below} (the capture kernel's {len(reserved)} reserved range(s) aside)")


def check_dmesg(core, console_panic: Optional[str]) -> Check:
    """The kernel log in the vmcore holds the panic, last among its records but for what the
    panic path itself printed after it; when the console showed a panic line, the same one.
    (After an NMI with kdump loaded the panic line never reaches the console: then any.)"""
    log = read_dmesg(core)
    if log.problem:
        return Check("dmesg", False, f"the kernel log cannot be read from the vmcore: {log.problem}")
    panics = [(i, r.text) for i, r in enumerate(log.records) if PANIC in r.text]
    if not panics:
        tail = log.last_lines(1)
        return Check("dmesg", False, f"no '{PANIC}' in the vmcore's kernel log ({len(log.records)} records, the last: "
                                     f"{tail[0] if tail else 'none'!r})")
    index, text = panics[-1]
    after = len(log.records) - 1 - index
    problems = []
    if console_panic is not None and console_panic.strip() not in text:
        problems.append(f"the console's panic line {console_panic.strip()!r} is not the vmcore's ({text.strip()!r})")
    return make_check("dmesg", problems, f"the kernel log in the vmcore ends with the panic ({text.strip()!r}, "
                                         f"{after} record(s) after it)")
