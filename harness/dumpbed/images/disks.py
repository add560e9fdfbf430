"""The disk images of one run: the dump disk (image, layout, canary fill, GPT), any others on
its controller, the secondary dump disk, and their topology (harness/dumpbed/images/topology.py).
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dumpbed.capture import blklog
from dumpbed.errors import DumpbedError
from dumpbed.guests import profiles
from dumpbed.images import build as images, layout as layout_mod
from dumpbed.images.layout import DiskLayout
from dumpbed.images.topology import DUMP_NODE, DiskSpec, Topology
from dumpbed.scenario import disks as disks_mod, faults as faults_mod
from dumpbed.scenario.spec import Scenario
from dumpbed.units import MiB

OTHER_DISK_RAM = 16 * MiB


@dataclass
class DiskPlan:
    """A run's disks decided and checked, nothing written yet: the topology, and the layout of
    each image to create, by the name of its layout file."""
    topology: Topology
    layouts: dict[str, DiskLayout]

    def image_bytes(self) -> int:
        """What the images to create take on the host's disk: every byte but their holes."""
        return sum(l.size_bytes - sum(end - start for start, end in l.holes) for l in self.layouts.values())


def make_disks(scenario: Scenario, out: Path, faults: Optional[list[faults_mod.Fault]] = None,
               reuse_dump_disk: bool = False) -> Topology:
    """Create the dump disk (dump.img + layout.json), any others (diskN.img + diskN.layout.json)
    and the secondary dump disk (secondary.img + secondary.layout.json). With reuse_dump_disk,
    dump.img and layout.json are already there (`stale`)."""
    plan = plan_disks(scenario, out, faults, reuse_dump_disk)
    for name, disk_layout in plan.layouts.items():
        images.create_dump_disk(out / disk_layout.image, disk_layout)
        disk_layout.save(out / name)
    for disk in plan.topology.disks:
        if disk.write_log is not None:
            disk.write_log.write_bytes(b"")  # blklogwrites opens it; a stale one never survives
    return plan.topology


def plan_disks(scenario: Scenario, out: Path, faults: Optional[list[faults_mod.Fault]] = None,
               reuse_dump_disk: bool = False) -> DiskPlan:
    """make_disks' decisions (sizes, layouts, targets, LUNs) with nothing written: a disk size too
    small, a target or LUN out of range, two disks at one address are refused here."""
    seed = secrets.randbits(32)
    enospc = next((f for f in faults or [] if f.kind.sizes_partition), None)
    # enospc: a dump partition sized for P% of what the dump needs (the guest profile's word:
    # dumpbed's guest dumps all its RAM, a Linux guest at least its pattern), so it cannot fit.
    needs = profiles.get(scenario.profile).dump_needs(scenario)
    sized_for = needs * enospc.value // 100 if enospc else scenario.memory_bytes
    layout = DiskLayout.for_dump(sized_for, block_size=scenario.block_size, canary_seed=seed)
    if scenario.disk_size is not None:
        if scenario.disk_size < layout.size_bytes:
            raise DumpbedError(f"--disk-size {scenario.disk_size} bytes is too small for a dump of this guest's "
                               f"RAM: at least {layout.size_bytes} bytes ({-(-layout.size_bytes // MiB)}M)")
        # The data partition takes the extra room, so a big disk puts the dump partition at high LBAs.
        extra = (scenario.disk_size - layout.size_bytes) // MiB * MiB
        layout = DiskLayout.for_dump(sized_for, block_size=scenario.block_size,
                                     canary_seed=seed, data_bytes=MiB + extra)
    if reuse_dump_disk:
        layout = layout_mod.load(out / "layout.json")
    layouts = {} if reuse_dump_disk else {"layout.json": layout}
    dump_disk = DiskSpec(out / layout.image, DUMP_NODE, scenario.block_size, scenario.target, scenario.lun,
                         write_log=blklog.log_path(out / layout.image),
                         stop_on_error=any(f.kind.stops_vm for f in faults or []))
    kind = disks_mod.get(scenario.disk)
    free_targets = [t for t in range(kind.targets) if t != scenario.target] or [0]
    others = []
    for n in range(1, scenario.other_disks + 1):
        other = DiskLayout.for_dump(OTHER_DISK_RAM, block_size=scenario.block_size,
                                    canary_seed=secrets.randbits(32), image=f"disk{n}.img")
        layouts[f"disk{n}.layout.json"] = other
        target = free_targets[(n - 1) % len(free_targets)] if kind.on_hba else 0
        others.append(DiskSpec(out / other.image, f"disk{n}", scenario.block_size, target, scenario.lun))
    secondary = None
    if scenario.secondary is not None:
        second = DiskLayout.for_dump(scenario.memory_bytes, block_size=scenario.block_size,
                                     canary_seed=secrets.randbits(32), image="secondary.img")
        layouts["secondary.layout.json"] = second
        # A target no primary-side disk uses, even on an HBA of its own: the write log tells
        # SCSI disks apart by target and LUN only.
        used = {d.target for d in [dump_disk, *others]}
        second_kind = disks_mod.get(scenario.secondary)
        target = next((t for t in range(second_kind.targets) if t not in used), -1) if second_kind.on_hba else 0
        secondary = DiskSpec(out / second.image, "disk-secondary", scenario.block_size, target, 0,
                             write_log=blklog.log_path(out / second.image))
    # Validates kinds, targets and LUNs before any image is created.
    return DiskPlan(Topology(scenario.disk, dump_disk, others, scenario.secondary, secondary), layouts)
