"""The checks of a Linux dump that read the vmcore (harness/dumpbed/oracles/vmcore_checks.py):
each passes on a right vmcore and fails on one made wrong."""
from __future__ import annotations

import io

from test_vmcore_writer import PAGE, elf_file, kdump_file, printk_memory

from dumpbed.oracles import vmcore_checks as vc
from dumpbed.reader import vmcore

PANIC = "Kernel panic - not syncing: NMI: Not continuing"


def _kdump(pages, **kw):
    return vmcore.open(io.BytesIO(bytes(kdump_file(pages, **kw).data)))


def test_vmcore_is_held_to_the_runs_expectation():
    core = _kdump({pfn: bytes([pfn]) * PAGE for pfn in range(1, 9)})
    assert vc.check_vmcore(core, "complete").ok
    c = vc.check_vmcore(_kdump({1: bytes(PAGE)}, incomplete=True), "complete")
    assert not c.ok and "reads partial" in c.detail and "must end with a complete dump" in c.detail
    assert vc.check_vmcore(_kdump({1: bytes(PAGE)}, incomplete=True), "partial").ok
    # A run a fault cut short (oracles/vmcore_run.py cut_readings): the reader's partial or corrupt
    # is the cut dump; a vmcore that reads complete after the cut is not.
    cut = ("partial", "corrupt")
    assert vc.check_vmcore(_kdump({1: bytes(PAGE)}, incomplete=True), "partial", allowed=cut).ok
    k = kdump_file({pfn: bytes([pfn]) * PAGE for pfn in range(1, 9)})
    k.data[k.desc_at + 24 * 4:k.desc_at + 24 * 8] = bytes(range(96))  # descriptors past a cut: old bytes
    garbage = vmcore.open(io.BytesIO(bytes(k.data)))
    assert garbage.status == "corrupt" and vc.check_vmcore(garbage, "partial", allowed=cut).ok
    assert not vc.check_vmcore(garbage, "partial").ok  # not a cut run: corrupt is corrupt
    c = vc.check_vmcore(core, "partial", allowed=cut)
    assert not c.ok and "reads complete" in c.detail


def test_coverage_of_the_first_kernels_ram_but_the_reservation():
    ram = [(0, 16 * PAGE), (32 * PAGE, 48 * PAGE)]
    present = set(range(0, 16)) | set(range(32, 48))
    core = _kdump({1: bytes(PAGE)}, present=present - set(range(40, 44)), max_mapnr=48)
    assert vc.check_coverage(core, ram, [(40 * PAGE, 44 * PAGE)]).ok  # the capture kernel's own
    c = vc.check_coverage(core, ram, [])
    assert not c.ok and "4 pages of the first kernel's RAM are not described" in c.detail and "0x28000" in c.detail
    c = vc.check_coverage(_kdump({1: bytes(PAGE)}, present=present | {20}, max_mapnr=48), ram, [])
    assert not c.ok and "describes 1 pages outside the guest's RAM, e.g. 0x14000" in c.detail


def test_coverage_of_an_elf_vmcore_counts_its_loads_whole():
    ram = [(0, 8 * PAGE)]
    core = vmcore.open(io.BytesIO(elf_file([(0, bytes(4 * PAGE), 8 * PAGE)])))  # filesz < memsz: still described
    assert vc.check_coverage(core, ram, []).ok
    core = vmcore.open(io.BytesIO(elf_file([(0, bytes(4 * PAGE), 6 * PAGE)])))
    assert not vc.check_coverage(core, ram, []).ok


def test_the_kernel_log_ends_with_the_panic():
    mem, vi = printk_memory([f"line {i}" for i in range(20)] + [PANIC, "Kernel Offset: disabled"])
    core = _kdump(mem.frozen(), vmcoreinfo=vi, max_mapnr=0x400, phys_base=0x200000)
    c = vc.check_dmesg(core, None)
    assert c.ok and "1 record(s) after it" in c.detail, c.detail
    assert vc.check_dmesg(core, PANIC).ok
    c = vc.check_dmesg(core, "Kernel panic - not syncing: sysrq triggered crash")
    assert not c.ok and "is not the vmcore's" in c.detail
    mem, vi = printk_memory([f"line {i}" for i in range(20)])
    c = vc.check_dmesg(_kdump(mem.frozen(), vmcoreinfo=vi, max_mapnr=0x400, phys_base=0x200000), None)
    assert not c.ok and "no 'Kernel panic - not syncing'" in c.detail and "'line 19'" in c.detail
    c = vc.check_dmesg(_kdump({1: bytes(PAGE)}), None)  # no VMCOREINFO for the ring
    assert not c.ok and "cannot be read" in c.detail
