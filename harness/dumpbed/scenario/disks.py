"""Disk kinds: one entry each, data plus hooks (docs/adding-a-disk-kind.md).

An entry says everything the host needs of a kind: its QEMU devices (the controller, one disk),
the guest's `dumpdev=` word for a disk, the SCSI target and LUN limits, the bus whose trace
events the command log, the write log and the oracles read, the device whose I/O `slow`
throttles, and the faults that cannot apply to it. Nothing outside this module compares a disk
kind's name; code asks the entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from dumpbed.errors import DumpbedError
from dumpbed.net.protocol import GUEST_MAC, LINK_MTU  # docs/netdump-protocol.md, section 4

# The buses, by the trace vocabulary QEMU's device models speak (harness/dumpbed/capture/cmdlog.py
# and writelog.py parse each): one virtio-blk PCI function per disk, scsi-hd on an HBA, or an
# NVMe controller with one namespace per disk.
VIRTIO_BLK_BUS = "virtio-blk"
SCSI_BUS = "scsi"
NVME_BUS = "nvme"
NVME_MDTS = 9
# A network dump (docs/netdump-protocol.md): the "disk" is the dump server's image on the host,
# its command log the server's (netdumpd.jsonl), the guest's frames the link's (link.pcap).
NET_BUS = "net"
NETDEV = "net0"  # the -netdev of a network dump target: a datagram socket the link holds


def _virtio_blk_devices(node: str, hba: str, target: int, lun: int, options: str, number: int) -> list[str]:
    # request-merging=off: QEMU would join adjacent requests taken together (the guest's several
    # writes in flight) into one block-layer write, and the write log would then hold one entry
    # for two of the guest's commands; the oracles judge each command by its own.
    return [f"virtio-blk-pci,drive={node},id={node}-dev,disable-legacy=on,request-merging=off,{options}"]


def _scsi_hd_devices(node: str, hba: str, target: int, lun: int, options: str, number: int) -> list[str]:
    return [f"scsi-hd,bus={hba}.0,drive={node},id={node}-dev,scsi-id={target},lun={lun},{options}"]


def _nvme_devices(node: str, hba: str, target: int, lun: int, options: str, number: int) -> list[str]:
    # A controller of its own per disk (the guest's nvme:N is the N-th controller, and takes its
    # first namespace); the namespace id is the disk's number + 1, unique in the machine, because
    # QEMU's trace names the namespace but not the controller
    # MDTS 9: 2 MiB transfers (2^9 pages of 4 KiB), what the guest's PRP list describes; QEMU's
    # default 7 (512 KiB) quadrupled the dump's commands (docs/benchmarks.md)
    return [f"nvme,id={node}-ctrl,serial=dumpbed-{node},mdts={NVME_MDTS}",
            f"nvme-ns,drive={node},id={node}-dev,bus={node}-ctrl,nsid={number + 1},{options}"]


def _nic_devices(nic: str) -> Callable[[str, str, int, int, str, int], list[str]]:
    def devices(node: str, hba: str, target: int, lun: int, options: str, number: int) -> list[str]:
        return [f"{nic},netdev={NETDEV},id={node}-dev,mac={GUEST_MAC}"]
    return devices


# Every disk fault acts on the block device under the dump disk (blkdebug rules, werror=stop,
# throttling, device_del of the disk, the disk's size): a network dump has none in QEMU.
_NOT_A_DISK = "a disk fault: a network dump's target is the dump server on the host, not a block device in QEMU"


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
    # The -device values of one disk: (node, hba id, target, LUN, block options, the disk's number
    # in the machine) -> -device values
    devices: Callable[[str, str, int, int, str, int], list[str]] = _scsi_hd_devices
    # QEMU's device takes werror/rerror=stop: the live faults stop the VM on the write they pick
    stops_on_error: bool = True
    # The Linux module that drives it (a Linux guest's initramfs must load it); None: no Linux
    # driver dumps to it (a network dump target is netdumpd's protocol)
    linux_driver: Optional[str] = None

    @property
    def network(self) -> bool:
        """A network dump target: a NIC in QEMU, the dump server's image on the host."""
        return self.bus == NET_BUS

    @property
    def on_hba(self) -> bool:
        return self.hba_device is not None

    def guest_name(self, target: int, lun: int, function_index: int) -> str:
        """The guest's dumpdev= word (docs/guest-interface.md): the first HBA of the kind, or the
        n-th virtio-blk function in PCI order."""
        if self.on_hba:
            return f"{self.name}:0:{target}:{lun}"
        return f"{self.name}:{function_index}"

    def disk_devices(self, node: str, hba: str, target: int, lun: int, options: str, number: int = 0) -> list[str]:
        """The -device values of one disk backed by block node `node` (the disk's own device has
        the id NODE-dev); `number`: the disk's place among the machine's disks."""
        return self.devices(node, hba, target, lun, options, number)

    def throttled_device(self, node: str) -> str:
        """The QOM path block_set_io_throttle takes for the disk on node `node`."""
        if self.bus == VIRTIO_BLK_BUS:
            return f"/machine/peripheral/{node}-dev/virtio-backend"
        return f"{node}-dev"

    def address_problem(self, target: int, lun: int) -> Optional[str]:
        """Why a disk of this kind cannot sit at (target, LUN) on its HBA, or None."""
        if not self.on_hba:
            return None
        if not 0 <= target < self.targets:
            return f"{self.name}: target {target} out of range 0..{self.targets - 1}"
        if not 0 <= lun <= self.max_lun:
            return f"{self.name}: LUN {lun} out of range 0..{self.max_lun}"
        return None

    def fault_applies(self, fault: str, stops_vm: bool = False, network: bool = False) -> Optional[str]:
        """None if the fault applies to this kind, else why not. `stops_vm`: the fault stops the
        VM on a failed write (werror/rerror=stop), which the kind's device must take; `network`:
        a fault of the network link or the dump server, which only a network target has."""
        if fault in self.no_faults:
            return self.no_faults[fault]
        if network and not self.network:
            return "a network fault: this target is a disk, with no link or dump server"
        if self.network and not network:
            return _NOT_A_DISK
        if stops_vm and not self.stops_on_error:
            return (f"QEMU's {self.name} device has no werror/rerror=stop, which this fault's trigger needs "
                    "(the VM stopped on the write it picks)")
        return None


DISKS: dict[str, DiskKind] = {d.name: d for d in [
    DiskKind("virtio-blk", "virtio-blk-pci (modern), one PCI function per disk, polled dump path",
             VIRTIO_BLK_BUS, devices=_virtio_blk_devices, linux_driver="virtio_blk",
             no_faults={"unplug": "QEMU's pc machine unplugs a PCI device only with the guest's ACPI help, "
                                  "which this guest does not give: device_del would never take"}),
    DiskKind("virtio-scsi", "scsi-hd on virtio-scsi-pci (modern), sd + scsi_poll dump path",
             SCSI_BUS, hba_device="virtio-scsi-pci,disable-legacy=on", targets=255, max_lun=16383,
             linux_driver="virtio_scsi"),
    # QEMU's lsi53c895a bus: targets 0..6 (ID 7 is the HBA), LUN 0 only
    DiskKind("lsi", "scsi-hd on the LSI 53C895A parallel SCSI HBA, guest SCRIPTS, polled",
             SCSI_BUS, hba_device="lsi53c895a", targets=7, max_lun=0, linux_driver="sym53c8xx"),
    # QEMU's pvscsi bus: targets 0..64 (its max_target, 64, is inclusive), LUN 0 only
    DiskKind("pvscsi", "scsi-hd on VMware PVSCSI (pvscsi), request/completion rings, polled",
             SCSI_BUS, hba_device="pvscsi", targets=65, max_lun=0, linux_driver="vmw_pvscsi"),
    DiskKind("nvme", "nvme-ns (namespace 1) on an NVMe controller of its own, polled dump queue, PRPs",
             NVME_BUS, devices=_nvme_devices, stops_on_error=False, linux_driver="nvme",
             no_faults={"unplug": "QEMU's pc machine unplugs a PCI device only with the guest's ACPI help, "
                                  "which this guest does not give: device_del would never take"}),
    DiskKind("virtio-net", "network dump through virtio-net-pci (modern) to the dump server (netdumpd), polled "
             "rings, over a link that may lose, duplicate and reorder", NET_BUS,
             devices=_nic_devices(f"virtio-net-pci,disable-legacy=on,host_mtu={LINK_MTU}"), stops_on_error=False),
    DiskKind("e1000e", "network dump through an Intel 82574L (e1000e) to the dump server (netdumpd), polled "
             "descriptor rings", NET_BUS, devices=_nic_devices("e1000e"), stops_on_error=False),
]}


DEFAULT = "virtio-blk"  # `--disk`'s default


def get(name: str) -> DiskKind:
    try:
        return DISKS[name]
    except KeyError:
        raise DumpbedError(f"unknown disk type {name!r} (available: {', '.join(DISKS)})") from None
