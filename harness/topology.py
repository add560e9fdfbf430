"""Which disks the guest sees and on which controller: the QEMU devices and the guest's dumpdev.

A topology is one dump disk, optionally with more disks on the same controller (each canary
checked, none may be written by the dump). virtio-blk disks are one PCI function each; SCSI
disks are scsi-hd devices on one HBA (virtio-scsi or the LSI 53C895A), at a target and LUN.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DumpbedError

DISK_KINDS = {
    "virtio-blk": "virtio-blk-pci (modern), one PCI function per disk, polled dump path",
    "virtio-scsi": "scsi-hd on virtio-scsi-pci (modern), sd + scsi_poll dump path",
    "lsi": "scsi-hd on the LSI 53C895A parallel SCSI HBA, guest SCRIPTS, polled",
}
HBA_DEVICE = {"virtio-scsi": "virtio-scsi-pci,disable-legacy=on", "lsi": "lsi53c895a"}
MAX_TARGET = {"virtio-scsi": 255, "lsi": 7}  # QEMU's lsi53c895a bus: 7 targets (ID 7 is the HBA)
MAX_LUN = {"virtio-scsi": 16383, "lsi": 0}  # and LUN 0 only


@dataclass
class DiskSpec:
    image: Path
    node: str
    block_size: int = 512
    target: int = 0
    lun: int = 0


@dataclass
class Topology:
    kind: str
    dump_disk: DiskSpec
    other_disks: list[DiskSpec] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in DISK_KINDS:
            raise DumpbedError(f"unknown disk type {self.kind!r} (available: {', '.join(DISK_KINDS)})")
        seen = set()
        for disk in self.disks:
            if self.kind in HBA_DEVICE:
                if not 0 <= disk.target < MAX_TARGET[self.kind]:
                    raise DumpbedError(f"{self.kind}: target {disk.target} out of range 0..{MAX_TARGET[self.kind] - 1}")
                if not 0 <= disk.lun <= MAX_LUN[self.kind]:
                    raise DumpbedError(f"{self.kind}: LUN {disk.lun} out of range 0..{MAX_LUN[self.kind]}")
                if (disk.target, disk.lun) in seen:
                    raise DumpbedError(f"{self.kind}: two disks at target {disk.target} LUN {disk.lun}")
                seen.add((disk.target, disk.lun))

    @property
    def disks(self) -> list[DiskSpec]:
        return [self.dump_disk, *self.other_disks]

    def dumpdev(self) -> str:
        """The guest's dumpdev= value (docs/guest-interface.md)."""
        if self.kind == "virtio-blk":
            return "virtio-blk:0"  # the dump disk is the first virtio-blk function
        return f"{self.kind}:0:{self.dump_disk.target}:{self.dump_disk.lun}"

    def qemu_args(self) -> list[str]:
        args: list[str] = []
        if self.kind in HBA_DEVICE:
            args += ["-device", f"{HBA_DEVICE[self.kind]},id=hba0"]
        for disk in self.disks:
            blockdev = {
                "driver": "raw",
                "node-name": disk.node,
                "file": {"driver": "file", "filename": str(Path(disk.image).resolve()),
                         "cache": {"direct": False}},
            }
            args += ["-blockdev", json.dumps(blockdev, separators=(",", ":"))]
            sizes = f"logical_block_size={disk.block_size},physical_block_size={disk.block_size}"
            if self.kind == "virtio-blk":
                args += ["-device", f"virtio-blk-pci,drive={disk.node},id={disk.node}-dev,disable-legacy=on,{sizes}"]
            else:
                args += ["-device", f"scsi-hd,bus=hba0.0,drive={disk.node},id={disk.node}-dev,"
                                    f"scsi-id={disk.target},lun={disk.lun},{sizes}"]
        return args

    def to_json(self) -> dict:
        def one(d: DiskSpec) -> dict:
            return {"image": Path(d.image).name, "node": d.node, "block_size": d.block_size,
                    "target": d.target, "lun": d.lun}
        return {"kind": self.kind, "dump_disk": one(self.dump_disk), "other_disks": [one(d) for d in self.other_disks]}
