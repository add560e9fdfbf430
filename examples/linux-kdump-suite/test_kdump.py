"""A distribution's kdump, tested with dumpbed's pytest plugin (docs/testing-your-kdump.md).

Nothing here imports dumpbed's internals. With the plugin's --dumpbed-profile linux-kdump every
run boots the linux-kdump guest: dumpbed's own image (Debian's kernel, kexec-tools and
makedumpfile), or yours with --dumpbed-kernel/--dumpbed-initrd, as long as its initramfs keeps
docs/linux-kdump.md's contract. Run it with

    pytest examples/linux-kdump-suite --dumpbed-profile linux-kdump --dumpbed-keep failed \
        --junitxml=kdump.xml

Each run is judged against the machine's memory at the crash: the vmcore's pattern pages byte
for byte with the snapshot's, its coverage of RAM, its kernel log, the device's own logs.
"""
import pytest

# 1 GiB guests: crashkernel=128M comes out of them, and a 64 MiB pattern goes in.
pytestmark = pytest.mark.dumpbed(memory="1G")


@pytest.mark.dumpbed_matrix(disks=["virtio-blk", "virtio-scsi"], crashes=["nmi", "sysrq-c", "panic"])
def test_the_vmcore_holds_memory_as_it_was(dumpbed_result):
    dumpbed_result.assert_passed()
    assert dumpbed_result.dump_status == "complete"


@pytest.mark.parametrize("words", [["dumpbed.compress=zlib"], ["dumpbed.compress=none"], ["dumpbed.format=elf"]])
def test_every_format_makedumpfile_writes(dumpbed_run, words):
    dumpbed_run(disk="virtio-blk", crash="nmi", guest_args=words).assert_passed()


def test_a_full_dump_partition_is_a_partial_dump_and_a_failed_done(dumpbed_run):
    result = dumpbed_run(disk="virtio-blk", crash="nmi", fault="enospc")
    result.assert_passed()  # the run ends as it must: the dump cut short, makedumpfile failing
    assert result.dump_status == "partial"


def test_the_capture_kernel_survives_a_watchdog_hang(dumpbed_run):
    dumpbed_run(disk="virtio-scsi", crash="hang").assert_passed()
