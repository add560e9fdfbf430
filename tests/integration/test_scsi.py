"""SCSI disks: sd + scsi_poll on every HBA kind, with the same oracles: what only SCSI has
(WRITE(16) past LBA 2^32, a stopped unit, 32-bit DMA). The scenarios every disk kind runs are
in test_every_disk_kind.py."""
from __future__ import annotations

import pytest

from dumpbed.oracles import validate
from dumpbed.scenario import disks
from tests.integration.conftest import accel_params, matrix_only
from tests.support.reports import assert_complete

MIB = 1 << 20
HBAS = [name for name, kind in disks.DISKS.items() if kind.on_hba]

# The dumpbed pytest plugin's marker: dumpbed_run's defaults in this module.
pytestmark = pytest.mark.dumpbed(memory="64M")


@pytest.mark.parametrize("hba", HBAS)
def test_write16_beyond_lba_2_32(dumpbed_run, hba):
    result = dumpbed_run(disk=hba, disk_size=3 << 40)
    assert_complete(result)
    assert result.report["dump"]["partition_offset"] // 512 >= 1 << 32
    assert " command 138 " in (result.run_dir / "qemu-trace.log").read_text()  # WRITE(16) reached the disk


@pytest.mark.parametrize("hba", HBAS)
def test_stopped_disk_is_started_by_the_dump(dumpbed_run, hba):
    result = dumpbed_run(disk=hba, stop_disk=True)
    assert_complete(result)
    trace = (result.run_dir / "qemu-trace.log").read_text()
    assert " command 27 " in trace  # START STOP UNIT (0x1b): stopped before the crash, started by the dump


# DUMPQUERY's max_outstanding of a disk on each HBA: three writes in flight where the HBA has
# tran_poll (guest/scsi/hba.h), one at a time on the LSI, whose chip runs one command at a time.
OUTSTANDING = {"virtio-scsi": 3, "pvscsi": 3, "lsi": 1}


@pytest.mark.parametrize("hba", HBAS)
def test_writes_in_flight_on_each_hba(dumpbed_run, hba):
    """The guest's claim; write-order holds QEMU's command log to it."""
    result = dumpbed_run(disk=hba)
    assert_complete(result)
    said = f"DUMPBED QUIESCED device=primary outstanding={OUTSTANDING[hba]}"
    assert said in (result.run_dir / "result.log").read_text()


def test_lsi_dumps_memory_above_4g_through_a_bounce_buffer(dumpbed_run):
    """32 of the guest's 96 MiB lie above 4 GiB (QEMU's max-ram-below-4g), out of the LSI's
    32-bit DMA reach."""
    result = dumpbed_run(disk="lsi", memory="96M", ram_below_4g=64 * MIB)
    assert_complete(result)
    assert any(a["phys_addr"] >= 4 << 30 for a in result.report["dump"]["areas"])


@pytest.mark.matrix
@matrix_only
def test_lsi_dumps_a_5_gib_guest(dumpbed_run):
    """QEMU's own split (3 GiB below 4 GiB, 2 above): a dump past 4 GiB of body offsets."""
    result = dumpbed_run(disk="lsi", memory="5G")
    assert_complete(result)
    assert any(a["phys_addr"] >= 4 << 30 for a in result.report["dump"]["areas"])


def test_a_damaged_scsi_dump_fails(dumpbed_run):
    result = dumpbed_run(disk="virtio-scsi")
    assert_complete(result)
    out = result.run_dir  # its dump disk is damaged here and the run validated again
    offset = result.report["dump"]["partition_offset"] + 8 * MIB
    with open(out / "dump.img", "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x40]))
    v = validate.validate_run(out)
    assert not v.ok and "chunk-crc" in v.failed


@pytest.mark.parametrize("accel", accel_params())
@pytest.mark.parametrize("disk", ["virtio-blk", "virtio-scsi"])
def test_no_interrupts_fails_when_the_guest_leaves_them_on(dumpbed_run, disk, accel):
    """testfault=irq-on: the guest dumps with IF=1 and its rings' interrupts on; the dump itself
    is complete, and only the no-interrupts oracle may object."""
    result = dumpbed_run(disk=disk, accel=accel, guest_args=["testfault=irq-on"])
    assert result.dump_status == "complete"
    assert result.verdict == "fail"
    assert set(result.failed_check_names) == {"no-interrupts"}, result.report["checks"]
    assert "RFLAGS.IF was 1" in result.check("no-interrupts")["detail"]
