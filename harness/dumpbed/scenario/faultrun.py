"""Faults during the dump, on the running machine (harness/dumpbed/scenario/faults.py says what each fault is).

At the crash, with the VM stopped, the fault's blkdebug rules are put under the dump disk
(`arm`): a blkdebug node over the disk's write-log node, and the disk's raw node reopened onto
it, so that blkdebug counts the dump's writes from there on. A live fault's rule fails its write
once and the disk stops the VM on a write error (werror=stop), so QEMU stops exactly at that
write, before it reaches the disk; `wait_for_trigger` sees QEMU's BLOCK_IO_ERROR event and `act`
does the fault to the stopped machine. Nothing is polled: the point is the write itself.

What happened is kept in fault.json; after the run, `landed` tells from the device's write log
which write the fault stopped and what had reached the disk by then.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dumpbed.deadline import Deadline
from dumpbed.errors import DumpbedError
from dumpbed.images.topology import log_node
from dumpbed.machine import resultchan
from dumpbed.machine.qemu import Machine
from dumpbed.scenario import disks as disks_mod
from dumpbed.scenario.faults import FAULT_FILE, Fault, blkdebug_rules, hold_rules
from dumpbed.units import MiB

POLL = 0.01


@dataclass
class FaultLog:
    """What happened to the fault: saved as fault.json beside the other artifacts."""
    fault: str
    fired: bool = False
    armed: str = ""  # the rule put under the disk at the crash
    seconds_after_crash: Optional[float] = None
    action: str = ""
    note: str = ""
    stopped_write: str = ""  # the write the trigger stopped, from the device's logs (after the run)
    writes_landed: Optional[int] = None  # dump writes on the disk when the fault fired
    events: list[str] = field(default_factory=list)

    def save(self, out: Path) -> None:
        (out / FAULT_FILE).write_text(json.dumps(self.__dict__, indent=1) + "\n")


def fault_node(node: str) -> str:
    return f"{node}-fault"


def arm(fault: Fault, machine: Machine, node: str, sector: Optional[int] = None) -> str:
    """Put the fault's blkdebug rules between the disk's raw node and its write-log node (the VM
    is stopped: no request is in flight). Returns a description of the rule."""
    rules = blkdebug_rules(fault, sector)
    machine.qmp.command("blockdev-add", {"driver": "blkdebug", "node-name": fault_node(node),
                                         "image": log_node(node), **rules})
    machine.qmp.command("blockdev-reopen", {"options": [{"driver": "raw", "node-name": node,
                                                         "file": fault_node(node)}]})
    if fault.kind.fails_device:
        return f"write {fault.value} after the crash and every later one fail with EIO"
    if sector is not None:
        return f"the first write reaching disk sector {sector} ({fault.when} of the estimate) stops the VM"
    return f"write {fault.after_writes} after the crash stops the VM"


def wait_for_trigger(fault: Fault, machine: Machine, node: str, result_log: Path, timeout: float) -> FaultLog:
    """Until QEMU stops on the trigger's write (BLOCK_IO_ERROR on the dump disk), the guest says
    DONE, or QEMU ends; the log says which."""
    log = FaultLog(str(fault))
    deadline = Deadline(timeout, f"the fault {fault}'s trigger (QEMU stopping on its write)")
    t0 = time.monotonic()
    while True:
        stops = [e for e in machine.qmp.events("BLOCK_IO_ERROR")
                 if e.get("data", {}).get("node-name") == node and e["data"].get("action") == "stop"]
        if stops:
            log.fired = True
            log.seconds_after_crash = round(time.monotonic() - t0, 3)
            _until_stopped(machine, deadline)
            log.events.append(f"QEMU stopped on a write to {node}: {stops[0]['data'].get('reason')}")
            return log
        if resultchan.said(result_log, "DONE") or not machine.is_running():
            log.note = f"the dump ended before the fault's point ({fault.when}): the fault never fired"
            return log
        if deadline.expired:
            raise deadline.timeout()
        time.sleep(POLL)


def _until_stopped(machine: Machine, deadline: Deadline) -> None:
    """Until QEMU's run state is io-error: BLOCK_IO_ERROR comes before the VM stops, and the
    stop drains the writes still in flight (a guest with several in flight: docs/dump-format.md,
    "Write order"), each to the image and then to the write log. A fault acting before that, a
    kill above all, would leave a write in the image that the log never got. QMP commands are
    not run inside the drain, so the answer comes once it is over."""
    while machine.run_state() != "io-error":
        if deadline.expired:
            raise deadline.timeout()
        time.sleep(POLL / 10)


def act(fault: Fault, machine: Machine, disk_device: str, log: FaultLog) -> None:
    """Do the live fault to the machine, stopped on the trigger's write (its kind's act)."""
    if fault.kind.act is None:
        raise DumpbedError(f"fault {fault.name} is not a live fault")
    log.action = fault.kind.act(fault, machine, disk_device)


# hold-runtime: the workload's region (docs/guest-interface.md, `workload`): the data
# partition's first MiB, in requests of 8 KiB.
WORKLOAD_REGION_BYTES = 1 << 20
WORKLOAD_REQUEST_BYTES = 8192


def hold_runtime(machine: Machine, node: str, region_offset: int, timeout: float, log: FaultLog) -> None:
    """Make the next runtime requests fail so that the disk (rerror/werror=stop) parks them and
    QEMU stops the VM, with the workload's I/O held in the device: returns once stopped."""
    rules = hold_rules(region_offset // 512, WORKLOAD_REGION_BYTES // 512, WORKLOAD_REQUEST_BYTES // 512)
    machine.qmp.command("blockdev-add", {"driver": "blkdebug", "node-name": fault_node(node),
                                         "image": log_node(node), **rules})
    machine.qmp.command("blockdev-reopen", {"options": [{"driver": "raw", "node-name": node,
                                                         "file": fault_node(node)}]})
    event = machine.qmp.wait_event("BLOCK_IO_ERROR", timeout)
    _until_stopped(machine, Deadline(10, "QEMU to stop on the held runtime request"))
    log.fired = True
    log.armed = "every runtime read and write of the workload's region fails, so the device parks it"
    log.events.append(f"QEMU stopped on a runtime {event['data'].get('operation')}: it is held in the device")


def ride_out_until_quiesced(machine: Machine, node: str, result_log: Path, timeout: float, log: FaultLog) -> None:
    """After the crash: each `cont` makes the device retry what it holds, which fails again and
    stops the VM again; keep continuing until the guest says QUIESCED (its DUMPSTART ended the
    runtime commands, or says it did), then release: the rules go and the VM goes on. A driver
    that left them in the device sees them finish now, mid-dump."""
    deadline = Deadline(timeout, "the guest's QUIESCED after the crash (runtime requests held)")
    stops = 0
    while not resultchan.said(result_log, "QUIESCED"):
        if not machine.is_running():
            raise DumpbedError("QEMU ended while the runtime requests were held")
        if machine.run_state() == "io-error":
            stops += 1
            machine.cont()
        if deadline.expired:
            raise deadline.timeout()
        time.sleep(POLL / 10)
    machine.qmp.command("blockdev-reopen", {"options": [{"driver": "raw", "node-name": node,
                                                         "file": log_node(node)}]})
    released = machine.run_state() == "io-error"
    if released:
        machine.cont()
    log.action = (f"the device retried the held requests {stops} times before the guest's QUIESCED (each failed "
                  f"and stopped the VM again); then the rule went" +
                  ("; the VM was stopped on a held request again: continued, the request let through"
                   if released else ""))


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


def throttle(machine: Machine, disk_kind: str, node: str, mib_per_s: int) -> None:
    """`slow`: every write to the dump disk (on block node `node`) limited to mib_per_s (QMP
    wants all six limits); the disk kind names the device that holds the block backend."""
    device = disks_mod.get(disk_kind).throttled_device(node)
    machine.qmp.command("block_set_io_throttle", {"id": device, "bps": 0, "bps_rd": 0, "bps_wr": mib_per_s * MiB,
                        "iops": 0, "iops_rd": 0, "iops_wr": 0})
