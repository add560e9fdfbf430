"""The `write-sizes` oracle: every write the guest issued to its disks after the crash, as QEMU
saw it, lies inside the dump partition and obeys the DUMPQUERY transfer limits.

QEMU logs each command its disk devices receive through trace events (log backend, `-D
qemu-trace.log`, with `-msg timestamp=on` so each line carries the host time):

    virtio-blk:  virtio_blk_handle_write vdev P req P sector S nsectors N      (512-byte sectors)
    SCSI:        scsi_req_parsed target T lun L tag X command C dir D length BYTES
                 scsi_req_parsed_lba target T lun L tag X command C lba LBA  (follows the former)

These are device-level events, one per guest command, before the block layer splits or merges
anything, so the sizes are the guest's own.

With a secondary dump device each write is attributed to its device: SCSI disks by target and
LUN (the harness gives every dump disk its own), virtio-blk disks by the device pointer in
the event: the first virtio-blk device written after the crash is the primary, because the
dump always starts there.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness import dumpfmt
from harness.checks_base import Check, make_check
from harness.layout import DiskLayout

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


def trace_events(*disk_kinds: str) -> list[str]:
    events = []
    for kind in dict.fromkeys(disk_kinds):
        events += ["virtio_blk_handle_write"] if kind == "virtio-blk" else ["scsi_req_parsed", "scsi_req_parsed_lba"]
    return list(dict.fromkeys(events))


@dataclass
class Write:
    time: Optional[float]
    target: int
    lun: int
    offset: int  # byte offset on the disk
    length: int
    command: str
    vdev: str = ""  # virtio-blk: QEMU's device pointer, which tells disks apart


@dataclass
class DumpTarget:
    """A dump device as the write log needs it: where its writes land and what limits hold."""
    role: str  # "primary" or "secondary"
    kind: str
    target: int
    lun: int
    layout: DiskLayout
    dump: dumpfmt.Dump


class WriteParser:
    """Trace lines to Writes, one line at a time (a SCSI command spans two lines), so that a
    log still being written can be read incrementally."""

    def __init__(self, disk_kind: str, block_size: int):
        self.disk_kind = disk_kind  # a family ("virtio-blk" or a SCSI kind), or "any"
        self.block_size = block_size
        self.pending: dict[tuple[int, int, int], tuple[int, int]] = {}  # (t, l, tag) -> (opcode, bytes)

    def line(self, line: str) -> Optional[Write]:
        if self.disk_kind in ("virtio-blk", "any"):
            m = _VIRTIO_BLK.match(line)
            if m:
                return Write(_time(m), 0, 0, int(m["sector"]) * 512, int(m["n"]) * 512, "VIRTIO_BLK_T_OUT",
                             m["vdev"])
            if self.disk_kind == "virtio-blk":
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


def parse(path: Path, disk_kind: str, block_size: int) -> list[Write]:
    """Every write command in the trace log to a disk of `disk_kind`'s family ("any": both), in order."""
    parser = WriteParser(disk_kind, block_size)
    with open(path, encoding="ascii", errors="replace") as f:
        return [w for w in map(parser.line, f) if w is not None]


def _time(match: re.Match) -> Optional[float]:
    return float(match["time"]) if match["time"] else None


def check_write_sizes(run_dir: Path, dump: dumpfmt.Dump, layout: DiskLayout, scenario: dict,
                      secondary: Optional[tuple[DiskLayout, dumpfmt.Dump]] = None,
                      quiesced_at: Optional[float] = None) -> Check:
    """The dump disk's writes (and the secondary's, given its layout and dump)."""
    topology = scenario.get("topology") or {"kind": scenario["disk"], "dump_disk": {"target": 0, "lun": 0}}
    targets = [DumpTarget("primary", topology["kind"], topology["dump_disk"]["target"],
                          topology["dump_disk"]["lun"], layout, dump)]
    if secondary is not None and topology.get("secondary"):
        sec = topology["secondary"]
        targets.append(DumpTarget("secondary", sec["kind"], sec["target"], sec["lun"], *secondary))
    return check_device_writes(Path(run_dir), targets, quiesced_at)


def check_device_writes(run_dir: Path, targets: list[DumpTarget], quiesced_at: Optional[float] = None) -> Check:
    """quiesced_at: when the guest said DUMPSTART had quiesced the primary (its QUIESCED line).
    Writes the device takes between the crash and then, outside every dump partition, are runtime
    writes the guest had made available before the crash (the device takes them when the VM goes
    on); the runtime-io oracle judges those. Everything else after the crash is the dump's."""
    trace = run_dir / TRACE_FILE
    if not trace.exists():
        return Check("write-sizes", False, f"{TRACE_FILE} missing: QEMU logged no writes")
    kinds = {t.kind for t in targets}
    family = "any" if len({k == "virtio-blk" for k in kinds}) > 1 else targets[0].kind
    writes = parse(trace, family, targets[0].layout.block_size)
    crashed_at = crash_time(run_dir)
    after = [w for w in writes if crashed_at is None or w.time is None or w.time >= crashed_at]
    late_runtime = [w for w in after if quiesced_at is not None and w.time is not None and w.time < quiesced_at
                    and not any(_in_partition(w, t) for t in targets)]
    after = [w for w in after if w not in late_runtime]

    problems: list[str] = []
    by_target = _attribute(after, targets, problems)
    details = []
    for t in targets:
        mine = by_target[t.role]
        label = f"{t.role}: " if len(targets) > 1 else ""
        problems += [label + p for p in _device_problems(t, mine)]
        sizes = sorted({w.length for w in mine})
        h = t.dump.header
        limits = f"DUMPQUERY min {h.min_transfer} / max {h.max_transfer}" if h else "no header"
        details.append(f"{label}{len(mine)} writes after the crash, all inside the dump partition; sizes "
                       f"{sizes[0] if sizes else 0}..{sizes[-1] if sizes else 0} bytes within {limits}")
    late = f", {len(late_runtime)} runtime writes taken before the guest's QUIESCED" if late_runtime else ""
    ok_detail = "; ".join(details) + f"; {len(writes) - len(after) - len(late_runtime)} writes before the crash{late}"
    return make_check("write-sizes", problems, ok_detail)


def _in_partition(w: Write, t: DumpTarget) -> bool:
    start = t.layout.dump_offset
    return start <= w.offset and w.offset + w.length <= start + t.layout.dump_size


def _attribute(writes: list[Write], targets: list[DumpTarget], problems: list[str]) -> dict[str, list[Write]]:
    """Which dump device each write went to; writes to no dump device are problems."""
    out: dict[str, list[Write]] = {t.role: [] for t in targets}
    scsi = {(t.target, t.lun): t.role for t in targets if t.kind != "virtio-blk"}
    blk_roles = [t.role for t in targets if t.kind == "virtio-blk"]  # primary first
    vdevs: dict[str, str] = {}
    for w in writes:
        where = f"{w.command} of {w.length} bytes at disk offset 0x{w.offset:x}"
        if w.command == "VIRTIO_BLK_T_OUT":
            if w.vdev not in vdevs and len(vdevs) < len(blk_roles):
                vdevs[w.vdev] = blk_roles[len(vdevs)]
            role = vdevs.get(w.vdev)
            if role is None:
                problems.append(f"{where} went to a virtio-blk disk that is not a dump device")
                continue
        else:
            role = scsi.get((w.target, w.lun))
            if role is None:
                problems.append(f"{where} went to target {w.target} LUN {w.lun}, not a dump disk")
                continue
        out[role].append(w)
    return out


def _device_problems(t: DumpTarget, writes: list[Write]) -> list[str]:
    header = t.dump.header
    start, end = t.layout.dump_offset, t.layout.dump_offset + t.layout.dump_size
    if header is None:
        # No header says the limits (the dump never got its first leader on the disk): every
        # write must still lie inside the partition.
        return [f"{w.command} of {w.length} bytes at disk offset 0x{w.offset:x} lies outside the dump partition "
                f"[0x{start:x}, 0x{end:x})" for w in writes if not (start <= w.offset and w.offset + w.length <= end)]
    lo, hi = header.min_transfer, header.max_transfer
    if lo == 0 or hi < lo:
        return [f"the header's DUMPQUERY limits are impossible (min {lo}, max {hi})"]
    problems = []
    for w in writes:
        where = f"{w.command} of {w.length} bytes at disk offset 0x{w.offset:x}"
        if not (start <= w.offset and w.offset + w.length <= end):
            problems.append(f"{where} lies outside the dump partition [0x{start:x}, 0x{end:x})")
        elif w.length == 0 or w.length % lo or w.length > hi:
            problems.append(f"{where} breaks the DUMPQUERY limits (min {lo}, max {hi}, a multiple of min)")
        elif (w.offset - start) % lo:
            problems.append(f"{where} is not aligned to min_transfer {lo} in the partition")
    if not writes and t.dump.status != "none":
        problems.append("no write was logged after the crash, yet the disk holds a dump")
    return problems


def crash_time(run_dir: Path) -> Optional[float]:
    try:
        return float(json.loads((run_dir / "timeline.json").read_text())["crash_injected"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
