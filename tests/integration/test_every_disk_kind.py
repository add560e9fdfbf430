"""Every disk kind (dumpbed/scenario/disks.py) through the same scenarios, with every oracle: a
new entry joins them by itself. Scenarios of one bus (SCSI's WRITE(16) and START STOP UNIT,
virtio-blk's firmwares and sizes) live in test_scsi.py and test_virtio_blk_nmi.py."""
from __future__ import annotations

import pytest

from dumpbed.scenario import disks
from dumpbed.guests import profiles
from tests.integration.conftest import FULL, accel_params
from tests.support.reports import assert_complete

KINDS = list(disks.DISKS)
# The scenarios of a disk in the guest (other disks on its controller, runtime I/O, a secondary
# of the kind): a network dump has none of them (docs/netdump-protocol.md).
DISK_KINDS = [name for name, kind in disks.DISKS.items() if not kind.network]
NIC_KINDS = [name for name, kind in disks.DISKS.items() if kind.network]

# The dumpbed pytest plugin's marker: dumpbed_run's defaults in this module.
pytestmark = pytest.mark.dumpbed(memory="32M")  # enough for every check; a smaller guest boots, fills and validates faster


@pytest.mark.parametrize("accel", accel_params())
@pytest.mark.parametrize("disk", KINDS)
def test_nmi_dump(dumpbed_run, disk, accel):
    # a network dump sends a frame per 8.5 KiB, each a VM exit under this box's nested KVM: a
    # quarter of the RAM keeps it near a disk's time
    result = dumpbed_run(disk=disk, accel=accel, **({"memory": "16M"} if disks.get(disk).network else {}))
    assert_complete(result)
    assert result.accel == accel
    assert {"no-interrupts", "write-order", "consistency", "runtime-io"} <= {c["name"] for c in result.report["checks"]}


# 4096-byte blocks through each driver; of the NICs (the server's blocks, not the NIC's) one in
# `make test`, both in `make matrix`, under TCG (3x KVM's frame rate on this box; the NICs dump
# under KVM in test_nmi_dump)
@pytest.mark.parametrize("disk", [k for k in KINDS if FULL or k not in NIC_KINDS[1:]])
def test_4096_byte_blocks(dumpbed_run, disk):
    result = dumpbed_run(disk=disk, block_size=4096,
                         **({"memory": "16M", "accel": "tcg"} if disks.get(disk).network else {}))
    assert_complete(result)
    assert result.report["dump"]["block_size"] == 4096


@pytest.mark.parametrize("disk", DISK_KINDS)
def test_other_disks_are_left_alone(dumpbed_run, disk):
    target = 2 if disks.get(disk).on_hba else 0
    result = dumpbed_run(disk=disk, target=target, other_disks=2)
    assert_complete(result)
    assert "2 other disk(s) untouched" in result.check("canary")["detail"]


@pytest.mark.parametrize("disk", DISK_KINDS)
def test_crash_during_runtime_io(dumpbed_run, disk):
    """The guest's interrupt-driven runtime I/O (dumpdev_runtime_io) in flight at the crash."""
    result = dumpbed_run(disk=disk, workload=True)
    assert_complete(result)
    writes = result.check("write-sizes")["detail"]
    before = int(writes.split("; ")[-1].split()[0])
    assert before > 0, writes  # runtime writes reached the disk before the crash


@pytest.mark.parametrize("disk", DISK_KINDS)
def test_the_dump_restarts_on_a_secondary_of_this_kind(dumpbed_run, disk):
    primary = next(k for k in DISK_KINDS if k != disk)
    result = dumpbed_run(disk=primary, memory="32M", secondary=disk, faults=["eio-at=20"])
    assert_complete(result)
    assert {d["role"]: d["generation"] for d in result.report["devices"]} == {"primary": 1, "secondary": 2}

# `make test` takes one crash kind that is not an NMI over each NIC (the watchdog's hang: its
# dump starts from a stuck CPU; the page fault: from an exception); `make matrix` every kind.
_CRASHES_OVER_NICS = list(profiles.DUMPBED.crashes) if FULL else ["hang", "page-fault"]


@pytest.mark.matrix
@pytest.mark.parametrize("disk,crash", [pytest.param(d, c, id=f"{d}-{c}") for i, d in enumerate(NIC_KINDS)
                                        for j, c in enumerate(_CRASHES_OVER_NICS) if FULL or i == j])
def test_every_crash_kind_dumps_over_the_network(dumpbed_run, disk, crash):
    result = dumpbed_run(disk=disk, crash=crash, memory="32M", accel="tcg" if not FULL else "auto")
    assert_complete(result)
    assert result.check("acks")["ok"] and result.check("crash-record")["ok"]
