"""Live faults during the dump: watch the dump's progress from the host and act at the chosen
point (harness/faults.py says what each fault is and when it fires).

Progress is read from two places the guest cannot fake for us: QEMU's own trace of the write
commands the dump disk received (qemu-trace.log, flushed line by line), and the guest's
PROGRESS lines on the result channel (written / estimate).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness import resultchan, writelog
from harness.deadline import Deadline
from harness.errors import DumpbedError
from harness.faults import Fault
from harness.machine import Machine

POLL = 0.01
MIB = 1 << 20


class DumpProgress:
    """How far the dump has got, as the host sees it: write commands after the crash, and the
    fraction the guest last reported."""

    def __init__(self, out: Path, disk_kind: str, block_size: int, crash_time: float, part_offset: int):
        self.trace = out / writelog.TRACE_FILE
        self.result_log = out / "result.log"
        self.crash_time = crash_time
        self.part_offset = part_offset
        # The trace is read incrementally: each poll parses only the lines added since the last.
        self._parser = writelog.WriteParser(disk_kind, block_size)
        self._read_to = 0
        self._partial = ""
        self._count = 0
        self._furthest = 0  # end of the furthest write into the partition, partition-relative

    def _update(self) -> None:
        if not self.trace.exists():
            return
        with open(self.trace, encoding="ascii", errors="replace") as f:
            f.seek(self._read_to)
            text = self._partial + f.read()
            self._read_to = f.tell()
        lines = text.split("\n")
        self._partial = lines.pop()  # a line without its newline is still being written
        for line in lines:
            w = self._parser.line(line)
            if w is not None and (w.time is None or w.time >= self.crash_time):
                self._count += 1
                self._furthest = max(self._furthest, w.offset + w.length - self.part_offset)

    def writes(self) -> int:
        self._update()
        return self._count

    def fraction(self) -> float:
        """Of the guest's estimate (its PROGRESS total): the furthest the dump has written into
        the partition, as QEMU saw it, or what the guest last reported, whichever is further.
        The guest reports only at checkpoints; the writes show every step."""
        best, total = 0.0, 0
        for line in resultchan.read_lines(self.result_log):
            if line.word != "PROGRESS":
                continue
            try:
                written, total = int(line.fields["written"]), int(line.fields["total"])
            except (KeyError, ValueError):
                continue
            if total > 0:
                best = max(best, written / total)
        if total > 0:
            # Body offsets start after the leader slot, directory and table slots: a small
            # head start, which makes this fraction err early rather than late.
            self._update()
            best = max(best, self._furthest / total)
        return min(best, 1.0)

    def done(self) -> bool:
        return any(line.word == "DONE" for line in resultchan.read_lines(self.result_log))


@dataclass
class FaultLog:
    """What happened to the fault: saved as fault.json beside the other artifacts."""
    fault: str
    fired: bool = False
    writes_seen: Optional[int] = None
    fraction_seen: Optional[float] = None
    seconds_after_crash: Optional[float] = None
    action: str = ""
    note: str = ""
    events: list[str] = field(default_factory=list)

    def save(self, out: Path) -> None:
        (out / "fault.json").write_text(json.dumps(self.__dict__, indent=1) + "\n")


def wait_for_trigger(fault: Fault, progress: DumpProgress, machine: Machine, timeout: float) -> FaultLog:
    """Poll until the fault's point is reached; the log says where, or why it never was."""
    log = FaultLog(str(fault))
    what = (f"{fault.after_writes} writes to the dump disk" if fault.after_writes is not None
            else f"{fault.at_fraction:.0%} of the dump on the result channel")
    deadline = Deadline(timeout, f"the fault {fault}'s trigger ({what})")
    t0 = time.monotonic()
    while True:
        writes, fraction = progress.writes(), progress.fraction()
        reached = (writes >= fault.after_writes if fault.after_writes is not None
                   else fraction >= fault.at_fraction)
        if reached:
            log.fired, log.writes_seen, log.fraction_seen = True, writes, round(fraction, 4)
            log.seconds_after_crash = round(time.monotonic() - t0, 3)
            return log
        if progress.done() or not machine.is_running():
            log.writes_seen, log.fraction_seen = writes, round(fraction, 4)
            log.note = f"the dump ended before {what}: the fault never fired"
            return log
        if deadline.expired:
            raise deadline.timeout()
        time.sleep(POLL)


def act(fault: Fault, machine: Machine, log: FaultLog) -> None:
    """Do the live fault to the running machine."""
    if fault.name == "pause":
        machine.stop()
        time.sleep(fault.value)
        machine.cont()
        log.action = f"stopped the VM for {fault.value} s, then continued"
    elif fault.name == "reset":
        machine.qmp.command("system_reset")
        log.action = "system_reset"
    elif fault.name in ("kill", "stale"):
        machine.kill()
        log.action = f"SIGKILL to QEMU (exit status {machine.exit_status})"
    elif fault.name == "unplug":
        machine.qmp.command("device_del", {"id": "disk0-dev"})
        log.action = "device_del of the dump disk (disk0-dev)"
    else:
        raise DumpbedError(f"fault {fault.name} is not a live fault")


def wait_for_lines(path: Path, word: str, count: int, timeout: float, alive, what: str) -> None:
    """Until the result channel holds `count` lines with WORD (e.g. a second READY); a
    DumpbedError at once if QEMU ends first."""
    deadline = Deadline(timeout, what)
    while sum(1 for line in resultchan.read_lines(path) if line.word == word) < count:
        if not alive():
            raise DumpbedError(f"QEMU ended while waiting for {what}")
        if deadline.expired:
            raise deadline.timeout()
        time.sleep(POLL * 10)


def throttle(machine: Machine, disk_kind: str, mib_per_s: int) -> None:
    """`slow`: every write to the dump disk limited to mib_per_s (QMP wants all six limits).
    The block backend of a virtio-blk disk hangs off the proxy's inner virtio device."""
    device = "/machine/peripheral/disk0-dev/virtio-backend" if disk_kind == "virtio-blk" else "disk0-dev"
    machine.qmp.command("block_set_io_throttle", {"id": device, "bps": 0, "bps_rd": 0, "bps_wr": mib_per_s * MIB,
                        "iops": 0, "iops_rd": 0, "iops_wr": 0})
