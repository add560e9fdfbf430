"""The `write-sizes` oracle: every write the guest issued to its disks after the crash, as QEMU
saw it (harness/dumpbed/capture/writelog.py), lies inside the dump partition and obeys the
DUMPQUERY transfer limits.

With a secondary dump device each write is attributed to its device: SCSI disks by target and
LUN (the harness gives every dump disk its own), virtio-blk disks by the device pointer in
the event and NVMe disks by namespace id: the first such device written after the crash is the
primary, because the dump always starts there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dumpbed.capture.writelog import ANY_BUS, TRACE_FILE, Write, crash_time, parse
from dumpbed.images.layout import DiskLayout
from dumpbed.oracles.base import Check, make_check
from dumpbed.reader import dumpfmt
from dumpbed.scenario import disks


@dataclass
class DumpTarget:
    """A dump device as the write log needs it: where its writes land and what limits hold."""
    role: str  # "primary" or "secondary"
    kind: str
    target: int
    lun: int
    layout: DiskLayout
    dump: dumpfmt.Dump

    @property
    def bus(self) -> str:
        return disks.get(self.kind).bus


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
    buses = {t.bus for t in targets}
    writes = parse(trace, buses.pop() if len(buses) == 1 else ANY_BUS, targets[0].layout.block_size)
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
    scsi = {(t.target, t.lun): t.role for t in targets if t.bus == disks.SCSI_BUS}
    devices: dict[tuple[str, str], str] = {}  # (bus, device) -> role
    for w in writes:
        where = f"{w.command} of {w.length} bytes at disk offset 0x{w.offset:x}"
        if w.bus != disks.SCSI_BUS:
            # Told apart by the device: the first one of the bus written after the crash is the
            # first dump device of that bus (the primary, if it is of that bus)
            roles = [t.role for t in targets if t.bus == w.bus]
            known = [r for (bus, _), r in devices.items() if bus == w.bus]
            if (w.bus, w.vdev) not in devices and len(known) < len(roles):
                devices[(w.bus, w.vdev)] = roles[len(known)]
            role = devices.get((w.bus, w.vdev))
            if role is None:
                problems.append(f"{where} went to a {w.bus} disk that is not a dump device")
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
