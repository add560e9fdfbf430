"""Which disks the guest sees and on which controller: the QEMU devices and the guest's dumpdev.

A topology is one dump disk, optionally with more disks on the same controller (each canary
checked, none may be written by the dump), and optionally a secondary dump device of any kind
(the restart target). virtio-blk disks are one PCI function each; SCSI disks are scsi-hd
devices on an HBA (virtio-scsi or the LSI 53C895A), at a target and LUN. A secondary disk of
the primary's kind shares its controller; of another SCSI kind it gets an HBA of its own.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dumpbed.capture import blklog
from dumpbed.errors import DumpbedError
from dumpbed.net.protocol import GUEST_IP, LINK_MTU, SERVER_IP, SERVER_PORT  # docs/netdump-protocol.md, section 4
from dumpbed.scenario import disks as disks_mod

DUMP_NODE = "disk0"  # the dump disk's node name (its device is DUMP_NODE-dev)


def log_node(node: str) -> str:
    """The node name of a dump disk's blklogwrites node."""
    return f"{node}-log"


@dataclass
class DiskSpec:
    image: Path
    node: str
    block_size: int = 512
    target: int = 0
    lun: int = 0
    write_log: Optional[Path] = None  # a dump disk's write log (harness/dumpbed/capture/blklog.py), or None
    stop_on_error: bool = False  # werror/rerror=stop: a fault's failed request stops the VM, parked


@dataclass
class Topology:
    kind: str
    dump_disk: DiskSpec
    other_disks: list[DiskSpec] = field(default_factory=list)
    secondary_kind: Optional[str] = None  # the secondary dump device's kind, if there is one
    secondary_disk: Optional[DiskSpec] = None

    def __post_init__(self):
        for kind in (self.kind, self.secondary_kind or self.kind):
            disks_mod.get(kind)  # an unknown kind is refused here
        if (self.secondary_kind is None) != (self.secondary_disk is None):
            raise DumpbedError("a secondary dump device needs both a kind and a disk")
        for kind, disks in self._by_controller():
            seen = set()
            for disk in disks:
                if not disks_mod.get(kind).on_hba:
                    continue
                problem = disks_mod.get(kind).address_problem(disk.target, disk.lun)
                if problem:
                    raise DumpbedError(problem)
                if (disk.target, disk.lun) in seen:
                    raise DumpbedError(f"{kind}: two disks at target {disk.target} LUN {disk.lun}")
                seen.add((disk.target, disk.lun))

    @property
    def disks(self) -> list[DiskSpec]:
        """Every disk, the secondary last."""
        return [self.dump_disk, *self.other_disks, *([self.secondary_disk] if self.secondary_disk else [])]

    @property
    def secondary_shares_controller(self) -> bool:
        return self.secondary_kind == self.kind

    def _by_controller(self) -> list[tuple[str, list[DiskSpec]]]:
        primary = [self.dump_disk, *self.other_disks]
        if self.secondary_disk is None:
            return [(self.kind, primary)]
        if self.secondary_shares_controller:
            return [(self.kind, primary + [self.secondary_disk])]
        return [(self.kind, primary), (self.secondary_kind, [self.secondary_disk])]

    def dumpdev(self) -> str:
        """The guest's dumpdev= value (docs/guest-interface.md)."""
        return self._guest_name(self.kind, self.dump_disk, 0)

    def dumpdev2(self) -> Optional[str]:
        """The guest's dumpdev2= value: the secondary dump device, or None."""
        if self.secondary_disk is None:
            return None
        # Same kind: virtio-blk functions are found in creation order, the secondary's is last.
        index = 1 + len(self.other_disks) if self.secondary_shares_controller else 0
        return self._guest_name(self.secondary_kind, self.secondary_disk, index)

    @staticmethod
    def _guest_name(kind: str, disk: DiskSpec, function_index: int) -> str:
        return disks_mod.get(kind).guest_name(disk.target, disk.lun, function_index)

    @property
    def network(self) -> bool:
        """The dump goes over the network: the dump disk is the dump server's image, not QEMU's."""
        return disks_mod.get(self.kind).network

    def guest_words(self) -> list[str]:
        """The command-line words a network dump needs beside dumpdev= (docs/netdump-protocol.md,
        sections 3 and 4): the guest's address, the server's, the link's MTU."""
        if not self.network:
            return []
        return [f"netaddr={GUEST_IP}", f"netserver={SERVER_IP}:{SERVER_PORT}", f"netmtu={LINK_MTU}"]

    def qemu_args(self, netdev_fd: Optional[int] = None) -> list[str]:
        """The controllers and disks, and for a network dump the NIC on a datagram socket
        (`netdev_fd`, the QEMU end of the link's socketpair)."""
        args: list[str] = []
        if self.network:
            if netdev_fd is None:
                raise DumpbedError("a network dump target needs the link's socket for its NIC")
            args += ["-netdev", f"dgram,id={disks_mod.NETDEV},local.type=fd,local.str={netdev_fd}"]
        for n, (kind, disks) in enumerate(self._by_controller()):
            hba = disks_mod.get(kind).hba_device
            if hba:
                args += ["-device", f"{hba},id=hba{n}"]
            for disk in disks:
                args += self._disk_args(kind, disk, f"hba{n}", self.disks.index(disk))
        return args

    @staticmethod
    def _file_node(disk: DiskSpec) -> dict:
        """The node under the disk's raw format node: its image file, or, for a dump disk, the
        image behind a blklogwrites node ("NODE-log") that logs every write and flush with its
        data. The harness may put a blkdebug node between the raw node and that one at the crash
        (harness/dumpbed/scenario/faultrun.py).

        The guest's flushes reach blklogwrites (which logs them) but not the host's disk
        (no-flush): what a flush means to the device is judged from the log, and an fdatasync
        per flush would only make the dump slower."""
        def file(path: Path, no_flush: bool) -> dict:
            return {"driver": "file", "filename": str(Path(path).resolve()),
                    "cache": {"direct": False, "no-flush": no_flush}}

        if disk.write_log is None:
            return file(disk.image, False)
        return {"driver": "blklogwrites", "node-name": log_node(disk.node), "file": file(disk.image, True),
                "log": file(disk.write_log, True), "log-sector-size": blklog.SECTOR_SIZE}

    @classmethod
    def blockdev(cls, disk: DiskSpec) -> dict:
        """The disk's block graph, as -blockdev takes it (and qemu-img as a json: filename)."""
        return {"driver": "raw", "node-name": disk.node, "file": cls._file_node(disk)}

    @classmethod
    def _disk_args(cls, kind: str, disk: DiskSpec, hba: str, number: int) -> list[str]:
        if disks_mod.get(kind).network:  # the image is the dump server's, never QEMU's
            return [a for device in disks_mod.get(kind).disk_devices(disk.node, hba, 0, 0, "", number)
                    for a in ("-device", device)]
        args = ["-blockdev", json.dumps(cls.blockdev(disk), separators=(",", ":"))]
        sizes = f"logical_block_size={disk.block_size},physical_block_size={disk.block_size}"
        if disk.stop_on_error:
            sizes += ",werror=stop,rerror=stop"
        for device in disks_mod.get(kind).disk_devices(disk.node, hba, disk.target, disk.lun, sizes, number):
            args += ["-device", device]
        return args

    def to_json(self) -> dict:
        def one(d: DiskSpec) -> dict:
            return {"image": Path(d.image).name, "node": d.node, "block_size": d.block_size,
                    "target": d.target, "lun": d.lun}
        out = {"kind": self.kind, "dump_disk": one(self.dump_disk), "other_disks": [one(d) for d in self.other_disks]}
        if self.secondary_disk is not None:
            out["secondary"] = dict(one(self.secondary_disk), kind=self.secondary_kind)
        return out
