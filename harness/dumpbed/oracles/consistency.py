"""The `consistency` oracle: every state the dump disk passed through, or could have been left in
by a crash, reads as no dump, a consistent partial dump or the complete dump.

The device's write log (harness/dumpbed/capture/blklog.py) holds every write that landed, with its bytes, in the
order they finished; its command log says when each flush was taken and finished
(harness/dumpbed/oracles/dumpio.py). From them the disk is rebuilt (harness/dumpbed/oracles/replay.py), in the manner of
dm-log-writes replay, CrashMonkey and ALICE:

- **at every write boundary**: the partition after the first k writes, for every k (sampled
  beyond MAX_PREFIX_STATES writes, always keeping the headers, slots, end marker and trailer);
- **in the orders a device may apply them**: at each flush (and at the end), the writes that
  had finished but were not durable yet may reach the disk in any subset; for each such group:
  each write alone, each write left out, and random subsets (a bounded, seeded sample).

Each state is classified by the reader (harness/dumpbed/reader/dumpfmt.py) with the run's dump id. The check
fails when a state is corrupt (or unsupported); when a partial state lists an area whose bytes
are not final yet (a write that changes them is still to come or was left out), or calls a
component DUMPED that the final dump does not list DUMPED with the same areas; when a state reads
complete while a write the dump made before its commit is missing from it; and when the write
that first makes the disk read complete was taken before every earlier write was durable
("complete before the final flush"). It also requires the log to explain the final disk: the
last state equals the image.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from dumpbed.capture import blklog
from dumpbed.oracles.base import Check, make_check
from dumpbed.oracles.dumpio import DeviceIO, DumpCommand
from dumpbed.oracles.replay import DiskState, touches
from dumpbed.reader import dumpfmt, frames

MAX_PREFIX_STATES = 4000  # every boundary up to this many writes; sampled beyond
MAX_REORDER_STATES = 3000  # per device
PROBLEMS_KEPT = 50  # per device: the search stops there
RANDOM_SUBSETS = 8  # per group of writes that may reach the disk in any order
MAX_EXAMPLES = 5


@dataclass
class Unit:
    """One write that landed: a log entry, with the device command it belongs to."""
    entry: blklog.Entry
    command: Optional[DumpCommand]
    t0: float = 0.0  # the crash instant: command times are shown after it

    def describe(self) -> str:
        return self.command.describe(self.t0) if self.command is not None else self.entry.describe()


@dataclass
class Tally:
    states: int = 0
    prefix: int = 0
    reordered: int = 0
    groups: int = 0
    read: int = 0  # states the reader actually read (the others changed no byte it looked at)
    by_status: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    first_complete: Optional[int] = None  # prefix length at which the disk first read complete

    def count(self, status: str) -> None:
        self.states += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1


class _Sweep:
    def __init__(self, io: DeviceIO, state: DiskState, units: list[Unit], block_size: int, dump_id: bytes,
                 final: dumpfmt.Dump, seed: int, decoded: Optional[frames.DecodedStore] = None):
        self.io = io
        self.state = state
        self.units = units
        self.block_size = block_size
        self.dump_id = dump_id
        self.final = final
        self.rng = random.Random(seed)
        self.cache = dumpfmt.ReadCache(decoded)
        self._last: Optional[dumpfmt.Dump] = None  # the last state the reader read, and what it read
        self._last_reads: list[tuple[int, int]] = []
        self._read_starts: list[int] = []  # their starts, for the bisection of touches()
        self._stale = False  # a byte changed since
        self._claims_of: Optional[tuple[dumpfmt.Dump, tuple[set[int], Optional[str]]]] = None
        self.tally = Tally()
        self.label = f"{io.role}: " if io.role != "primary" else ""
        part = io.partition_offset
        self._by_offset = sorted(((u.entry.offset - part, u.entry.end - part, u) for u in units),
                                 key=lambda r: (r[0], r[1]))
        self._starts = [r[0] for r in self._by_offset]
        self._writers_of: dict[tuple[int, int], list[Unit]] = {}
        # For each area-sized question "is this range final?": the units that write it.
        self.final_dumped = _dumped_areas(final)

    def problem(self, text: str) -> None:
        if not self.enough:
            self.tally.problems.append(self.label + text)

    @property
    def enough(self) -> bool:
        """As many problems as the check reports: more states would change no word of its verdict
        (a driver without flushes makes hundreds of bad states, each a whole read of the dump)."""
        return len(self.tally.problems) >= PROBLEMS_KEPT

    def classify(self, what: Callable[[], str]) -> dumpfmt.Dump:
        """The reader's verdict on the state, and the checks of its claims. The reader is a
        function of the bytes it reads: when no byte it read for the last state it classified
        has changed since, the verdict is the same, and it is not asked again."""
        # The reads stand until the next read: each change is held against them once.
        changes = self.state.take_changes()
        self._stale = self._stale or touches(changes, self._last_reads, self._read_starts)
        if self._last is None or self._stale:
            self.state.record_reads()
            self._last = dumpfmt.read(self.state, 0, self.state.size, self.block_size, dump_id=self.dump_id,
                                      cache=self.cache)
            self._last_reads = self.state.recorded_reads()
            self._read_starts = [r[0] for r in self._last_reads]
            self._stale = False
            self.tally.read += 1
        d = self._last
        self.tally.count(d.status)
        if d.status in ("corrupt", "unsupported"):
            self.problem(f"{what()} reads {d.status}: {d.reason}")
        elif d.status == "partial":
            self._check_partial(d, what)
        elif d.status == "complete":
            missing = [u for u in self.units[:self._commit_index()] if not self.state.applied[u.entry.index]]
            if missing:
                self.problem(f"{what()} reads complete although {missing[0].describe()} is not on the disk")
        return d

    def _writers(self, lo: int, hi: int) -> list[Unit]:
        """The units that write partition range [lo, hi) (cached: the same areas come back in
        every state)."""
        key = (lo, hi)
        if key not in self._writers_of:
            i = bisect.bisect_left(self._starts, hi)
            self._writers_of[key] = [u for start, end, u in self._by_offset[:i] if end > lo]
        return self._writers_of[key]

    def _commit_index(self) -> int:
        """Units up to and including the first one that made a prefix read complete."""
        return self.tally.first_complete or len(self.units)

    def _partial_claims(self, d: dumpfmt.Dump) -> tuple[np.ndarray, Optional[str]]:
        """What a partial read claims, worked out once per read: the log entries that write
        the areas it lists, and the first component it calls DUMPED unlike the final dump."""
        if self._claims_of is not None and self._claims_of[0] is d:
            return self._claims_of[1]
        writers = np.array(sorted({u.entry.index for a in d.areas
                                   for u in self._writers(a.disk_offset, a.disk_offset + a.padded_length)}), np.int64)
        mismatch = None
        for c in d.components:
            if c.status != dumpfmt.ComponentStatus.DUMPED or self.final.status != "complete":
                continue
            mine = _dumped_areas(d, c.index)
            if self.final_dumped.get(c.name) != mine:
                mismatch = (f"reads partial and calls component {c.name} DUMPED with {len(mine)} areas, but the "
                            f"complete dump lists it with {len(self.final_dumped.get(c.name) or [])}")
                break
        self._claims_of = (d, (writers, mismatch))
        return writers, mismatch

    def _check_partial(self, d: dumpfmt.Dump, what: Callable[[], str]) -> None:
        """Every area it lists is final on the disk; every component it calls DUMPED is DUMPED
        in the final dump with the same areas."""
        writers, mismatch = self._partial_claims(d)
        if not self.state.applied[writers].all():  # walk the areas only to say which one
            for a in d.areas:
                lost = next((u for u in self._writers(a.disk_offset, a.disk_offset + a.padded_length)
                             if not self.state.applied[u.entry.index]), None)
                if lost is not None:
                    self.problem(f"{what()} reads partial and lists area {a.index} ({a.name}) as written, but "
                                 f"{lost.describe()}, which writes its bytes, is not on the disk")
                    return
        if mismatch is not None:
            self.problem(f"{what()} {mismatch}")

    # -- the sweeps ------------------------------------------------------------------------

    def prefixes(self) -> None:
        n = len(self.units)
        keep = set(range(n + 1)) if n <= MAX_PREFIX_STATES else self._sampled_prefixes()
        for k in range(n + 1):
            if k:
                self.state.apply(self.units[k - 1].entry)
            if k not in keep:
                continue
            self.tally.prefix += 1
            d = self.classify(lambda k=k: f"the disk after {k} of {n} writes")
            if d.status == "complete" and self.tally.first_complete is None:
                self.tally.first_complete = k
                self._commit_rule(k)

    def _sampled_prefixes(self) -> set[int]:
        n = len(self.units)
        structural = {k + 1 for k, u in enumerate(self.units)
                      if u.command is not None and not self._is_body(u.command)}
        keep = {0, n} | structural
        keep |= {k - 1 for k in structural if k > 0}
        step = max(1, n // max(1, MAX_PREFIX_STATES - len(keep)))
        keep |= set(range(0, n + 1, step))
        return keep

    def _is_body(self, c: DumpCommand) -> bool:
        h = self.final.header
        return h is not None and self.final.geometry_ok and h.body_offset <= c.offset and c.offset != h.end_offset \
            and c.offset < self.io.partition_bytes - self.block_size

    def _commit_rule(self, k: int) -> None:
        """The write that first made the disk read complete came after every earlier one was
        durable."""
        commit = self.units[k - 1].command
        if commit is None:
            return
        for u in self.units[:k - 1]:
            if u.command is not None and u.command is not commit and not self.io.durable(u.command, commit.issued):
                self.problem(f"the disk reads complete once {commit.describe(self.io.crash_time)} lands, which was taken before "
                             f"{u.describe()} was durable: complete before the final flush")
                return

    def reorders(self, state: DiskState) -> None:
        """At each flush's finish (and at the end), the finished writes not yet durable may be on
        the disk in any subset. `state` starts from the initial content."""
        self.state = state
        points = sorted({f.finished for f in self.io.flushes if f.finished is not None}) + [float("inf")]
        budget = MAX_REORDER_STATES
        base = 0  # units[:base] applied for good: a prefix of the durable writes
        # When each unit's write became durable, once: durable just before t is durable_since < t
        # (the first flush to cover it finished before t), not a search of the flushes each time.
        since = [self.io.durable_since(u.command) if u.command is not None else None for u in self.units]
        # Each flush point takes the units that finished by it (a unit without a command is
        # there from the start; one whose command never finished never is) and those durable
        # just before it, in the order they did so, instead of a pass over every unit at every
        # point. A unit is durable only once a flush taken after it finished has finished, so
        # durable ones are finished ones.
        by_finish = sorted((float("-inf") if u.command is None else u.command.finished, i)
                           for i, u in enumerate(self.units) if u.command is None or u.command.finished is not None)
        by_durable = sorted((since[i], i) for i in range(len(self.units)) if since[i] is not None)
        durable: set[int] = set()
        waiting: set[int] = set()  # finished, not durable
        nf = nd = 0
        for t in points:
            while nf < len(by_finish) and by_finish[nf][0] <= t:
                waiting.add(by_finish[nf][1])
                nf += 1
            while nd < len(by_durable) and by_durable[nd][0] < t:
                durable.add(by_durable[nd][1])
                waiting.discard(by_durable[nd][1])
                nd += 1
            pending = sorted(waiting)
            if len(pending) < 2 or budget <= 0 or self.enough:
                continue
            self.tally.groups += 1
            while base < len(self.units) and base in durable:
                state.apply(self.units[base].entry)
                base += 1
            rest = sorted(i for i in durable if i >= base)
            budget -= self._group(state, rest, pending, t, budget)

    def _group(self, state: DiskState, rest: list[int], pending: list[int], t: float, budget: int) -> int:
        """The states of one group: the durable writes (`rest` beyond the applied prefix), then
        each pending write alone, each one left out, and random subsets. Returns the states made."""
        made = 0
        outer = state.mark()
        for i in rest:
            state.apply(self.units[i].entry, undoable=True)

        def one(subset: list[int]) -> None:
            nonlocal made
            self.tally.reordered += 1
            made += 1
            self.classify(lambda s=subset: self._describe_subset(
                s, [self.units[i] for i in pending if i not in set(s)], t))

        for j in pending:  # each alone
            if made >= budget or self.enough:
                break
            mark = state.mark()
            state.apply(self.units[j].entry, undoable=True)
            one([j])
            state.undo_to(mark)
        if made < budget and self._disjoint(pending + rest):
            # Each left out: all applied once, then each one's range put back in turn.
            mark = state.mark()
            for i in pending:
                state.apply(self.units[i].entry, undoable=True)
            for j in pending:
                if made >= budget or self.enough:
                    break
                data = state.swap_out(self.units[j].entry, mark)
                one([i for i in pending if i != j])
                state.swap_in(self.units[j].entry, data)
            state.undo_to(mark)
        randoms = [[i for i in pending if self.rng.random() < 0.5] for _ in range(RANDOM_SUBSETS)]
        if not self._disjoint(pending + rest):
            randoms = [[i for i in pending if i != j] for j in pending] + randoms
        for subset in randoms:
            if made >= budget or self.enough:
                break
            mark = state.mark()
            for i in subset:
                state.apply(self.units[i].entry, undoable=True)
            one(subset)
            state.undo_to(mark)
        state.undo_to(outer)
        return made

    def _disjoint(self, indexes: list[int]) -> bool:
        ranges = sorted((self.units[i].entry.offset, self.units[i].entry.end) for i in indexes)
        return all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))

    def _describe_subset(self, subset: list[int], missing: list[Unit], t: float) -> str:
        when = ("at the end" if t == float("inf")
                else f"just before the flush finishing at +{(t - self.io.crash_time) * 1000:.2f} ms")
        if len(missing) <= 2:
            left = " and ".join(u.describe() for u in missing) or "nothing"
            return f"the disk {when} with {left} lost"
        return f"the disk {when} with {len(subset)} of the {len(subset) + len(missing)} unflushed writes applied"


def _dumped_areas(d: dumpfmt.Dump, only: Optional[int] = None):
    """{name of a DUMPED component: [(area name, phys, length, disk offset)]} in one pass over
    the areas (a hostile directory may list tens of thousands of each); with `only`, that
    component's list."""
    by_index: dict[int, list] = {}
    for a in d.areas:
        if only is None or a.component == only:
            by_index.setdefault(a.component, []).append((a.name, a.phys_addr, a.length, a.disk_offset))
    if only is not None:
        return by_index.get(only, [])
    return {c.name: by_index.get(c.index, []) for c in d.components if c.status == dumpfmt.ComponentStatus.DUMPED}


def _units(io: DeviceIO) -> list[Unit]:
    owner = {id(e): c for c in io.commands for e in c.entries}
    entries = [e for c in io.commands for e in c.entries] + list(io.unmatched_entries)
    entries.sort(key=lambda e: e.index)
    return [Unit(e, owner.get(id(e)), io.crash_time) for e in entries]


def _whole_chunk_crcs(final: dumpfmt.Dump, io: DeviceIO) -> Optional[list[int]]:
    """The CRCs of the final image's whole body chunks as the reader found them (without a short
    last chunk: its CRC is not that of a whole chunk's bytes), for the sweep to take rather than
    compute again; None when the reader did not CRC them."""
    h = final.header
    if final.chunk_crcs is None or h is None or final.partition_offset != io.partition_offset:
        return None
    return final.chunk_crcs[:max(0, (h.sealed_end - h.body_offset) // h.chunk_size)]


def check_device(io: DeviceIO, final_image: Path, block_size: int, dump_id: bytes, final: Callable[[], dumpfmt.Dump],
                 initial: Callable[[int, int], bytes],
                 decoded: Optional[frames.DecodedStore] = None) -> tuple[Tally, str]:
    """Sweep one dump device; returns the tally and a one-line summary. `final` gives the final
    dump, asked for only once the log is found to explain the image: the caller may still be
    reading it. `decoded`: the frames the read of the image decoded (dumpfmt.read's
    keep_decoded), which the states' reads take where their bytes are the same."""
    if io.log is None:
        t = Tally()
        t.problems.append(f"{io.role}: no write log ({blklog.LOG_SUFFIX}): the disk's states cannot be rebuilt")
        return t, ""
    units = _units(io)
    seed = int.from_bytes(dump_id[:8], "little") if dump_id else 0
    with io.log.opener() as data:
        with DiskState(io.partition_offset, io.partition_bytes, initial, data, [u.entry for u in units]) as state:
            # First whether the log explains the disk at all: if not, its states are not the
            # disk's, and the sweep would judge something that never was.
            for u in units:
                state.apply(u.entry)
            differs = state.first_difference(final_image)
            final_dump = final()
            sweep = _Sweep(io, state, units, block_size, dump_id, final_dump, seed, decoded)
            if differs is not None:
                sweep.problem(f"the write log does not explain the final disk: replayed on the disk as it was "
                              f"before the run, it differs from the image at partition offset 0x{differs:x} "
                              f"(a change that no logged write made); its states were not examined")
            else:
                crcs = _whole_chunk_crcs(final_dump, io)
                if crcs is not None:  # the final state's bytes are the image's, which the reader CRC'd
                    state.adopt_crcs(final_dump.header.body_offset, final_dump.header.chunk_size, crcs)
                state.reset()
                sweep.prefixes()
                state.reset()
                sweep.reorders(state)
    t = sweep.tally
    label = f"{io.role}: " if io.role != "primary" else ""
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(t.by_status.items()))
    summary = (f"{label}{t.states} states of {len(units)} writes ({t.prefix} at write boundaries, {t.reordered} "
               f"reordered within {t.groups} groups of unflushed writes; {t.read} read anew): {statuses}")
    return t, summary


def check_consistency(devices: list[tuple[DeviceIO, Path, int, dumpfmt.Dump | Callable[[], dumpfmt.Dump],
                                         Callable[[int, int], bytes]]],
                      dump_id: bytes, decoded: Optional[frames.DecodedStore] = None) -> Check:
    """devices: (io, image, block size, its final dump, its initial content) for each dump device.
    The final dump may be a function that gives it (waiting for a reader still at work): the
    log's replay is compared with the image before it is asked for. `decoded`: check_device's."""
    problems: list[str] = []
    summaries: list[str] = []
    for io, image, block_size, final, initial in devices:
        final_of = final if callable(final) else (lambda d=final: d)
        if not io.writes and final_of().status == "none":
            continue
        tally, summary = check_device(io, image, block_size, dump_id, final_of, initial, decoded)
        problems += tally.problems
        if summary:
            summaries.append(summary)
    if not summaries and not problems:
        return Check("consistency", True, "no dump writes: nothing to rebuild")
    return make_check("consistency", problems, "; ".join(summaries) + "; none corrupt, every partial state's "
                      "areas final, complete only once everything before the commit was durable")
