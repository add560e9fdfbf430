"""The kernel log in a vmcore (harness/dumpbed/reader/vmcore/dmesg.py): a Linux 6.1-shaped
printk ringbuffer in synthetic memory, read through VMCOREINFO, checked against the host's
makedumpfile --dump-dmesg where it is installed."""
from __future__ import annotations

import io

import pytest

from dumpbed.reader import vmcore
from dumpbed.reader.vmcore.dmesg import Translator, makedumpfile_dmesg, read_dmesg

from test_vmcore_writer import needs_makedumpfile, PAGE, elf_file, kdump_file, printk_memory

MESSAGES = [f"message {i}: " + "x" * (i * 7 % 50) for i in range(40)] + ["Kernel panic - not syncing: sysrq triggered"]


def _kdump(mem, vi, **kw):
    return vmcore.open(io.BytesIO(bytes(kdump_file(mem.frozen(), vmcoreinfo=vi, max_mapnr=0x400,
                                                   phys_base=0x200000, **kw).data)))


@pytest.mark.parametrize("direct_map", [True, False])
def test_the_log_ends_with_the_panic(direct_map):
    mem, vi = printk_memory(MESSAGES, data_in_direct_map=direct_map)
    d = read_dmesg(_kdump(mem, vi))
    assert d.ok, d.problem
    assert d.last_lines(1) == ["Kernel panic - not syncing: sysrq triggered"]
    texts = [r.text for r in d.records]
    assert texts == MESSAGES[-len(texts):] and len(texts) == 16  # a ring of 16 descriptors
    assert [r.seq for r in d.records] == list(range(len(MESSAGES) - 16, len(MESSAGES)))
    assert d.records[-1].line() == "[    0.041000] Kernel panic - not syncing: sysrq triggered"


def test_wrapped_data_blocks():
    """Records whose text did not fit before the data ring's end start at its beginning."""
    mem, vi = printk_memory(MESSAGES, size_bits=9, count_bits=5)
    d = read_dmesg(_kdump(mem, vi))
    assert d.ok and d.records[-1].text == MESSAGES[-1]
    assert [r.text for r in d.records] == MESSAGES[-len(d.records):]


def test_in_an_elf_vmcore():
    mem, vi = printk_memory(MESSAGES)
    pages = mem.frozen()
    top = max(pages) + 1
    core = vmcore.open(io.BytesIO(elf_file([(0, b"".join(pages.get(p, bytes(PAGE)) for p in range(top)), top * PAGE)],
                                           vmcoreinfo=vi)))
    assert read_dmesg(core).last_lines(1) == [MESSAGES[-1]]


def test_what_is_missing_is_a_problem_not_an_exception():
    mem, vi = printk_memory(MESSAGES)
    assert "no VMCOREINFO" in read_dmesg(_kdump(mem, None)).problem
    assert "SYMBOL(prb)" in read_dmesg(_kdump(mem, "OSRELEASE=6.1\n")).problem
    assert "log_buf" in read_dmesg(_kdump(mem, "SYMBOL(log_buf)=ffffffff81000000\n")).problem
    gone = vi.replace("OFFSET(printk_info.text_len)=16\n", "")
    assert "printk_info.text_len" in read_dmesg(_kdump(mem, gone)).problem
    # the ring's text pages left out of the dump
    pages = {p: v for p, v in mem.frozen().items() if p != 0x100}
    core = vmcore.open(io.BytesIO(bytes(kdump_file(pages, vmcoreinfo=vi, max_mapnr=0x400).data)))
    assert "not in the vmcore" in read_dmesg(core).problem
    # absurd ring sizes
    bad = vi.replace("OFFSET(prb_data_ring.size_bits)=0", "OFFSET(prb_data_ring.size_bits)=8")
    d = read_dmesg(_kdump(mem, bad))
    assert d.problem


def test_the_same_log_as_makedumpfile(tmp_path):
    needs_makedumpfile()
    mem, vi = printk_memory(MESSAGES, size_bits=9, count_bits=5)
    path = tmp_path / "dump"
    path.write_bytes(kdump_file(mem.frozen(), vmcoreinfo=vi, max_mapnr=0x400, phys_base=0x200000).data)
    theirs = makedumpfile_dmesg(path)
    assert theirs.ok, theirs.problem
    ours = read_dmesg(vmcore.open(path))
    # makedumpfile 1.7.2 prints the caller id after the time ("[    0.041000] [  C0] text")
    assert [ln.rsplit("] ", 1)[-1] for ln in (r.text for r in theirs.records)] == [r.text for r in ours.records]
    assert [r.text.split("]", 1)[0] + "]" for r in theirs.records] == [r.line().split("]", 1)[0] + "]"
                                                                        for r in ours.records]


def test_the_page_table_walk_agrees_with_phys_base():
    """The kernel image is mapped by a 2 MiB page in the synthetic page tables: walking them
    gives what phys_base gives; the direct map goes through 4 KiB pages."""
    mem, vi = printk_memory(MESSAGES)
    t = Translator(_kdump(mem, vi))
    for v in (0xFFFFFFFF80001000, 0xFFFFFFFF80013FF8, 0xFFFFFFFF801FFFFF):
        assert t.walk(v) == t.vtop(v) == v - 0xFFFFFFFF80000000 + 0x200000
    assert t.vtop(0xFFFF888000100010) == 0x100010


def test_a_phys_base_below_the_link_address_wraps_to_64_bits():
    """With KASLR a kernel may sit lower in physical memory than its link address: phys_base is
    then negative (VMCOREINFO's NUMBER(phys_base) prints a signed long), and the kernel image's
    addresses wrap to 64 bits. Found on Debian's 6.1 under dumpbed: the log at 0xffffffffbda643e0
    was looked for at 0x1000000000fc643e0."""
    mem, vi = printk_memory(MESSAGES)
    t = Translator(_kdump(mem, vi))
    t.phys_base = -0x2DE00000 & ((1 << 64) - 1)
    assert t.vtop(0xFFFFFFFFBDA643E0) == 0x0FC643E0
