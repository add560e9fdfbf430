"""Every oracle shown failing on a guest with a deliberate bug of one class (`testfault=WORD`,
docs/guest-interface.md), and the report naming first the check earliest in the data flow.

Each bug is one a driver or writer author makes: never flushing, flushing before the write it
must cover completed, not waiting for the device, committing before what the commit vouches
for, rewriting what the leader on disk vouches for, leaving runtime commands in the device,
dumping the wrong bytes, leaving RAM out, losing the FPU state, misreporting a failure. The
same scenarios without the word pass (the good guest: tests/integration/test_faults.py and the
disk tests), so what fails here is the bug, not the scenario.
"""
from __future__ import annotations

import pytest

from dumpbed.oracles.validate import DATA_FLOW
from dumpbed.scenario import disks

# word, disk, other scenario settings, the checks that must fail (the first one first)
CASES = [
    ("no-flush", "virtio-blk", {}, ["write-order", "consistency"]),
    ("no-flush", "virtio-scsi", {}, ["write-order", "consistency"]),
    ("early-flush", "virtio-blk", {}, ["write-order"]),
    # A slow device, so the writes are still in flight when the guest moves on.
    ("no-wait", "virtio-blk", {"faults": ["slow=16"]}, ["write-order"]),
    # The same bug in a SCSI HBA's tran_poll: the body writes in flight are never waited for.
    ("no-wait", "virtio-scsi", {"faults": ["slow=16"]}, ["write-order"]),
    # Body writes that ride on the next doorbell, a slot write's: in flight together. On a
    # throttled disk always: QEMU takes a write posted while it is still busy without waiting
    # for the doorbell, and at full speed it was done before the slot write came in one of
    # seven runs here (a CI run, after the samples' small areas were gathered).
    ("async-batch", "virtio-blk", {"faults": ["slow=64"]}, ["write-order"]),
    ("leader-first", "virtio-blk", {}, ["write-order", "consistency"]),
    ("in-place", "virtio-blk", {}, ["write-order", "consistency"]),
    ("in-place", "lsi", {}, ["write-order", "consistency"]),
    # (Not on the LSI: QEMU's LSI model itself drops the held untagged command when the dump's
    # first command selects the same LUN, an overlapped command in SCSI's terms.)
    ("mask-only", "virtio-scsi", {"workload": True, "faults": ["hold-runtime"]}, ["runtime-io"]),
    ("stage-stuck", "virtio-blk", {}, ["content"]),
    # The compressor (compress=lz4): a frame that does not decode to its own raw CRC is the
    # reader's to find; a frame made from the wrong data with a CRC to match, the content oracle's.
    ("lz4-offset", "virtio-blk", {"compress": "lz4"}, ["format"]),
    ("lz4-stuck", "virtio-blk", {"compress": "lz4"}, ["content"]),
    ("skip-low", "virtio-blk", {}, ["completeness"]),
    ("fpu-clobber", "virtio-blk", {}, ["crash-record"]),
    ("wrong-report", "virtio-blk", {"faults": ["eio-at=30"]}, ["guest-result"]),
    ("wrong-report", "lsi", {"faults": ["eio-at=30"], "secondary": "virtio-blk"}, ["guest-result"]),
    ("irq-on", "virtio-scsi", {}, ["no-interrupts"]),
    # NVMe: the dump queue interrupting and INTMS clear, IF = 0: QEMU's pin events and the INTMS
    # the trace follows are the only evidence
    ("intr-unmasked", "nvme", {}, ["no-interrupts"]),
    ("no-flush", "nvme", {}, ["write-order", "consistency"]),
    # IF stays 0: only the adapter's own interrupt source (QEMU's pvscsi_update_irq_level) shows it.
    ("intr-unmasked", "pvscsi", {}, ["no-interrupts"]),
    # Network dumps: the NICs' own interrupt sources (virtio_notify, e1000e_irq_*), and the link's
    # frames for the netdump client's protocol (oracles/netlink.py)
    ("intr-unmasked", "e1000e", {}, ["no-interrupts"]),
    ("irq-on", "virtio-net", {}, ["no-interrupts"]),
    # ACKs held back by the link, so the guest's sends outrun them whatever the CPU's speed
    # A window of 2 that the bug makes 4, ACKs 10 ms away: the guest's sends outrun them on any CPU
    ("net-window", "virtio-net", {"faults": ["net-delay=5"], "memory": "16M", "guest_args": ["netwindow=2"]},
     ["acks"]),
    ("net-nopad", "e1000e", {}, ["write-sizes"]),
    ("net-no-finish", "virtio-net", {}, ["acks"]),
    ("no-flush", "e1000e", {}, ["write-order", "consistency"]),
]


# A network dump sends each frame with a VM exit under this box's nested KVM (~4 MiB/s; TCG is
# about 3x faster): the NIC cases run under TCG and at 16 MiB, which their bugs show as well
# (test_every_disk_kind dumps over both NICs under KVM).
NETWORK = {"accel": "tcg", "memory": "16M"}


@pytest.mark.dumpbed(memory="32M")
@pytest.mark.parametrize("word,disk,settings,failing", [
    pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in CASES])
def test_a_broken_guest_fails_the_oracle_for_its_bug(dumpbed_run, word, disk, settings, failing):
    settings = {**(NETWORK if disks.get(disk).network else {}), **settings}
    result = dumpbed_run(disk=disk, guest_args=[f"testfault={word}", *settings.pop("guest_args", [])], **settings)
    # fails unless the verdict is fail and each check named failed (the report's details if not)
    result.assert_failed(*failing)
    failed = result.failed_check_names
    # The root first: nothing earlier in the data flow fails than the first check named.
    assert failed[0] == min(failed, key=DATA_FLOW.index)
    details = {c.name: c.detail for c in result.failed_checks}
    assert result.report["first_failed"] == failed[0]
    assert DATA_FLOW.index(failed[0]) <= DATA_FLOW.index(failing[0]), details
    if word == "no-wait" and disk == "virtio-blk":
        # The throttle holds each write while the flush posted behind it passes (QEMU does not
        # throttle flushes), so some write was not durable when the guest relied on it. Whether
        # the DONE line also overtakes the last writes is a race in time: the DONE rule is shown
        # on doctored evidence (tests/unit/test_write_order.py).
        problems = result.check("write-order")["problems"]
        assert any("durable" in p for p in problems), problems
    if word == "no-wait" and disk == "virtio-scsi":
        # Only the posted body writes go unwaited: more of them pile up in the slow device than
        # the guest's DUMPQUERY said it would keep in flight.
        problems = result.check("write-order")["problems"]
        assert any("writes in flight at once, where the device's DUMPQUERY said it takes 3" in p
                   for p in problems), problems
    if word == "async-batch":
        problems = result.check("write-order")["problems"]
        assert any("was still in flight (only body writes overlap" in p for p in problems), problems
