"""The `write-order` oracle: the dump device saw its writes and flushes in the order the format's
durability rules demand (docs/dump-format.md, "Durability"), and all of them finished before the
guest said DONE.

Evidence from outside the guest only: the device's command log (when each write and flush was
taken and finished, harness/dumpbed/capture/cmdlog.py) joined with its write log (the bytes that landed: each
header the guest wrote is read back from there, harness/dumpbed/oracles/dumpio.py). The rules, for each dump
device:

1. The first write is a leader naming no slot (slot 0), and nothing but leaders is written
   before a leader of this dump is durable: until then an older dump's leader may still be on
   disk, vouching for its slots, body and trailer.
2. A leader (or trailer) is taken only once everything it vouches for is durable: the writes
   into its directory and table slot, the body up to its body_written (every byte of it written),
   and for a COMPLETE header the end marker (and, for the leader, the trailer).
3. A slot is written only while no leader that names it may be on disk: the last durable
   leader and every leader taken after it name the other slot.
4. No byte of the body is written twice, save by a retry: the same transfer (place, length and
   bytes, read from the write log) sent again.
5. Every write and flush finished before the DONE line's first byte reached the result channel,
   and the final leader was durable by then.
6. Only body writes overlap, at most as many at once as the device's DUMPQUERY said it takes
   (`outstanding=` of the guest's QUIESCED line; 1 without it): every other write, and every
   flush, is taken once every command before it has finished. A command the guest may have given
   up on (in flight longer than its I/O timeout) no longer counts as in flight.

A driver that never flushes, flushes before the writes it must cover have finished, writes the
COMPLETE leader before the body it vouches for, or reports DONE with writes still in flight
breaks one of these whatever bytes ended up on the disk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dumpbed.oracles.base import Check, make_check
from dumpbed.oracles.dumpio import DeviceIO, DumpCommand, header_written
from dumpbed.reader import dumpfmt

LEADER = dumpfmt.LEADER_OFFSET


@dataclass
class _Header:
    """A header the guest wrote (a leader or the trailer), as it landed."""
    write: DumpCommand
    where: str  # "leader" or "trailer"
    h: Optional[dumpfmt.Header]  # None: the bytes are not a v3 header

    def label(self) -> str:
        if self.h is None:
            return f"{self.where} (write {self.write.number}: not a valid header)"
        return (f"{self.where} (write {self.write.number}: {self.h.status_name}, slot {self.h.slot}, "
                f"body_written {self.h.body_written})")


class _Geometry:
    """Where things are, from the first leader the guest wrote."""

    def __init__(self, h: dumpfmt.Header, partition_bytes: int):
        self.dir = [(h.dir_offset + i * h.dir_bytes, h.dir_offset + (i + 1) * h.dir_bytes) for i in range(2)]
        self.table = [(h.crc_table_offset + i * h.crc_table_bytes, h.crc_table_offset + (i + 1) * h.crc_table_bytes)
                      for i in range(2)]
        self.body_offset = h.body_offset
        self.trailer = partition_bytes - h.block_size

    def slot_of(self, w: DumpCommand) -> Optional[int]:
        for s in (1, 2):
            for lo, hi in (self.dir[s - 1], self.table[s - 1]):
                if w.offset < hi and lo < w.end:
                    return s
        return None

    def region(self, w: DumpCommand) -> str:
        if w.offset == LEADER:
            return "leader"
        if w.offset == self.trailer:
            return "trailer"
        slot = self.slot_of(w)
        if slot is not None:
            return f"slot {slot}"
        return "body" if w.offset >= self.body_offset else "outside"


def _header_of(io: DeviceIO, w: DumpCommand) -> Optional[dumpfmt.Header]:
    return header_written(io, w)


def device_problems(io: DeviceIO, done_time: Optional[float], expect_done: bool,
                    done_failed: bool = False, outstanding: int = 1,
                    io_timeout: Optional[float] = None) -> tuple[list[str], str]:
    """The rules for one device; returns (problems, a summary of what was seen)."""
    t0 = io.crash_time
    label = f"{io.role}: " if io.role != "primary" else ""
    problems: list[str] = []
    # Rules 1 to 4 are about what reached the disk: a write that failed changed nothing.
    writes = [w for w in io.writes if w.landed]
    if not writes:
        return [], f"{label}no writes landed"
    first = writes[0]
    first_h = _header_of(io, first) if first.offset == LEADER else None
    if first_h is None or first_h.slot != 0:
        problems.append(f"{label}the first write that landed is {first.describe(t0)}, not a first leader "
                        f"(slot 0): an older dump's leader may still vouch for what it overwrites")
        if first_h is None:
            return problems, ""
    geo = _Geometry(first_h, io.partition_bytes)
    headers: list[_Header] = []
    body_ranges: list[tuple[int, int, DumpCommand]] = []
    for w in writes:
        region = geo.region(w)
        if region in ("leader", "trailer"):
            headers.append(_Header(w, region, _header_of(io, w)))
        leaders = [h.write for h in headers if h.where == "leader" and h.write is not w]
        if region != "leader" and not any(io.durable(l, w.issued) for l in leaders):
            problems.append(f"{label}{w.describe(t0)} ({region}) was taken before any leader of this dump "
                            f"was durable")
        if region.startswith("slot"):
            problems += [label + p for p in _slot_rule(io, w, int(region[-1]), headers, t0)]
        elif region == "body":
            body_ranges.append((w.offset, w.end, w))

    problems += [label + p for p in _body_written_once(io, body_ranges, t0)]
    overlap, most = _overlap_rule(io, geo, outstanding, io_timeout, t0)
    problems += [label + p for p in overlap]
    for hdr in headers:
        problems += [label + p for p in _vouch_rule(io, geo, hdr, writes, t0)]
    problems += [label + p for p in _done_rule(io, headers, done_time, expect_done, t0, done_failed)]
    leaders = [h for h in headers if h.where == "leader"]
    slots = [h.h.slot for h in leaders if h.h is not None and h.h.slot]
    final = leaders[-1].h.status_name if leaders and leaders[-1].h is not None else "none"
    seen = (f"{label}{len(writes)} writes and {len(io.flushes)} flushes after the crash, at most {most} in flight "
            f"at once (DUMPQUERY: {outstanding}); {len(leaders)} leaders (slots {''.join(map(str, slots)) or '-'}), "
            f"the last {final}")
    return problems, seen


def _slot_rule(io: DeviceIO, w: DumpCommand, slot: int, headers: list[_Header], t0: float) -> list[str]:
    """Rule 3: no leader that names this slot may still be on disk when the slot is written."""
    leaders = [h for h in headers if h.where == "leader" and h.write.issued < w.issued]
    durable = [i for i, h in enumerate(leaders) if io.durable(h.write, w.issued)]
    maybe = leaders[durable[-1]:] if durable else leaders  # the last durable one and all after it
    naming = [h for h in maybe if h.h is None or h.h.slot == slot]
    if not naming:
        return []
    h = naming[0]
    return [f"{w.describe(t0)} writes slot {slot} while the {h.label()} naming it may still be on disk "
            f"(no leader naming the other slot was durable yet)"]


def _body_written_once(io: DeviceIO, ranges: list[tuple[int, int, DumpCommand]], t0: float) -> list[str]:
    ranges = sorted(ranges, key=lambda r: (r[0], r[2].index))
    problems = []
    for (a0, a1, wa), (b0, b1, wb) in zip(ranges, ranges[1:]):
        if b0 < a1 and not _a_retry(io, wa, wb):
            problems.append(f"{wb.describe(t0)} writes body bytes that {wa.describe(t0)} already wrote "
                            f"(the body is written once; a retry sends the same transfer again)")
    return problems


def _overlap_rule(io: DeviceIO, geo: _Geometry, outstanding: int, io_timeout: Optional[float],
                  t0: float) -> tuple[list[str], int]:
    """Rule 6: body writes overlap only body writes, at most `outstanding` at once; everything
    else waits for every command before it. A command that never finished (QEMU ended first, the
    device went away) or outlived the guest's I/O timeout is one the guest may have given up on.
    Returns the problems and the most commands seen in flight at once."""
    def body(c: DumpCommand) -> bool:
        return c.kind == "write" and geo.region(c) == "body"

    problems: list[str] = []
    in_flight: list[DumpCommand] = []
    most = 0
    for c in io.commands:  # in the order taken
        in_flight = [o for o in in_flight if o.finished is not None and o.finished > c.issued
                     and (io_timeout is None or c.issued - o.issued < io_timeout)]
        if in_flight and not (body(c) and all(body(o) for o in in_flight)):
            problems.append(f"{c.describe(t0)} was taken while {in_flight[0].describe(t0)} was still in flight "
                            f"(only body writes overlap; everything else waits for the commands before it)")
        elif len(in_flight) >= outstanding:
            problems.append(f"{c.describe(t0)}: {len(in_flight) + 1} writes in flight at once, where the device's "
                            f"DUMPQUERY said it takes {outstanding} (QUIESCED outstanding={outstanding})")
        in_flight.append(c)
        most = max(most, len(in_flight))
    return problems, most


def _a_retry(io: DeviceIO, first: DumpCommand, again: DumpCommand) -> bool:
    """The same transfer sent again: same place, same length, same bytes (docs/dump-format.md, Body)."""
    if (first.offset, first.length) != (again.offset, again.length) or io.log is None:
        return False
    return _bytes_of(io, first) == _bytes_of(io, again)


def _bytes_of(io: DeviceIO, w: DumpCommand) -> bytes:
    return b"".join(io.log.data(e) for e in w.entries)


def _vouch_rule(io: DeviceIO, geo: _Geometry, hdr: _Header, writes: list[DumpCommand], t0: float) -> list[str]:
    """Rule 2: what a header vouches for is durable when the header is taken."""
    h, at = hdr.h, hdr.write.issued
    if h is None:
        return [f"the {hdr.label()} is not a valid version {dumpfmt.VERSION} header"]
    before = [w for w in writes if w.issued < at and w is not hdr.write]
    vouched: list[tuple[str, DumpCommand]] = []
    if h.slot:
        vouched += [(f"slot {h.slot}", w) for w in before if geo.slot_of(w) == h.slot]
    body_end = geo.body_offset + (h.body_bytes if h.complete else h.body_written)
    body = [w for w in before if geo.region(w) == "body" and w.offset < body_end]
    vouched += [("body", w) for w in body]
    if h.complete:
        vouched += [("end marker", w) for w in before if w.offset == h.end_offset]
        if hdr.where == "leader":
            vouched += [("trailer", w) for w in before if w.offset == geo.trailer]
    problems = [f"the {hdr.label()} was taken at +{(at - t0) * 1000:.2f} ms before the {what} "
                f"{w.describe(t0)} was durable" for what, w in vouched if not io.durable(w, at)]
    # Every byte of the body it vouches for was written (and landed).
    covered, gap = geo.body_offset, None
    for w in sorted((w for w in body if w.landed), key=lambda w: w.offset):
        if w.offset > covered:
            gap = covered
            break
        covered = max(covered, w.end)
    if gap is None and covered < body_end:
        gap = covered
    if gap is not None:
        problems.append(f"the {hdr.label()} vouches for body up to partition offset 0x{body_end:x}, but nothing "
                        f"was written at 0x{gap:x} before it")
    if h.complete and not any(w.offset == h.end_offset and w.landed for w in before):
        problems.append(f"the {hdr.label()} is COMPLETE but no end marker was written before it")
    if h.complete and hdr.where == "leader" and not any(w.offset == geo.trailer and w.landed for w in before):
        problems.append(f"the {hdr.label()} is COMPLETE but no trailer was written before it "
                        f"(the final leader is the commit: the trailer comes first)")
    return problems


def _done_rule(io: DeviceIO, headers: list[_Header], done_time: Optional[float], expect_done: bool,
               t0: float, done_failed: bool = False) -> list[str]:
    """Rule 5: nothing in flight when the guest says DONE; the final leader durable by then.
    After DONE status=failed a command may still be in flight: the guest gave up on it (its
    bounded wait expired, the device is gone) and says so."""
    if done_time is None:
        return ["the guest's DONE line was expected but its time is unknown (result channel not traced)"] \
            if expect_done else []
    problems = []
    late = [c for c in io.commands if c.issued < done_time and (c.finished is None or c.finished > done_time)
            and not done_failed]
    for c in late[:3]:
        when = ("never finished, though the guest had reported DONE" if c.finished is None
                else f"finished {(c.finished - done_time) * 1000:.2f} ms after the guest reported DONE")
        problems.append(f"{c.describe(t0)} {when}")
    after = [c for c in io.commands if c.issued >= done_time]
    if after:
        problems.append(f"{after[0].describe(t0)} was taken after the guest reported DONE")
    final = [h for h in headers if h.where == "leader" and h.h is not None and h.h.complete]
    if final and not io.durable(final[-1].write, done_time):
        problems.append(f"the final leader ({final[-1].label()}) was not durable when the guest reported DONE "
                        f"(no flush after it had finished)")
    return problems


def check_write_order(devices: list[DeviceIO], done_time: Optional[float], expect_done: bool,
                      done_failed: bool = False, outstanding: Optional[dict[str, int]] = None,
                      io_timeout: Optional[float] = None) -> Check:
    """`outstanding`: each device role's DUMPQUERY max_outstanding (1 when absent); `io_timeout`:
    the guest's I/O timeout in seconds."""
    problems: list[str] = []
    seen: list[str] = []
    for io in devices:
        p, s = device_problems(io, done_time, expect_done, done_failed, (outstanding or {}).get(io.role, 1),
                               io_timeout)
        problems += p
        if s:
            seen.append(s)
        if io.unmatched_entries:
            e = io.unmatched_entries[0]
            problems.append(f"{io.role}: {len(io.unmatched_entries)} writes landed in the dump partition that the "
                            f"device's command log does not account for, first: {e.describe()}")
        unlogged = [w for w in io.writes if w.ok and w.finished is not None
                    and sum(e.length for e in w.entries) < w.length]
        if unlogged:
            problems.append(f"{io.role}: the device finished {unlogged[0].describe(io.crash_time)} without an error, "
                            f"but its bytes are not (all) in the write log ({len(unlogged)} such writes)")
    if not any(io.writes for io in devices) and not problems:
        return Check("write-order", True, "no dump writes after the crash")
    done = "; every write and flush finished before DONE" if done_time is not None else ""
    return make_check("write-order", problems, "; ".join(seen) + "; each header taken after what it vouches "
                      "for was durable, no slot written while a leader naming it could be on disk, "
                      "no body byte written twice, only body writes overlapping (at most as many as "
                      "DUMPQUERY said)" + done)
