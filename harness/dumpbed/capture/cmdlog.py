"""The device's own command log: what each disk device was asked to do, and when it finished.

Read from QEMU's trace (`qemu-trace.log`, log backend, `-msg timestamp=on`: every line carries
the host time), so it is evidence from outside the guest. Per command: when the device took it
(issued), when the device finished it (completed) or dropped it (cancelled), what it was (a write,
a flush, a read, something else) and where. Beside the commands: resets and task management
(the evidence that runtime I/O was aborted), and the guest's result-channel lines with the time
their first byte reached port 0xE9 (the `memory_region_ops_write` event, switched on at the crash
so the boot does not flood the log), which places the guest's QUIESCED and DONE among the
commands.

The trace events, by device family (the events each disk kind needs: `trace_events()`):

    virtio-blk   virtio_blk_handle_write / _handle_read  vdev V req R sector S nsectors N   taken
                 virtio_blk_req_complete vdev V req R status X                               finished
                 virtio_queue_notify vdev V n Q vq P                                         a doorbell
                 virtio_set_status vdev V val X                                              0: reset
    SCSI         scsi_req_parsed target T lun L tag G command C dir D length N               taken
                 scsi_req_parsed_lba target T lun L tag G command C lba X                    its LBA
                 scsi_req_build_sense target T lun L tag G key K asc A ascq Q                it failed
                 scsi_req_dequeue target T lun L tag G                                       finished
                 scsi_req_cancel target T lun L tag G                                        dropped
                 virtio_scsi_tmf_req lun=L tag=G subtype=S                                   task management
                 lsi_reset / lsi_do_msgout_abort / _busdevicereset / _clearqueue             the LSI's
    NVMe         pci_nvme_create_sq create submission queue, addr=A, sqid=S, cqid=C, ...     S completes on C
                 pci_nvme_io_cmd cid I nsid N sqid S opc O opname 'X'                        taken
                 pci_nvme_write / _read cid I ... nsid N nlb B count BYTES lba X              its place
                 pci_nvme_enqueue_req_completion cid I cqid C dw0 . dw1 . status X           finished
                 pci_nvme_mmio_stopped / pci_nvme_pci_reset                                  a controller reset
    any          guest_cpu_reset                                                             a reboot

NVMe disks are named by namespace id ("nvme:N"; the harness gives each disk its own, so the id
tells controllers apart), commands by (completion queue, command id): the trace names no
controller, so two controllers busy at once could be confused (the guest uses one at a time).

virtio-blk has no event for a flush being taken: a request that completes without having been
announced as a read or a write is a flush (the dump path sends no other kind), taken at the
doorbell that preceded its completion on that device (virtio-blk pops every request of a kick in
one pass, so that is the pass it was in, or later: the estimate errs early, never late).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from dumpbed.scenario import disks

TRACE_FILE = "qemu-trace.log"
RESULT_PORT = 0xE9
RESULT_DEVICE = "isa-debugcon"  # QEMU's name of the result channel's port device
SCSI_WRITE = {0x0A: "WRITE(6)", 0x2A: "WRITE(10)", 0xAA: "WRITE(12)", 0x8A: "WRITE(16)",
              0x2E: "WRITE AND VERIFY(10)", 0x8E: "WRITE AND VERIFY(16)",
              0x41: "WRITE SAME(10)", 0x93: "WRITE SAME(16)"}
SCSI_READ = {0x08: "READ(6)", 0x28: "READ(10)", 0xA8: "READ(12)", 0x88: "READ(16)"}
CHECK_CONDITION = 0x02
SCSI_FLUSH = {0x35: "SYNCHRONIZE CACHE(10)", 0x91: "SYNCHRONIZE CACHE(16)"}
TMF_NAMES = {0: "ABORT TASK", 1: "ABORT TASK SET", 2: "CLEAR ACA", 3: "CLEAR TASK SET", 4: "I_T NEXUS RESET",
             5: "LOGICAL UNIT RESET", 6: "QUERY TASK", 7: "QUERY TASK SET"}
TMF_ABORTS = {0, 1, 3, 4, 5}  # the ones that end commands

VIRTIO_BLK_EVENTS = ["virtio_blk_handle_write", "virtio_blk_handle_read", "virtio_blk_req_complete",
                     "virtio_queue_notify", "virtio_set_status"]
SCSI_EVENTS = ["scsi_req_parsed", "scsi_req_parsed_lba", "scsi_req_build_sense", "scsi_req_dequeue", "scsi_req_cancel",
               "virtio_scsi_tmf_req", "virtio_set_status", "lsi_reset", "lsi_do_msgout_abort",
               "lsi_do_msgout_busdevicereset", "lsi_do_msgout_clearqueue"]
NVME_EVENTS = ["pci_nvme_create_sq", "pci_nvme_io_cmd", "pci_nvme_write", "pci_nvme_read",
               "pci_nvme_enqueue_req_completion", "pci_nvme_mmio_stopped", "pci_nvme_pci_reset"]
NVME_OPCODES = {0x00: ("flush", "NVMe FLUSH"), 0x01: ("write", "NVMe WRITE"), 0x02: ("read", "NVMe READ"),
                0x08: ("write", "NVMe WRITE ZEROES")}
# A CPU reset (system_reset, a reboot): what the devices do after it is the next boot's.
RESET_EVENT = "guest_cpu_reset"
# Switched on over QMP at the crash (trace-event-set-state): every MMIO/PIO write the guest
# makes, of which the harness keeps the bytes written to the result channel.
RESULT_EVENT = "memory_region_ops_write"


EVENTS_BY_BUS = {disks.VIRTIO_BLK_BUS: VIRTIO_BLK_EVENTS, disks.SCSI_BUS: SCSI_EVENTS,
                 disks.NVME_BUS: NVME_EVENTS, disks.NET_BUS: []}  # the dump server logs its own
# How the command log names a disk of each bus that is told apart by the device, not by an
# address the harness gave it: PREFIX + QEMU's device pointer (virtio-blk) or namespace id (NVMe)
DISK_PREFIX_BY_BUS = {disks.VIRTIO_BLK_BUS: "vblk:", disks.NVME_BUS: "nvme:", disks.NET_BUS: "net:"}
# What a reset or abort names as its device ("virtio:VDEV", "scsi:*", "nvme:*")
NVME_ANY = "nvme:*"


def trace_events(*disk_kinds: str) -> list[str]:
    """The trace events the command log needs for these disk kinds, from QEMU's start."""
    events: list[str] = []
    for kind in disk_kinds:
        events += EVENTS_BY_BUS[disks.get(kind).bus]
    return list(dict.fromkeys(events + [RESET_EVENT]))


@dataclass
class Command:
    seq: int  # order in which the device took it
    disk: str  # "vblk:VDEV", "scsi:T:L" or "nvme:NSID"
    kind: str  # write, flush, read, other
    opcode: str
    offset: Optional[int]  # byte offset on the disk (None: no LBA)
    length: int
    issued: float
    completed: Optional[float] = None
    cancelled: Optional[float] = None
    status: Optional[int] = None  # virtio-blk: its status byte; SCSI: 0x02KKAAQQ, CHECK CONDITION and its sense
    retries: int = 0  # times the device took it again after parking it (a stop on error)

    @property
    def end(self) -> Optional[float]:
        """When the device was done with it, finished or dropped."""
        return self.completed if self.completed is not None else self.cancelled

    def describe(self) -> str:
        where = f" of {self.length} bytes at disk offset 0x{self.offset:x}" if self.offset is not None else ""
        return f"{self.opcode}{where}"


@dataclass
class DeviceEvent:
    time: float
    what: str  # words for people
    disk: str  # the disk or device it concerns: "vblk:VDEV", "virtio:VDEV", "scsi:T:L", "scsi:*"
    ends_commands: bool  # a reset or an abort: commands it covers are dropped


@dataclass
class ResultLine:
    time: float  # when its first byte reached the result channel
    text: str

    @property
    def word(self) -> str:
        parts = self.text.split()
        return parts[1] if len(parts) > 1 and parts[0] == "DUMPBED" else ""

    @property
    def fields(self) -> dict[str, str]:
        return dict(p.split("=", 1) for p in self.text.split()[2:] if "=" in p)


@dataclass
class CommandLog:
    commands: list[Command] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    result_lines: list[ResultLine] = field(default_factory=list)
    result_traced: bool = False  # the result channel's bytes were traced (from the crash on)
    cpu_resets: list[float] = field(default_factory=list)

    def of_disk(self, disk: str) -> list[Command]:
        return [c for c in self.commands if c.disk == disk]

    def result(self, word: str) -> list[ResultLine]:
        return [r for r in self.result_lines if r.word == word]

    def rebooted_after(self, t: float) -> float:
        """When the CPU was reset after `t` (system_reset, a reboot: what the devices do from then
        on is the next boot's, not the dump's); infinity if it was not."""
        return next((r for r in self.cpu_resets if r > t), float("inf"))


def ends_commands_of(event: DeviceEvent, disk: str) -> bool:
    """Whether a reset or an abort ends the commands of `disk` (it names the device the disk
    hangs off: its virtio-blk function, the SCSI HBA, any NVMe controller)."""
    if not event.ends_commands:
        return False
    if disk.startswith(DISK_PREFIX_BY_BUS[disks.VIRTIO_BLK_BUS]):
        return event.disk == "virtio:" + disk.split(":", 1)[1]
    if disk.startswith(DISK_PREFIX_BY_BUS[disks.NVME_BUS]):
        return event.disk == NVME_ANY  # the trace names no controller
    if disk.startswith(DISK_PREFIX_BY_BUS[disks.NET_BUS]):
        return False  # the dump server is no device of the machine: nothing in QEMU resets it
    return event.disk == "scsi:*" or event.disk.startswith("virtio:")  # the HBA's reset


_LINE = re.compile(r"^(?:\d+@(?P<time>\d+\.\d+):)?(?P<event>\w+) ?(?P<args>.*)$")
_EQ = re.compile(r"(\w+)=(\S+)")
_PAIR = re.compile(r"(\w+) ('[^']*'|\S+)")


def _args(text: str) -> dict[str, str]:
    """`vdev 0x1 req 0x2 sector 8` or `virtio_scsi_tmf_req lun=0 tag=0x1` -> {name: value}."""
    pairs = _EQ.findall(text) if "=" in text and "'" not in text else _PAIR.findall(text)
    return {k: v.strip("'") for k, v in pairs}


def _int(value: str) -> int:
    return int(value, 0)


class _Builder:
    def __init__(self, block_size: int):
        self.block_size = block_size
        self.log = CommandLog()
        self.open: dict[tuple[str, str], Command] = {}  # (disk, request key) -> command
        self.notified: dict[str, float] = {}  # vdev -> last doorbell
        self.partial_line: list[tuple[float, str]] = []  # result channel bytes of the line so far
        self.nvme_cq_of_sq: dict[int, int] = {}  # NVMe: submission queue -> its completion queue
        self.nvme_open: dict[tuple[int, int], Command] = {}  # NVMe: (completion queue, cid) -> command

    def add(self, disk: str, key: str, kind: str, opcode: str, offset: Optional[int], length: int, t: float):
        cmd = Command(len(self.log.commands), disk, kind, opcode, offset, length, t)
        self.log.commands.append(cmd)
        self.open[(disk, key)] = cmd
        return cmd

    # Events whose lines matter only when they hold this text: most port writes are console
    # bytes (COM1), tens of thousands a run, and only the result channel's are read.
    ONLY_WITH = {"memory_region_ops_write": f"'{RESULT_DEVICE}'"}

    def line(self, text: str) -> None:
        m = _LINE.match(text.strip())
        if not m or m["time"] is None:
            return
        event = m["event"]
        if event in self.ONLY_WITH and self.ONLY_WITH[event] not in text:
            return
        handler = getattr(self, "on_" + event, None)
        if handler is not None:
            t, a = float(m["time"]), _args(m["args"])
            try:
                handler(t, a)
            except (KeyError, ValueError):
                pass  # a line QEMU cut short when it was killed

    # virtio-blk
    def on_virtio_blk_handle_write(self, t, a):
        self._vblk_rw(t, a, "write", "VIRTIO_BLK_T_OUT")

    def on_virtio_blk_handle_read(self, t, a):
        self._vblk_rw(t, a, "read", "VIRTIO_BLK_T_IN")

    def _vblk_rw(self, t, a, kind, opcode):
        disk, offset, length = f"vblk:{a['vdev']}", _int(a["sector"]) * 512, _int(a["nsectors"]) * 512
        held = self.open.get((disk, a["req"]))
        if held is not None and held.cancelled is None and (held.kind, held.offset, held.length) == (kind, offset, length):
            held.retries += 1  # the device retried a request it had parked (rerror/werror=stop)
            return
        self.add(disk, a["req"], kind, opcode, offset, length, t)

    def on_virtio_queue_notify(self, t, a):
        self.notified[a["vdev"]] = t

    def on_virtio_blk_req_complete(self, t, a):
        disk = f"vblk:{a['vdev']}"
        cmd = self.open.pop((disk, a["req"]), None)
        if cmd is None:  # never announced as a read or write: a flush (see the module's doc)
            cmd = Command(len(self.log.commands), disk, "flush", "VIRTIO_BLK_T_FLUSH", None, 0,
                          self.notified.get(a["vdev"], t))
            self.log.commands.append(cmd)
        cmd.completed, cmd.status = t, _int(a["status"])

    def on_virtio_set_status(self, t, a):
        if _int(a["val"]) == 0:
            self.log.events.append(DeviceEvent(t, f"virtio device reset (vdev {a['vdev']})", f"virtio:{a['vdev']}", True))
            # virtio-blk's reset first drains what its backend is doing (those complete, traced,
            # after this line), then drops the requests it parked on an error (werror=stop)
            # without a trace: until a completion says otherwise, the reset ended them.
            for (disk, _), cmd in self.open.items():
                if disk == f"vblk:{a['vdev']}" and cmd.end is None:
                    cmd.cancelled = t

    # SCSI
    def on_scsi_req_parsed(self, t, a):
        opcode = _int(a["command"])
        kind, name = ("write", SCSI_WRITE[opcode]) if opcode in SCSI_WRITE else \
            ("read", SCSI_READ[opcode]) if opcode in SCSI_READ else \
            ("flush", SCSI_FLUSH[opcode]) if opcode in SCSI_FLUSH else ("other", f"SCSI opcode 0x{opcode:02x}")
        length = _int(a["length"]) if kind in ("write", "read") else 0
        self.add(f"scsi:{a['target']}:{a['lun']}", a["tag"], kind, name, None, length, t)

    def on_scsi_req_parsed_lba(self, t, a):
        cmd = self.open.get((f"scsi:{a['target']}:{a['lun']}", a["tag"]))
        if cmd is not None and cmd.kind in ("write", "read"):
            cmd.offset = _int(a["lba"]) * self.block_size

    def on_scsi_req_build_sense(self, t, a):
        # A command ending in CHECK CONDITION gets its sense data built first (a failed read or
        # write: scsi-disk's rw error path, or the bus refusing it); its status is the sense.
        cmd = self.open.get((f"scsi:{a['target']}:{a['lun']}", a["tag"]))
        if cmd is not None:
            cmd.status = CHECK_CONDITION << 24 | _int(a["key"]) << 16 | _int(a["asc"]) << 8 | _int(a["ascq"])

    def on_scsi_req_cancel(self, t, a):
        cmd = self.open.get((f"scsi:{a['target']}:{a['lun']}", a["tag"]))
        if cmd is not None and cmd.cancelled is None:
            cmd.cancelled = t

    def on_scsi_req_dequeue(self, t, a):
        cmd = self.open.pop((f"scsi:{a['target']}:{a['lun']}", a["tag"]), None)
        if cmd is not None and cmd.cancelled is None:
            cmd.completed = t

    def on_virtio_scsi_tmf_req(self, t, a):
        subtype = _int(a["subtype"])
        self.log.events.append(DeviceEvent(t, f"virtio-scsi {TMF_NAMES.get(subtype, subtype)} (lun {a['lun']})",
                                           "scsi:*", subtype in TMF_ABORTS))

    def on_lsi_reset(self, t, a):
        self.log.events.append(DeviceEvent(t, "LSI chip reset", "scsi:*", True))

    def on_lsi_do_msgout_abort(self, t, a):
        self.log.events.append(DeviceEvent(t, "LSI ABORT TAG message", "scsi:*", True))

    def on_lsi_do_msgout_busdevicereset(self, t, a):
        self.log.events.append(DeviceEvent(t, "LSI BUS DEVICE RESET message", "scsi:*", True))

    def on_lsi_do_msgout_clearqueue(self, t, a):
        self.log.events.append(DeviceEvent(t, "LSI CLEAR QUEUE message", "scsi:*", True))

    # NVMe
    def on_pci_nvme_create_sq(self, t, a):
        self.nvme_cq_of_sq[_int(a["sqid"].rstrip(","))] = _int(a["cqid"].rstrip(","))

    def on_pci_nvme_io_cmd(self, t, a):
        opcode, sqid, cid = _int(a["opc"]), _int(a["sqid"]), _int(a["cid"])
        kind, name = NVME_OPCODES.get(opcode, ("other", f"NVMe opcode 0x{opcode:02x}"))
        key = (self.nvme_cq_of_sq.get(sqid, sqid), cid)
        cmd = Command(len(self.log.commands), f"nvme:{_int(a['nsid'])}", kind, name, None, 0, t)
        self.log.commands.append(cmd)
        self.nvme_open[key] = cmd

    def _nvme_rw(self, a):
        cid, disk = _int(a["cid"]), f"nvme:{_int(a['nsid'])}"
        cmd = next((c for (_, i), c in reversed(self.nvme_open.items()) if i == cid and c.disk == disk), None)
        if cmd is not None:
            cmd.offset, cmd.length = _int(a["lba"]) * self.block_size, _int(a["count"])

    def on_pci_nvme_write(self, t, a):
        self._nvme_rw(a)

    def on_pci_nvme_read(self, t, a):
        self._nvme_rw(a)

    def on_pci_nvme_enqueue_req_completion(self, t, a):
        cmd = self.nvme_open.pop((_int(a["cqid"]), _int(a["cid"])), None)
        if cmd is not None:
            cmd.completed, cmd.status = t, _int(a["status"])

    def on_pci_nvme_mmio_stopped(self, t, a):
        # CC.EN 1 -> 0: the controller aborts every command it holds, deletes its queues
        self.log.events.append(DeviceEvent(t, "NVMe controller reset (CC.EN cleared)", NVME_ANY, True))
        self.nvme_cq_of_sq.clear()

    def on_pci_nvme_pci_reset(self, t, a):
        self.log.events.append(DeviceEvent(t, "NVMe PCI function level reset", NVME_ANY, True))
        self.nvme_cq_of_sq.clear()

    def on_guest_cpu_reset(self, t, a):
        self.log.cpu_resets.append(t)

    # the result channel
    def on_memory_region_ops_write(self, t, a):
        if _int(a["addr"]) != RESULT_PORT or a.get("name") != RESULT_DEVICE:
            return
        self.log.result_traced = True
        ch = chr(_int(a["value"]) & 0xFF)
        if ch == "\n":
            if self.partial_line:
                self.log.result_lines.append(ResultLine(self.partial_line[0][0], "".join(c for _, c in self.partial_line)))
            self.partial_line = []
        else:
            self.partial_line.append((t, ch))


def parse(lines: Iterable[str], block_size: int) -> CommandLog:
    builder = _Builder(block_size)
    for line in lines:
        builder.line(line)
    return builder.log


def read(run_dir: Path, block_size: int) -> CommandLog:
    """QEMU's trace of the run, and a network dump's server commands (capture/netlog.py)."""
    from dumpbed.capture import netlog

    path = Path(run_dir) / TRACE_FILE
    log = CommandLog()
    if path.exists():
        with open(path, encoding="ascii", errors="replace") as f:
            log = parse(f, block_size)
    log.commands += netlog.commands(run_dir, first_seq=len(log.commands))
    return log
