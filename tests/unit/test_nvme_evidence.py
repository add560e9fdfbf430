"""NVMe's trace vocabulary (QEMU's hw/nvme): the command log, the write log and the interrupt
sources read it as they read virtio-blk and SCSI. Lines as QEMU 7.2 writes them."""
from __future__ import annotations

from dumpbed.capture import cmdlog, writelog
from dumpbed.capture.irqwatch import InterruptSources
from dumpbed.oracles.write_sizes import _attribute
from dumpbed.scenario import disks

T = 1_800_000_000.0


def line(dt: float, text: str) -> str:
    return f"1@{T + dt:.6f}:{text}"


def dump_write(dt, cid, nsid, lba, count, status=0):
    return [line(dt, f"pci_nvme_io_cmd cid {cid} nsid 0x{nsid:x} sqid 2 opc 0x1 opname 'NVME_NVM_CMD_WRITE'"),
            line(dt, f"pci_nvme_write cid {cid} opname 'NVME_NVM_CMD_WRITE' nsid {nsid} nlb {count // 512} "
                     f"count {count} lba 0x{lba:x}"),
            line(dt + 0.001, f"pci_nvme_enqueue_req_completion cid {cid} cqid 2 dw0 0x0 dw1 0x0 status 0x{status:x}")]


SETUP = [line(0, "pci_nvme_create_sq create submission queue, addr=0x1000, sqid=2, cqid=2, qsize=15, qflags=1")]


def test_a_write_and_a_flush_are_commands_with_place_length_and_status():
    flush = [line(0.1, "pci_nvme_io_cmd cid 7 nsid 0x1 sqid 2 opc 0x0 opname 'NVME_NVM_CMD_FLUSH'"),
             line(0.2, "pci_nvme_enqueue_req_completion cid 7 cqid 2 dw0 0x0 dw1 0x0 status 0x0")]
    log = cmdlog.parse(SETUP + dump_write(0.05, 6, 1, 0x800, 8192, status=0x4) + flush, 512)
    write, fl = log.commands
    assert (write.disk, write.kind, write.offset, write.length, write.status) == ("nvme:1", "write", 0x800 * 512,
                                                                                  8192, 0x4)
    assert write.completed == T + 0.051
    assert (fl.kind, fl.completed, fl.status) == ("flush", T + 0.2, 0)


def test_a_controller_reset_ends_commands_and_a_command_id_is_per_queue():
    lines = SETUP + [line(0.1, "pci_nvme_io_cmd cid 1 nsid 0x1 sqid 1 opc 0x2 opname 'NVME_NVM_CMD_READ'"),
                     line(0.2, "pci_nvme_mmio_stopped cleared controller enable bit"),
                     # an admin completion with the same cid is not the read's
                     line(0.3, "pci_nvme_enqueue_req_completion cid 1 cqid 0 dw0 0x0 dw1 0x0 status 0x0")]
    log = cmdlog.parse(lines, 512)
    assert log.commands[0].completed is None
    assert [(e.disk, e.ends_commands) for e in log.events] == [(cmdlog.NVME_ANY, True)]


def test_writes_are_told_apart_by_namespace():
    parser = writelog.WriteParser(disks.NVME_BUS, 4096)
    writes = [w for w in map(parser.line, dump_write(0, 1, 2, 0x10, 4096) + dump_write(1, 2, 3, 0x20, 4096)) if w]
    assert [(w.vdev, w.offset, w.length, w.bus) for w in writes] == [("2", 0x10 * 4096, 4096, disks.NVME_BUS),
                                                                    ("3", 0x20 * 4096, 4096, disks.NVME_BUS)]

    class Target:
        def __init__(self, role):
            self.role, self.bus = role, disks.NVME_BUS
    problems: list[str] = []
    roles = _attribute(writes + writes[:1], [Target("primary"), Target("secondary")], problems)
    assert not problems and [len(roles["primary"]), len(roles["secondary"])] == [2, 1]
    problems = []
    _attribute(writes, [Target("primary")], problems)
    assert problems == [f"NVME_NVM_CMD_WRITE of 4096 bytes at disk offset 0x{0x20 * 4096:x} went to a nvme disk "
                        "that is not a dump device"]


def test_a_pin_interrupt_counts_only_where_intms_leaves_its_vector_unmasked():
    s = InterruptSources()
    assert not s.interrupt("pci_nvme_create_cq", "create completion queue, addr=0x2000, cqid=1, vector=0, "
                                                 "qsize=15, qflags=3, ien=1")
    s.interrupt("pci_nvme_enqueue_req_completion", "cid 1 cqid 1 dw0 0x0 dw1 0x0 status 0x0")
    assert s.interrupt("pci_nvme_irq_pin", "pulsing IRQ pin")
    s.interrupt("pci_nvme_mmio_intm_set", "wrote MMIO, interrupt mask set, data=0x1, new_mask=0x1")
    assert not s.interrupt("pci_nvme_irq_pin", "pulsing IRQ pin")
    s.interrupt("pci_nvme_mmio_stopped", "cleared controller enable bit")  # a reset clears INTMS
    s.interrupt("pci_nvme_enqueue_req_completion", "cid 1 cqid 0 dw0 0x0 dw1 0x0 status 0x0")
    assert s.interrupt("pci_nvme_irq_pin", "pulsing IRQ pin")
    assert s.interrupt("pci_nvme_irq_msix", "raising MSI-X IRQ vector 0")
    assert not s.interrupt("lsi_update_irq", "Update IRQ level 0 dstat 0x00 sist 0x000x00")
