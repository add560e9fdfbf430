"""Every disk kind (dumpbed/scenario/disks.py) through the same scenarios, with every oracle: a
new entry joins them by itself. Scenarios of one bus (SCSI's WRITE(16) and START STOP UNIT,
virtio-blk's firmwares and sizes) live in test_scsi.py and test_virtio_blk_nmi.py."""
from __future__ import annotations

import pytest

from dumpbed.run import Scenario, run_and_validate
from dumpbed.scenario import disks
from tests.integration.conftest import accel_params
from tests.support.reports import assert_passed

MIB = 1 << 20
KINDS = list(disks.DISKS)


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


@pytest.mark.parametrize("accel", accel_params())
@pytest.mark.parametrize("disk", KINDS)
def test_nmi_dump(tmp_path, guest_kernel, disk, accel):
    _, report = run_and_validate(Scenario(out_dir=tmp_path / "run", disk=disk, memory_bytes=64 * MIB,
                                          accel=accel))
    assert_passed(report)
    assert report["accel"] == accel
    assert {"no-interrupts", "write-order", "consistency", "runtime-io"} <= {c["name"] for c in report["checks"]}


@pytest.mark.parametrize("disk", KINDS)
def test_4096_byte_blocks(tmp_path, guest_kernel, disk):
    _, report = run_and_validate(Scenario(out_dir=tmp_path / "run", disk=disk, memory_bytes=64 * MIB,
                                          accel="auto", block_size=4096))
    assert_passed(report)
    assert report["dump"]["block_size"] == 4096


@pytest.mark.parametrize("disk", KINDS)
def test_other_disks_are_left_alone(tmp_path, guest_kernel, disk):
    target = 2 if disks.get(disk).on_hba else 0
    _, report = run_and_validate(Scenario(out_dir=tmp_path / "run", disk=disk, memory_bytes=64 * MIB,
                                          accel="auto", target=target, other_disks=2))
    assert_passed(report)
    assert "2 other disk(s) untouched" in check(report, "canary")["detail"]


@pytest.mark.parametrize("disk", KINDS)
def test_crash_during_runtime_io(tmp_path, guest_kernel, disk):
    """The guest's interrupt-driven runtime I/O (dumpdev_runtime_io) in flight at the crash."""
    _, report = run_and_validate(Scenario(out_dir=tmp_path / "run", disk=disk, memory_bytes=64 * MIB,
                                          accel="auto", workload=True))
    assert_passed(report)
    writes = check(report, "write-sizes")["detail"]
    before = int(writes.split("; ")[-1].split()[0])
    assert before > 0, writes  # runtime writes reached the disk before the crash


@pytest.mark.parametrize("disk", KINDS)
def test_the_dump_restarts_on_a_secondary_of_this_kind(tmp_path, guest_kernel, disk):
    primary = next(k for k in KINDS if k != disk)
    _, report = run_and_validate(Scenario(out_dir=tmp_path / "run", disk=primary, memory_bytes=32 * MIB,
                                          accel="auto", secondary=disk, faults=["eio-at=20"]))
    assert_passed(report)
    assert {d["role"]: d["generation"] for d in report["devices"]} == {"primary": 1, "secondary": 2}
