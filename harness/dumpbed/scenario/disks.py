"""Disk kinds: one entry each, data plus hooks (docs/adding-a-disk-kind.md).

An entry says everything the host needs of a kind: its QEMU devices (the controller, one disk),
the guest's `dumpdev=` word for a disk, the SCSI target and LUN limits, the bus whose trace
events the command log, the write log and the oracles read, the device whose I/O `slow`
throttles, and the faults that cannot apply to it. Nothing outside this module compares a disk
kind's name; code asks the entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from dumpbed.errors import DumpbedError

# The buses, by the trace vocabulary QEMU's device models speak (harness/dumpbed/capture/cmdlog.py
# and writelog.py parse each): one virtio-blk PCI function per disk, or scsi-hd on an HBA.
VIRTIO_BLK_BUS = "virtio-blk"
SCSI_BUS = "scsi"


@dataclass(frozen=True)
class DiskKind:
    name: str
    description: str
    bus: str
    hba_device: Optional[str] = None  # the controller's -device, for a kind on an HBA
    targets: int = 1  # SCSI: targets 0..targets-1 on the HBA's bus
    max_lun: int = 0
    # Faults that cannot apply, with why (docs/faults.md)
    no_faults: dict[str, str] = field(default_factory=dict)

    @property
    def on_hba(self) -> bool:
        return self.hba_device is not None

    def guest_name(self, target: int, lun: int, function_index: int) -> str:
        """The guest's dumpdev= word (docs/guest-interface.md): the first HBA of the kind, or the
        n-th virtio-blk function in PCI order."""
        if self.on_hba:
            return f"{self.name}:0:{target}:{lun}"
        return f"{self.name}:{function_index}"

    def disk_device(self, node: str, hba: str, target: int, lun: int, options: str) -> str:
        """The -device of one disk backed by block node `node` (its id is NODE-dev)."""
        if self.on_hba:
            return f"scsi-hd,bus={hba}.0,drive={node},id={node}-dev,scsi-id={target},lun={lun},{options}"
        return f"virtio-blk-pci,drive={node},id={node}-dev,disable-legacy=on,{options}"

    def throttled_device(self, node: str) -> str:
        """The QOM path block_set_io_throttle takes for the disk on node `node`."""
        if self.on_hba:
            return f"{node}-dev"
        return f"/machine/peripheral/{node}-dev/virtio-backend"

    def address_problem(self, target: int, lun: int) -> Optional[str]:
        """Why a disk of this kind cannot sit at (target, LUN) on its HBA, or None."""
        if not self.on_hba:
            return None
        if not 0 <= target < self.targets:
            return f"{self.name}: target {target} out of range 0..{self.targets - 1}"
        if not 0 <= lun <= self.max_lun:
            return f"{self.name}: LUN {lun} out of range 0..{self.max_lun}"
        return None

    def fault_applies(self, fault: str) -> Optional[str]:
        """None if the fault applies to this kind, else why not."""
        return self.no_faults.get(fault)


_SCSI_ONLY_WORKLOAD = "the guest's interrupt-driven runtime workload drives SCSI HBAs only (guest/test/workload.c)"

DISKS: dict[str, DiskKind] = {d.name: d for d in [
    DiskKind("virtio-blk", "virtio-blk-pci (modern), one PCI function per disk, polled dump path",
             VIRTIO_BLK_BUS,
             no_faults={"unplug": "QEMU's pc machine unplugs a PCI device only with the guest's ACPI help, "
                                  "which this guest does not give: device_del would never take",
                        "hold-runtime": _SCSI_ONLY_WORKLOAD}),
    DiskKind("virtio-scsi", "scsi-hd on virtio-scsi-pci (modern), sd + scsi_poll dump path",
             SCSI_BUS, hba_device="virtio-scsi-pci,disable-legacy=on", targets=255, max_lun=16383),
    # QEMU's lsi53c895a bus: targets 0..6 (ID 7 is the HBA), LUN 0 only
    DiskKind("lsi", "scsi-hd on the LSI 53C895A parallel SCSI HBA, guest SCRIPTS, polled",
             SCSI_BUS, hba_device="lsi53c895a", targets=7, max_lun=0),
]}


DEFAULT = "virtio-blk"  # `--disk`'s default


def get(name: str) -> DiskKind:
    try:
        return DISKS[name]
    except KeyError:
        raise DumpbedError(f"unknown disk type {name!r} (available: {', '.join(DISKS)})") from None
