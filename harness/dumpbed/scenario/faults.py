"""Faults during the dump (`dumpbed run --fault SPEC`, listed by `dumpbed list faults`).

A fault is data: a name, an optional value, a trigger point, what it does, and what the
scenario must then expect (docs/faults.md). SPEC is `NAME[=VALUE][@WHEN]`, WHEN being `wN` (the
N-th write the dump disk's backend receives after the crash) or `P%` (the first write that
reaches P% of the guest's estimate into the dump's body). The point is exact: QEMU stops the VM
on that very write, before it reaches the disk (blkdebug_rules), and the harness acts then.

Every blkdebug rule is armed at the crash, so only the dump's writes count (never the runtime
workload's): `eio-at=N` makes the N-th write after the crash and every later one fail with EIO, as
a dying device would; `enospc=P` sizes the dump partition at P% of what the dump needs; `stale`
first leaves a complete dump of an earlier run on the disk. Live faults act on the stopped
machine over QMP, or on the QEMU process: pause, reset, kill, unplug; `slow` throttles from the
crash on.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from dumpbed.errors import DumpbedError
from dumpbed.guest_interface import Errno
from dumpbed.reader.dumpfmt import DIR_OFFSET, WRITER_DIR_BYTES, crc_table_bytes_for
from dumpbed.scenario import disks as disks_mod

if TYPE_CHECKING:
    from dumpbed.machine.qemu import Machine

# eio-at=N needs one blkdebug set-state rule per write before the failing one: blkdebug's only
# memory is one integer state, moved by a rule matching it exactly, so counting N writes takes N
# states (and N rules) whatever the rules are. QEMU 7.2 takes them in quadratic time (measured on
# blockdev-add: 10000 rules 4.4 s, 20000 14 s, 100000 past the 30 s QMP deadline), so N stops
# where arming stays well inside that deadline on a loaded host (a 256 MiB virtio-blk dump takes
# about 500 writes, so 10000 reaches past the end of a 5 GiB one).
MAX_EIO_AT = 10_000


# The live faults' actions on the machine, stopped on the trigger's write. What happens to that
# write: pause retries it on `cont` (the rule failed it once); reset and unplug drop it with the
# device; kill drops it with QEMU. Each returns what it did, for fault.json.
def _pause(fault: "Fault", machine: "Machine", disk_device: str) -> str:
    time.sleep(fault.value)
    machine.cont()
    return f"the VM stayed stopped {fault.value} s on the write, then continued (the write retried)"


def _reset(fault: "Fault", machine: "Machine", disk_device: str) -> str:
    machine.qmp.command("system_reset")
    machine.cont()
    return "system_reset with the VM stopped on the write, then cont"


def _kill(fault: "Fault", machine: "Machine", disk_device: str) -> str:
    machine.kill()
    return f"SIGKILL to QEMU, stopped on the write (exit status {machine.exit_status})"


def _unplug(fault: "Fault", machine: "Machine", disk_device: str) -> str:
    machine.qmp.command("device_del", {"id": disk_device})
    machine.cont()
    return f"device_del of the dump disk ({disk_device}) with the VM stopped on the write, then cont"


@dataclass(frozen=True)
class FaultKind:
    """One fault kind: what it is, what a run with it expects, and what the run does for it."""
    name: str
    description: str
    value_name: Optional[str]  # what =VALUE means; None: the fault takes no value
    default_value: Optional[int]
    default_when: Optional[str]  # None: a setup fault, no trigger
    outcome: str  # the dump the scenario expects: complete / partial
    guest_result: Optional[str]  # the guest's DONE status: complete / failed, or None (no DONE)
    value_range: tuple[int, int] = (1, 1)  # the values =VALUE may take
    range_why: str = ""  # why the values stop there, when it is not obvious
    # What the run does for it:
    act: Optional[Callable[["Fault", "Machine", str], str]] = None  # a live fault, on its write
    stops_vm: bool = False  # the disk stops the VM on a failed request (werror/rerror=stop)
    cuts: bool = False  # it cuts the dump short where it hits: the outcome follows where that was
    fails_device: bool = False  # the guest sees its writes fail; with a secondary the dump restarts there
    reboots: bool = False  # the guest boots again: a second READY shows it took
    shortens_io_waits: bool = False  # the guest's every request times out: shorter waits
    previous_dump: bool = False  # the disk first holds a complete dump of an earlier run
    sizes_partition: bool = False  # =P: the dump partition holds P% of what the dump needs
    throttles: bool = False  # =R: the dump disk's writes limited to R MiB/s from the crash on
    holds_runtime: bool = False  # runtime requests parked in the device across the crash
    alone: bool = False  # takes no other fault
    own_trigger: bool = False  # a live fault that brings its trigger itself: no other live fault
    # A fault of a network dump's link or dump server (docs/netdump-protocol.md, section 8): the
    # link does it (harness/dumpbed/net/link.py), from the crash on; only a network target has it.
    link: Optional[str] = None  # the link's fault: drop, duplicate, reorder, corrupt, delay, cut
    kills_server: bool = False  # the dump server is killed at the trigger

    @property
    def device_errno(self) -> int:
        """What the guest's failed write reports (fails_device): a disk's EIO, or ETIMEDOUT once
        a network dump's link or server stopped answering."""
        return Errno.ETIMEDOUT if self.network else Errno.EIO

    @property
    def network(self) -> bool:
        return self.link is not None or self.kills_server

    @property
    def setup_reason(self) -> Optional[str]:
        """Why the fault cannot be armed once QEMU runs (it shapes the disks, the devices or the
        guest's command line before the boot), or None: it is armed at the crash (blkdebug
        rules, a throttle, the link's faults), so a session may arm it at the console."""
        reasons = [(self.previous_dump, "an earlier run's dump is written to the disk before the guest boots"),
                   (self.holds_runtime, "it holds --workload's requests, on a device started with werror/rerror=stop"),
                   (self.sizes_partition, "it sizes the dump partition when the disk image is made"),
                   (self.stops_vm, "its trigger needs the dump disk's device started with werror/rerror=stop"),
                   (self.shortens_io_waits, "it shortens the guest's I/O waits, set on its boot command line")]
        return next((why for applies, why in reasons if applies), None)

    @property
    def live(self) -> bool:
        return self.default_when is not None


# A message gets about 15 tries within the guest's 10 s iotimeout; a try fails when its frame or
# its ACK is lost. Past a fifth of the frames lost each way, one of the ~8000 messages of a 64 MiB
# dump running out of tries becomes likely: the dump would fail by chance, not by a bug.
_LOSS_WHY = "past a fifth of the frames lost each way, a message of a large dump may run out of tries by chance"

KINDS = {k.name: k for k in [
    FaultKind("eio-at", "the N-th write to the primary dump disk, and every later one, fails with EIO "
              "(blkdebug); with --secondary the dump restarts there", "N", None, None, "partial", "failed",
              value_range=(1, MAX_EIO_AT), cuts=True, fails_device=True,
              range_why="QEMU's blkdebug counts writes with one rule each, and arming more takes longer than "
                        "the QMP deadline"),
    FaultKind("enospc", "the dump partition holds only P% of what the dump needs: a short dump",
              "P", 50, None, "partial", "failed", value_range=(1, 99), sizes_partition=True),
    FaultKind("pause", "the VM is stopped for S seconds mid-dump, then continued", "S", 2, "50%",
              "complete", "complete", value_range=(1, 60), act=_pause, stops_vm=True),
    FaultKind("reset", "system_reset mid-dump: the machine reboots, the dump is cut short", None, None, "50%",
              "partial", None, act=_reset, stops_vm=True, cuts=True, reboots=True),
    FaultKind("kill", "QEMU is killed with SIGKILL mid-dump", None, None, "50%", "partial", None,
              act=_kill, stops_vm=True, cuts=True),
    FaultKind("unplug", "the dump disk is removed mid-dump (device_del of its scsi-hd): the guest's "
              "bounded waits expire", None, None, "50%", "partial", "failed", act=_unplug, stops_vm=True,
              cuts=True, shortens_io_waits=True),
    FaultKind("slow", "the dump disk is throttled to R MiB/s of writes (block_set_io_throttle) from "
              "the crash on", "R", 16, None, "complete", "complete", value_range=(1, 10_000), throttles=True),
    FaultKind("stale", "the dump partition first receives a complete dump of an earlier run; the new "
              "dump is then cut short (QEMU killed)", None, None, "w8", "partial", None, act=_kill,
              stops_vm=True, cuts=True, previous_dump=True, own_trigger=True),
    FaultKind("hold-runtime", "runtime reads and writes of the workload are parked in the device across the "
              "crash (a failing backend with rerror/werror=stop) and released once the guest says DUMPSTART "
              "quiesced the device: a driver that did not abort or reset them sees them finish mid-dump",
              None, None, None, "complete", "complete", stops_vm=True, holds_runtime=True, alone=True),
    FaultKind("net-drop", "each frame on the network dump's link, both ways, is lost with probability P% from the "
              "crash on: the dump still completes, by retransmission", "P", 5, None, "complete", "complete",
              value_range=(1, 20), link="drop", range_why=_LOSS_WHY),
    FaultKind("net-dup", "each frame on the link, both ways, is delivered twice with probability P%: every message "
              "is idempotent, the dump completes with nothing written twice", "P", 20, None, "complete", "complete",
              value_range=(1, 100), link="duplicate"),
    FaultKind("net-reorder", "each frame on the link, both ways, is held back and delivered after the next one with "
              "probability P%: the dump completes", "P", 20, None, "complete", "complete", value_range=(1, 100),
              link="reorder"),
    FaultKind("net-corrupt", "one bit of a frame's UDP payload flips with probability P%, both ways: the receiver "
              "drops it on its checksum (never written), the dump completes by retransmission", "P", 5, None,
              "complete", "complete", value_range=(1, 20), link="corrupt", range_why=_LOSS_WHY),
    FaultKind("net-delay", "every frame on the link is delayed by MS milliseconds: the window keeps the dump "
              "going", "MS", 20, None, "complete", "complete", value_range=(1, 1000), link="delay"),
    FaultKind("net-cut", "from the point on the link passes nothing either way: the guest's DUMPREAD times out, "
              "the dump fails with ETIMEDOUT; with --secondary it restarts on that disk", None, None, "50%",
              "partial", "failed", link="cut", cuts=True, fails_device=True, shortens_io_waits=True),
    FaultKind("server-kill", "the dump server is killed (SIGUSR1, at its default action) at the point: the guest's DUMPREAD times out, "
              "ETIMEDOUT; with --secondary the dump restarts on that disk", None, None, "50%", "partial", "failed",
              kills_server=True, cuts=True, fails_device=True, shortens_io_waits=True),
]}
FAULTS = {k.name: k.description for k in KINDS.values()}
_WHEN = re.compile(r"^(?:w(?P<writes>\d+)|(?P<percent>\d+(?:\.\d+)?)%)$")


@dataclass(frozen=True)
class Fault:
    name: str
    value: Optional[int] = None
    when: Optional[str] = None  # "wN" or "P%", for live faults

    @property
    def kind(self) -> FaultKind:
        return KINDS[self.name]

    @property
    def after_writes(self) -> Optional[int]:
        m = _WHEN.match(self.when or "")
        return int(m["writes"]) if m and m["writes"] else None

    @property
    def at_fraction(self) -> Optional[float]:
        m = _WHEN.match(self.when or "")
        return float(m["percent"]) / 100 if m and m["percent"] else None

    def __str__(self) -> str:
        text = self.name + (f"={self.value}" if self.value is not None else "")
        return text + (f"@{self.when}" if self.when else "")


def parse(spec: str) -> Fault:
    head, _, when = spec.partition("@")
    name, sep, value = head.partition("=")
    kind = KINDS.get(name)
    if kind is None:
        raise DumpbedError(f"unknown fault {name!r} (available: {', '.join(KINDS)})")
    if kind.value_name is None and sep:
        raise DumpbedError(f"fault {spec!r}: {name} takes no value")
    if kind.value_name is not None:
        if not sep and kind.default_value is None:
            raise DumpbedError(f"fault {spec!r}: expected {name}={kind.value_name}")
        if sep and not value.isdigit():
            raise DumpbedError(f"fault {spec!r}: expected {name}={kind.value_name} with {kind.value_name} "
                               "a positive integer")
    number = int(value) if sep else kind.default_value
    _check_value(spec, kind, number)
    if when and kind.default_when is None:
        raise DumpbedError(f"fault {spec!r}: {name} is set up before the run and takes no @WHEN")
    when = when or kind.default_when
    if when is not None and kind.network and when.startswith("w"):
        raise DumpbedError(f"fault {spec!r}: a network fault's point is P% of the dump (the link counts the "
                           "dump's bytes, not the disk's writes)")
    if when is not None:
        m = _WHEN.match(when)
        if not m or (m["writes"] and int(m["writes"]) < 1) or (m["percent"] and not 0 < float(m["percent"]) < 100):
            raise DumpbedError(f"fault {spec!r}: @WHEN must be wN (N >= 1 writes) or P% (0 < P < 100)")
    return Fault(name, number, when)


def _check_value(spec: str, kind: FaultKind, number: Optional[int]) -> None:
    if number is None or kind.value_name is None:
        return
    lo, hi = kind.value_range
    if not lo <= number <= hi:
        raise DumpbedError(f"fault {spec!r}: expected {kind.name}={kind.value_name} with {kind.value_name} "
                           f"from {lo} to {hi}" + (f" ({kind.range_why})" if kind.range_why else ""))


def check_combination(faults: list[Fault], disk: str, secondary: Optional[str]) -> None:
    """One fault of each kind, on disks it applies to; refused before anything is created."""
    names = [f.name for f in faults]
    if len(set(names)) != len(names):
        raise DumpbedError("each fault kind may be given once")
    live = [f for f in faults if f.kind.live and not f.kind.own_trigger]
    if len(live) > 1:
        raise DumpbedError(f"at most one live fault per run ({', '.join(str(f) for f in live)})")
    for f in faults:
        why_not = disks_mod.get(disk).fault_applies(f.name, f.kind.stops_vm, f.kind.network)
        if why_not:
            raise DumpbedError(f"fault {f.name} does not apply to a {disk} dump disk: {why_not}")
    for f in faults:
        others = [g for g in faults if g is not f]
        if f.kind.own_trigger and live:
            raise DumpbedError(f"{f.name} cuts the new dump short itself: it takes no other live fault")
        if f.kind.alone and others:
            raise DumpbedError(f"{f.name} takes no other fault (it holds the device's runtime requests itself)")
        if f.kind.fails_device and any(g.kind.stops_vm for g in others):
            raise DumpbedError(f"{f.name} reports its failed writes to the guest, a live fault stops the VM at "
                               "its write: one or the other")


def expected_outcome(faults: list[Fault], secondary: Optional[str]) -> str:
    """The dump the scenario must end with (docs/faults.md): the worst the faults imply."""
    outcome = "complete"
    for f in faults:
        if f.kind.fails_device and secondary is not None:
            continue  # the dump restarts on the secondary and completes there
        if f.kind.outcome == "partial":
            outcome = "partial"
    return outcome


def expected_guest_result(faults: list[Fault], secondary: Optional[str]) -> Optional[str]:
    """The status of the guest's DONE line, or None when QEMU ends before any (kill, reset)."""
    result: Optional[str] = "complete"
    for f in faults:
        if f.kind.fails_device and secondary is not None:
            continue
        if f.kind.guest_result is None:
            return None
        if f.kind.guest_result == "failed":
            result = "failed"
    return result


def expected_where_fired(faults: list[Fault], secondary: Optional[str], fired: bool,
                         last_leader: Optional[str]) -> tuple[str, Optional[str], str]:
    """The outcome and DONE status a run must end with, given where its fault actually hit:
    (outcome, guest_result, why). `last_leader` is the status of the last leader of the dump
    that reached the disk of record (from its write log), None if none did.

    A fault that never fired (the dump ended first) expects what a run without it expects. One
    that cut the dump short expects what the disk then holds by the format's rules: no leader of
    the dump (the cut came before the first leader landed): none; a COMPLETE leader (after the
    commit): complete; else partial."""
    cut = [f for f in faults if f.kind.cuts]
    if not fired or not cut or (secondary is not None and all(f.kind.fails_device for f in cut)):
        kept = [f for f in faults if f not in cut]
        why = "the fault never fired" if cut and not fired else "as the scenario declares"
        return expected_outcome(kept, secondary), expected_guest_result(kept, secondary), why
    outcome = {None: "none", "COMPLETE": "complete"}.get(last_leader, "partial")
    why = (f"{cut[0]} hit before any leader of the dump landed" if last_leader is None
           else f"{cut[0]} hit after the dump's last {last_leader} leader landed")
    return outcome, expected_guest_result(faults, secondary), why


def blkdebug_rules(fault: Fault, sector: Optional[int] = None) -> dict:
    """The rules of the blkdebug node the harness puts under the dump disk at the crash
    (harness/dumpbed/scenario/faultrun.py arms it), so that writes are counted from the crash on.

    blkdebug counts nothing itself, but it has a state machine: every write_aio event (one per
    write the disk's backend receives) moves state k to k+1 until state N, where the error rule
    waits. `eio-at=N`: the N-th write and every later one fail (reported to the guest, as a dying
    device). A live fault's trigger: the N-th write (`@wN`), or the first write that reaches
    `sector` (`@P%`), fails once; the disk is set to stop the VM on a write error (werror=stop),
    so QEMU stops with that write parked in the device, not yet on the disk, and the harness
    acts at exactly that point.
    """
    failing = fault.kind.fails_device  # every write from the N-th on; else a trigger, once
    if not failing and sector is not None:
        return {"inject-error": [{"event": "write_aio", "sector": sector, "errno": Errno.EIO, "once": True}]}
    n = fault.value if failing else fault.after_writes
    error: dict = {"event": "write_aio", "state": n, "errno": Errno.EIO}
    if not failing:
        error["once"] = True
    rules: dict = {"inject-error": [error]}
    if n > 1:  # QEMU refuses an empty set-state list
        rules["set-state"] = [{"event": "write_aio", "state": k, "new_state": k + 1} for k in range(1, n)]
    return rules


def body_offset_for(partition_bytes: int) -> int:
    """Where the dumpbed guest's body starts in a partition of this size (docs/dump-format.md,
    "Layout": the leader page, two directory slots, two CRC table slots)."""
    return DIR_OFFSET + 2 * WRITER_DIR_BYTES + 2 * crc_table_bytes_for(partition_bytes)


def hold_rules(first_sector: int, sectors: int, step: int) -> dict:
    """hold-runtime: every read and write touching [first_sector, +sectors) of the disk fails
    (each request of the workload covers one of the sectors `step` apart), so the disk, set to
    stop on errors, parks it and stops the VM."""
    rules = [{"event": event, "sector": s, "errno": Errno.EIO}
             for s in range(first_sector, first_sector + sectors, step) for event in ("read_aio", "write_aio")]
    return {"inject-error": rules}


def trigger_offset(fault: Fault, body_offset: int, estimate_bytes: int) -> int:
    """`@P%`: the partition offset P% of the guest's estimate into the dump's body (a network
    fault's link watches the DATA reaching it)."""
    return body_offset + int(estimate_bytes * fault.at_fraction)


def trigger_sector(fault: Fault, dump_offset: int, body_offset: int, estimate_bytes: int) -> int:
    """`@P%` on a disk: the sector of trigger_offset (blkdebug's rule names it)."""
    return (dump_offset + trigger_offset(fault, body_offset, estimate_bytes)) // 512


FAULT_FILE = "fault.json"  # what a run's fault did (docs/artifacts.md), written by scenario/faultrun.py


def fault_record(run_dir: Path) -> dict:
    """A run directory's fault.json as written; {} when it has none or it does not read."""
    try:
        record = json.loads((Path(run_dir) / FAULT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
