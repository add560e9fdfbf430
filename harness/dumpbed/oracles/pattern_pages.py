"""The pattern-pages oracle of a Linux dump (docs/linux-kdump.md, "The pattern pages"): every
page that held the workload's self-describing pattern in the host's snapshot at the crash must
be in the vmcore at the same physical address, byte for byte.

The pages are found in the snapshot itself, by their own words (magic, run id, a checksum and
words regenerated from the page's index), not taken from the guest's list of them: the list is
only held against what the snapshot shows. Memory stays bounded: the snapshot is scanned 16 MiB
at a time, vectorised."""
from __future__ import annotations

from typing import Optional

import numpy as np

from dumpbed.oracles.base import Check, make_check
from dumpbed.oracles.content import Snapshot

MAGIC = 0x4E52545441504244  # the bytes "DBPATTRN", little-endian
PAGE = 4096
WORDS = PAGE // 8
_STEP_PAGES = 4096  # 16 MiB of snapshot at a time
_SHOWN = 3  # problems named in the detail
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output for each u64 of x (wrapping arithmetic, as the guest's agent.c)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def expected_page(runid: int, index: int) -> np.ndarray:
    """Page `index` of the pattern as 512 u64 words."""
    words = np.empty(WORDS, dtype=np.uint64)
    w = np.arange(4, WORDS, dtype=np.uint64)
    with np.errstate(over="ignore"):
        words[4:] = splitmix64(np.uint64(runid) + np.uint64(index) * np.uint64(WORDS) + w)
    words[0], words[1], words[2] = MAGIC, runid, index
    words[3] = np.bitwise_xor.reduce(np.concatenate((words[:3], words[4:])))
    return words


def find(snapshot: Snapshot, runid: int) -> tuple[dict[int, int], list[int]]:
    """({physical address: pattern index} of the pages that hold the pattern whole, [addresses of
    pages that start like one (magic and run id) but are not]), over the whole snapshot."""
    good: dict[int, int] = {}
    bad: list[int] = []
    rid = np.uint64(runid)
    for i, region in enumerate(snapshot.regions):
        first = -(-region.phys // PAGE) * PAGE
        for start in range(first, region.phys + region.length - PAGE + 1, _STEP_PAGES * PAGE):
            count = min(_STEP_PAGES, (region.phys + region.length - start) // PAGE)
            pages = np.frombuffer(snapshot.read(i, start, count * PAGE), dtype="<u8").reshape(count, WORDS)
            for k in np.flatnonzero((pages[:, 0] == MAGIC) & (pages[:, 1] == rid)):
                phys = start + int(k) * PAGE
                index = int(pages[k, 2])
                if np.bitwise_xor.reduce(pages[k]) == 0 and np.array_equal(pages[k], expected_page(runid, index)):
                    good[phys] = index
                else:
                    bad.append(phys)
    return good, bad


def _snapshot_page(snapshot: Snapshot, phys: int) -> bytes:
    ((_, _, region),) = snapshot.pieces(phys, PAGE)  # find() read it whole from one region
    return snapshot.read(region, phys, PAGE)


def check(core, snapshot: Snapshot, runid: int, listed: Optional[int], require_all: bool = True) -> Check:
    """core: a vmcore (dumpbed.reader.vmcore); listed: how many pattern pages the guest said it
    made (its PATTERN line), or None when it said nothing. require_all=False (a dump cut short):
    the pages the vmcore holds must be right, a page it lacks is no problem."""
    good, bad = find(snapshot, runid)
    problems = []
    if not good:
        problems.append(f"no page of the pattern (run id 0x{runid:x}) in the snapshot: the workload did not run, "
                        "so the dump's pages cannot be held to it")
    if listed is not None and len(good) != listed:
        problems.append(f"the guest listed {listed} pattern pages, the snapshot holds {len(good)} whole ones")
    indexes = sorted(good.values())
    if len(set(indexes)) != len(indexes):
        problems.append("a pattern page is in the snapshot twice (the workload's memory was copied)")
    if bad:
        problems.append(f"{len(bad)} page(s) of the snapshot start as pattern pages but are damaged, e.g. at "
                        f"0x{bad[0]:x}")
    missing, differ = [], []
    for phys in sorted(good):
        page = core.read_page(phys // PAGE)
        if page is None:
            missing.append(phys)
        elif page != _snapshot_page(snapshot, phys):  # the oracle: byte for byte with the snapshot
            differ.append(phys)
    if missing and require_all:
        problems.append(f"{len(missing)} of {len(good)} pattern pages are not in the vmcore, e.g. "
                        + ", ".join(f"0x{p:x}" for p in missing[:_SHOWN]))
    if differ:
        problems.append(f"{len(differ)} of {len(good)} pattern pages differ in the vmcore from the snapshot, e.g. "
                        + ", ".join(f"0x{p:x}" for p in differ[:_SHOWN]))
    if not require_all:
        held = len(good) - len(missing)
        return make_check("pattern", problems, f"the {held} of the snapshot's {len(good)} pattern pages that the cut "
                                               "vmcore holds are at their physical addresses, byte for byte")
    return make_check("pattern", problems, f"{len(good)} pattern pages ({len(good) * PAGE} bytes) of the snapshot "
                                           "are in the vmcore at their physical addresses, byte for byte")
