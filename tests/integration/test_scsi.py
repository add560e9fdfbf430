"""SCSI disks: sd + scsi_poll on every HBA kind, with the same oracles: what only SCSI has
(WRITE(16) past LBA 2^32, a stopped unit, 32-bit DMA). The scenarios every disk kind runs are
in test_every_disk_kind.py."""
from __future__ import annotations

import pytest

from dumpbed.oracles import validate
from dumpbed.run import Scenario, run_and_validate
from dumpbed.scenario import disks
from tests.integration.conftest import accel_params, matrix_only
from tests.support.reports import assert_passed

MIB = 1 << 20
HBAS = [name for name, kind in disks.DISKS.items() if kind.on_hba]


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


@pytest.mark.parametrize("hba", HBAS)
def test_write16_beyond_lba_2_32(tmp_path, guest_kernel, hba):
    out = tmp_path / "run"
    _, report = run_and_validate(Scenario(out_dir=out, disk=hba, memory_bytes=64 * MIB, accel="auto",
                                          disk_size=3 << 40))
    assert_passed(report)
    assert report["dump"]["partition_offset"] // 512 >= 1 << 32
    assert " command 138 " in (out / "qemu-trace.log").read_text()  # WRITE(16) reached the disk


@pytest.mark.parametrize("hba", HBAS)
def test_stopped_disk_is_started_by_the_dump(tmp_path, guest_kernel, hba):
    out = tmp_path / "run"
    _, report = run_and_validate(Scenario(out_dir=out, disk=hba, memory_bytes=64 * MIB, accel="auto",
                                          stop_disk=True))
    assert_passed(report)
    trace = (out / "qemu-trace.log").read_text()
    assert " command 27 " in trace  # START STOP UNIT (0x1b): stopped before the crash, started by the dump


def test_lsi_dumps_memory_above_4g_through_a_bounce_buffer(tmp_path, guest_kernel):
    """32 of the guest's 96 MiB lie above 4 GiB (QEMU's max-ram-below-4g), out of the LSI's
    32-bit DMA reach."""
    _, report = run_and_validate(Scenario(out_dir=tmp_path / "run", disk="lsi", memory_bytes=96 * MIB,
                                          ram_below_4g=64 * MIB, accel="auto"))
    assert_passed(report)
    assert any(a["phys_addr"] >= 4 << 30 for a in report["dump"]["areas"])


@pytest.mark.matrix
@matrix_only
def test_lsi_dumps_a_5_gib_guest(tmp_path, guest_kernel):
    """QEMU's own split (3 GiB below 4 GiB, 2 above): a dump past 4 GiB of body offsets."""
    _, report = run_and_validate(Scenario(out_dir=tmp_path / "run", disk="lsi", memory_bytes=5 << 30,
                                          accel="auto"))
    assert_passed(report)
    assert any(a["phys_addr"] >= 4 << 30 for a in report["dump"]["areas"])


def test_a_damaged_scsi_dump_fails(tmp_path, guest_kernel):
    out = tmp_path / "run"
    _, report = run_and_validate(Scenario(out_dir=out, disk="virtio-scsi", memory_bytes=64 * MIB, accel="auto"))
    assert_passed(report)
    offset = report["dump"]["partition_offset"] + 8 * MIB
    with open(out / "dump.img", "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x40]))
    v = validate.validate_run(out)
    assert not v.ok and "chunk-crc" in v.failed


@pytest.mark.parametrize("accel", accel_params())
@pytest.mark.parametrize("disk", ["virtio-blk", "virtio-scsi"])
def test_no_interrupts_fails_when_the_guest_leaves_them_on(tmp_path, guest_kernel, disk, accel):
    """testfault=irq-on: the guest dumps with IF=1 and its rings' interrupts on; the dump itself
    is complete, and only the no-interrupts oracle may object."""
    _, report = run_and_validate(Scenario(out_dir=tmp_path / "run", disk=disk, memory_bytes=64 * MIB,
                                          accel=accel, guest_args=["testfault=irq-on"]))
    assert report["dump"]["status"] == "complete"
    assert report["verdict"] == "fail"
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert failed == {"no-interrupts"}, report["checks"]
    assert "RFLAGS.IF was 1" in check(report, "no-interrupts")["detail"]
