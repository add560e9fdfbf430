"""Every write command the guest issued to its disks after the crash, as QEMU saw it.

QEMU logs each command its disk devices receive through trace events (log backend, `-D
qemu-trace.log`, with `-msg timestamp=on` so each line carries the host time):

    virtio-blk:  virtio_blk_handle_write vdev P req P sector S nsectors N      (512-byte sectors)
    SCSI:        scsi_req_parsed target T lun L tag X command C dir D length BYTES
                 scsi_req_parsed_lba target T lun L tag X command C lba LBA  (follows the former)
    NVMe:        pci_nvme_write cid I opname 'X' nsid N nlb B count BYTES lba 0xLBA

These are device-level events, one per guest command, before the block layer splits or merges
anything, so the sizes are the guest's own (the `write-sizes` oracle judges them:
harness/dumpbed/oracles/write_sizes.py).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dumpbed.scenario import disks

TRACE_FILE = "qemu-trace.log"
SCSI_WRITE_OPCODES = {0x0A: "WRITE(6)", 0x2A: "WRITE(10)", 0xAA: "WRITE(12)", 0x8A: "WRITE(16)",
                      0x2E: "WRITE AND VERIFY(10)", 0x8E: "WRITE AND VERIFY(16)",
                      0x41: "WRITE SAME(10)", 0x93: "WRITE SAME(16)"}

_PREFIX = r"^(?:\d+@(?P<time>\d+\.\d+):)?"
_VIRTIO_BLK = re.compile(_PREFIX + r"virtio_blk_handle_write vdev (?P<vdev>\S+) \S+ \S+ sector (?P<sector>\d+) "
                         r"nsectors (?P<n>\d+)")
_SCSI_PARSED = re.compile(_PREFIX + r"scsi_req_parsed target (?P<t>\d+) lun (?P<l>\d+) tag (?P<tag>\d+) "
                          r"command (?P<cmd>\d+) dir (?P<dir>\d+) length (?P<len>\d+)")
_SCSI_LBA = re.compile(_PREFIX + r"scsi_req_parsed_lba target (?P<t>\d+) lun (?P<l>\d+) tag (?P<tag>\d+) "
                       r"command (?P<cmd>\d+) lba (?P<lba>\d+)")

_NVME_WRITE = re.compile(_PREFIX + r"pci_nvme_write cid \d+ opname '(?P<op>[^']*)' nsid (?P<nsid>\d+) nlb \d+ "
                         r"count (?P<count>\d+) lba (?P<lba>0x[0-9a-fA-F]+|\d+)")


EVENTS_BY_BUS = {disks.VIRTIO_BLK_BUS: ["virtio_blk_handle_write"],
                 disks.SCSI_BUS: ["scsi_req_parsed", "scsi_req_parsed_lba"],
                 disks.NVME_BUS: ["pci_nvme_write"], disks.NET_BUS: []}
ANY_BUS = "any"  # a parser for a run whose dump devices are on several buses


def trace_events(*disk_kinds: str) -> list[str]:
    events = []
    for kind in dict.fromkeys(disk_kinds):
        events += EVENTS_BY_BUS[disks.get(kind).bus]
    return list(dict.fromkeys(events))


@dataclass
class Write:
    time: Optional[float]
    target: int
    lun: int
    offset: int  # byte offset on the disk
    length: int
    command: str
    vdev: str = ""  # virtio-blk: QEMU's device pointer; NVMe: the namespace id: what tells disks apart
    bus: str = disks.SCSI_BUS


class WriteParser:
    """Trace lines to Writes, one line at a time (a SCSI command spans two lines), so that a
    log still being written can be read incrementally."""

    def __init__(self, bus: str, block_size: int):
        self.bus = bus  # disks.VIRTIO_BLK_BUS, disks.SCSI_BUS or ANY_BUS
        self.block_size = block_size
        self.pending: dict[tuple[int, int, int], tuple[int, int]] = {}  # (t, l, tag) -> (opcode, bytes)

    def line(self, line: str) -> Optional[Write]:
        if self.bus in (disks.VIRTIO_BLK_BUS, ANY_BUS):
            m = _VIRTIO_BLK.match(line)
            if m:
                return Write(_time(m), 0, 0, int(m["sector"]) * 512, int(m["n"]) * 512, "VIRTIO_BLK_T_OUT",
                             m["vdev"], disks.VIRTIO_BLK_BUS)
        if self.bus in (disks.NVME_BUS, ANY_BUS):
            m = _NVME_WRITE.match(line)
            if m:
                return Write(_time(m), 0, 0, int(m["lba"], 0) * self.block_size, int(m["count"]), m["op"],
                             m["nsid"], disks.NVME_BUS)
        if self.bus not in (disks.SCSI_BUS, ANY_BUS):
            return None
        m = _SCSI_PARSED.match(line)
        if m:
            self.pending[(int(m["t"]), int(m["l"]), int(m["tag"]))] = (int(m["cmd"]), int(m["len"]))
            return None
        m = _SCSI_LBA.match(line)
        if m:
            key = (int(m["t"]), int(m["l"]), int(m["tag"]))
            opcode, nbytes = self.pending.pop(key, (int(m["cmd"]), 0))
            if opcode in SCSI_WRITE_OPCODES:
                return Write(_time(m), key[0], key[1], int(m["lba"]) * self.block_size, nbytes,
                             SCSI_WRITE_OPCODES[opcode])
        return None


def parse(path: Path, bus: str, block_size: int) -> list[Write]:
    """Every write command in the trace log to a disk on `bus` (ANY_BUS: both), in order."""
    parser = WriteParser(bus, block_size)
    with open(path, encoding="ascii", errors="replace") as f:
        return [w for w in map(parser.line, f) if w is not None]


def _time(match: re.Match) -> Optional[float]:
    return float(match["time"]) if match["time"] else None


def crash_time(run_dir: Path) -> Optional[float]:
    try:
        return float(json.loads((run_dir / "timeline.json").read_text())["crash_injected"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
