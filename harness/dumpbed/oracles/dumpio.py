"""The dump's I/O on one dump device, as the device saw it: the device's command log (times,
harness/dumpbed/capture/cmdlog.py) joined with its write log (the bytes that landed, harness/dumpbed/capture/blklog.py).

For each command the device took after the crash: a write (where, when taken, when finished,
whether its bytes reached the image and where they are in the write log) or a flush (when taken,
when finished). The two oracles that judge order and crash consistency (write_order,
consistency) read this, and nothing else, about the device.

**Durable.** A write is durable at time T when a flush the device took after the write had
finished has itself finished by T (QEMU's block layer flushes what completed before the flush
started: `bdrv_co_flush` snapshots write_gen when it begins).
"""
from __future__ import annotations

import bisect
import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dumpbed.capture import blklog, cmdlog
from dumpbed.scenario import disks


@dataclass
class DumpCommand:
    """A write or flush the dump device took after the crash."""
    index: int  # position among the device's post-crash writes and flushes, in the order taken
    kind: str  # "write" or "flush"
    number: int  # 1-based among the commands of its kind (the dump's write 1, 2, ...)
    offset: int  # partition offset (writes; 0 for a flush)
    length: int
    issued: float
    finished: Optional[float]  # None: never finished (QEMU was killed first)
    ok: bool  # finished without an error (a failed write did not land)
    entries: list[blklog.Entry] = field(default_factory=list)  # its bytes in the write log, if it landed

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def landed(self) -> bool:
        return bool(self.entries)

    def describe(self, t0: float = 0.0) -> str:
        when = f", taken at +{(self.issued - t0) * 1000:.2f} ms"
        if self.kind == "flush":
            return f"flush {self.number}{when}"
        return f"write {self.number} of {self.length} bytes at partition offset 0x{self.offset:x}{when}"


@dataclass
class DeviceIO:
    role: str
    disk: Optional[str]  # the command log's name of the disk (cmdlog: "vblk:VDEV", "scsi:T:L")
    partition_offset: int
    partition_bytes: int
    crash_time: float
    commands: list[DumpCommand]  # writes and flushes after the crash, in the order taken
    log: Optional[blklog.WriteLog]
    unmatched_entries: list[blklog.Entry]  # landed writes no device command accounts for
    outside: list[cmdlog.Command]  # writes after the crash that are not in the dump partition
    _flush_ends: list[tuple[float, float]] = field(default_factory=list, repr=False)
    _latest_taken: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self):
        # (finished, taken) of every good flush, by finish time: durable() bisects it; and the
        # latest time any of the first n was taken, n = 1, 2, ...
        self._flush_ends = sorted((c.finished, c.issued) for c in self.commands
                                  if c.kind == "flush" and c.ok and c.finished is not None)
        self._latest_taken = list(itertools.accumulate((taken for _, taken in self._flush_ends), max))

    @property
    def writes(self) -> list[DumpCommand]:
        return [c for c in self.commands if c.kind == "write"]

    @property
    def flushes(self) -> list[DumpCommand]:
        return [c for c in self.commands if c.kind == "flush"]

    def durable(self, write: DumpCommand, at: float) -> bool:
        """The write landed and a flush taken after it finished had finished by `at`."""
        if not write.landed or not write.ok or write.finished is None:
            return False
        upto = bisect.bisect_right(self._flush_ends, (at, float("inf")))
        return upto > 0 and self._latest_taken[upto - 1] >= write.finished

    def durable_since(self, write: DumpCommand) -> Optional[float]:
        """When the write became durable, or None."""
        if not write.landed or not write.ok or write.finished is None:
            return None
        for finished, taken in self._flush_ends:
            if taken >= write.finished:
                return finished
        return None


def disk_ids(commands: list[cmdlog.Command], kind: str, target: int, lun: int, crash_time: float,
             nth_of_bus: int) -> Optional[str]:
    """The command log's name for a dump disk: SCSI disks by target and LUN; virtio-blk (NVMe)
    disks by QEMU's device pointer (namespace id), the n-th such device written after the crash
    (the dump starts on the primary, so it is written first)."""
    bus = disks.get(kind).bus
    if bus == disks.SCSI_BUS:
        return f"scsi:{target}:{lun}"
    prefix = cmdlog.DISK_PREFIX_BY_BUS[bus]
    seen: list[str] = []
    for c in commands:
        if c.disk.startswith(prefix) and c.kind == "write" and c.issued >= crash_time and c.disk not in seen:
            seen.append(c.disk)
    return seen[nth_of_bus] if nth_of_bus < len(seen) else None


def build(role: str, disk: Optional[str], cmds: cmdlog.CommandLog, log: Optional[blklog.WriteLog],
          partition_offset: int, partition_bytes: int, crash_time: float) -> DeviceIO:
    """Join one dump disk's post-crash commands with the writes that landed on its image.

    Writes are matched to log entries by place and order: a device command's bytes are the next
    unmatched log entries inside its range (the LSI emulation moves a SCSI WRITE in 128 KiB
    block-layer pieces; virtio-blk may merge adjacent requests into one)."""
    start, end = partition_offset, partition_offset + partition_bytes
    mine = [c for c in cmds.commands if disk is not None and c.disk == disk and c.issued >= crash_time
            and c.kind in ("write", "flush")]
    commands: list[DumpCommand] = []
    outside: list[cmdlog.Command] = []
    numbered = {"write": 0, "flush": 0}  # the dump's write 1, 2, ... and flush 1, 2, ...
    for c in mine:
        if c.kind == "write" and (c.offset is None or not (start <= c.offset and c.offset + c.length <= end)):
            outside.append(c)
            continue
        offset = c.offset - start if c.kind == "write" else 0
        ok = c.completed is not None and (c.status in (None, 0))
        numbered[c.kind] += 1
        commands.append(DumpCommand(len(commands), c.kind, numbered[c.kind], offset, c.length, c.issued, c.completed,
                                    ok))

    unmatched: list[blklog.Entry] = []
    if log is not None:
        # Log entries inside the partition, each given to the first write taken that covers it
        # and has bytes left to account for.
        pending = [w for w in commands if w.kind == "write"]
        for e in log.entries:
            if not e.is_write or not (start <= e.offset and e.end <= end):
                continue
            rel = e.offset - start
            owner = next((w for w in pending if w.offset <= rel and rel + e.length <= w.end
                          and sum(x.length for x in w.entries) < w.length), None)
            pieces = [(owner, e)] if owner is not None else _merged(e, rel, pending)
            if not pieces:
                unmatched.append(e)
                continue
            for w, piece in pieces:
                w.entries.append(piece)
                if sum(x.length for x in w.entries) >= w.length:
                    pending.remove(w)
    return DeviceIO(role, disk, partition_offset, partition_bytes, crash_time, commands, log, unmatched, outside)


def _merged(e: blklog.Entry, rel: int, pending: list[DumpCommand]) -> list[tuple[DumpCommand, blklog.Entry]]:
    """A log entry that QEMU's virtio-blk merged from adjacent requests (virtio_blk_submit_multireq):
    the pending writes that tile its range exactly, each with its piece of the entry; [] when none do."""
    pieces, at, end = [], rel, rel + e.length
    while at < end:
        w = next((w for w in pending if w.offset == at and w.end <= end and not w.entries), None)
        if w is None:
            return []
        k = at - rel
        pieces.append((w, dataclasses.replace(e, offset=e.offset + k, length=w.length, data_at=e.data_at + k)))
        at = w.end
    return pieces


def load(role: str, image: Path, kind: str, target: int, lun: int, nth_of_bus: int,
         partition_offset: int, partition_bytes: int, crash_time: float, cmds: cmdlog.CommandLog) -> DeviceIO:
    """One dump device's I/O; nth_of_bus: how many dump disks of its bus come before it."""
    disk = disk_ids(cmds.commands, kind, target, lun, crash_time, nth_of_bus)
    path = blklog.log_path(image)
    log = blklog.read(path) if path.exists() else None
    return build(role, disk, cmds, log, partition_offset, partition_bytes, crash_time)


def header_written(io: DeviceIO, w: DumpCommand):
    """The dumpfmt.Header a landed write at the leader or trailer put on the disk, or None when
    its bytes are not a valid header."""
    from dumpbed.reader import dumpfmt

    if not w.entries or io.log is None or w.entries[0].length < dumpfmt.HEADER_SIZE:
        return None
    h = dumpfmt.Header.parse(io.log.data(w.entries[0], 0, dumpfmt.HEADER_SIZE))
    return h if h.valid else None


def last_leader(io: DeviceIO, dump_id: bytes):
    """The last leader of this dump (its id) that reached the disk, or None."""
    from dumpbed.reader import dumpfmt

    for w in reversed(io.writes):
        if w.offset == dumpfmt.LEADER_OFFSET and w.landed:
            h = header_written(io, w)
            if h is not None and h.dump_id == dump_id:
                return h
    return None


def first_lost_write(io: DeviceIO) -> Optional[tuple[DumpCommand, int]]:
    """The first dump write that did not (wholly) reach the disk, with the partition offset of
    its first byte that did not: where a failing device or a fault's trigger hit."""
    for w in io.writes:
        done = sum(e.length for e in w.entries)
        if done < w.length:
            return w, w.offset + done
    return None
