"""Secondary dump devices in the topology, and the fault specs (no QEMU)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import faults
from harness.errors import DumpbedError
from harness.topology import DiskSpec, Topology


def disk(name: str, target: int = 0) -> DiskSpec:
    return DiskSpec(Path(f"/tmp/{name}.img"), name, target=target)


@pytest.mark.parametrize("primary,secondary,dumpdev2,hbas", [
    ("virtio-blk", "virtio-blk", "virtio-blk:1", 0),
    ("virtio-blk", "lsi", "lsi:0:1:0", 1),
    ("lsi", "lsi", "lsi:0:1:0", 1),  # same kind: the same HBA
    ("virtio-scsi", "lsi", "lsi:0:1:0", 2),
    ("lsi", "virtio-blk", "virtio-blk:0", 1),
])
def test_secondary_device_names_and_controllers(primary, secondary, dumpdev2, hbas):
    t = Topology(primary, disk("disk0"), [], secondary, disk("sec", target=1))
    assert t.dumpdev2() == dumpdev2
    devices = [a for a in t.qemu_args() if a.startswith(("lsi53c895a", "virtio-scsi-pci"))]
    assert len(devices) == hbas
    assert t.to_json()["secondary"]["kind"] == secondary


def test_secondary_virtio_blk_comes_after_the_other_disks():
    t = Topology("virtio-blk", disk("disk0"), [disk("disk1"), disk("disk2")], "virtio-blk", disk("sec"))
    assert t.dumpdev2() == "virtio-blk:3"
    nodes = [json.loads(a)["node-name"] for a in t.qemu_args() if a.startswith("{")]
    assert nodes == ["disk0", "disk1", "disk2", "sec"]


def test_no_secondary():
    t = Topology("virtio-blk", disk("disk0"))
    assert t.dumpdev2() is None and "secondary" not in t.to_json()


def test_secondary_on_the_same_hba_needs_its_own_target():
    with pytest.raises(DumpbedError, match="two disks at target 0"):
        Topology("lsi", disk("disk0"), [], "lsi", disk("sec", target=0))


def test_unknown_secondary_kind():
    with pytest.raises(DumpbedError, match="unknown disk type 'floppy'"):
        Topology("lsi", disk("disk0"), [], "floppy", disk("sec"))


def test_eio_at_builds_a_blkdebug_state_machine():
    fault = faults.parse("eio-at=3")
    options = faults.blkdebug_options(fault)
    assert [r["state"] for r in options["set-state"]] == [1, 2]
    assert options["inject-error"] == [{"event": "write_aio", "state": 3, "errno": 5}]
    assert "set-state" not in faults.blkdebug_options(faults.parse("eio-at=1"))
    t = Topology("virtio-blk", DiskSpec(Path("/tmp/d.img"), "disk0", blkdebug=options))
    node = json.loads(next(a for a in t.qemu_args() if a.startswith("{")))
    assert node["file"]["driver"] == "blkdebug" and node["file"]["image"]["driver"] == "file"


@pytest.mark.parametrize("spec,message", [
    ("eio-at", "expected eio-at=N"), ("eio-at=0", "expected eio-at=N"), ("eio-at=x", "expected eio-at=N"),
    ("eio-at=100001", "expected eio-at=N"), ("melt=1", "unknown fault 'melt'"),
])
def test_bad_fault_specs_are_refused(spec, message):
    with pytest.raises(DumpbedError, match=message):
        faults.parse(spec)
