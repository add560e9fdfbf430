"""The ELF vmcore reader (harness/dumpbed/reader/vmcore/elf_vmcore.py): PT_LOADs to pages,
p_filesz < p_memsz, notes; damage classified, never raised."""
from __future__ import annotations

import io
import struct

import pytest
from elftools.elf.elffile import ELFFile

from dumpbed.reader import vmcore

from test_vmcore_writer import PAGE, elf_file, pattern

SEGS = [(0, pattern(0) + pattern(1) + pattern(2), 5 * PAGE), (0x10000, pattern(16) + pattern(17), 2 * PAGE)]
PAGES = {0: pattern(0), 1: pattern(1), 2: pattern(2), 16: pattern(16), 17: pattern(17)}


def _open(data, **kw):
    return vmcore.open(io.BytesIO(bytes(data)), **kw)


def test_two_pt_loads_read_back_page_for_page():
    core = _open(elf_file(SEGS, cpus=2), verify=True)
    assert core.status == "complete" and core.format == "elf", core.reason
    assert "2 pages excluded" in core.reason
    assert core.dumped_ranges() == [(0, 3), (16, 18)]
    assert dict(core.pages()) == PAGES
    assert core.read_page(3) is None and core.read_page(4) is None  # in p_memsz, not in the file
    assert core.vmcoreinfo["OSRELEASE"] == "6.1.0" and len(core.cpus) == 2
    assert [s.paddr for s in core.segments] == [0, 0x10000] and core.header.machine == "x86_64"
    assert core.read_phys(PAGE - 3, 6) == pattern(0)[-3:] + pattern(1)[:3]


def test_what_pyelftools_sees_is_what_the_reader_reads(tmp_path):
    path = tmp_path / "core"
    path.write_bytes(elf_file(SEGS))
    core = vmcore.open(path)
    with open(path, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] != "PT_LOAD":
                continue
            data = seg.data()
            for k in range(len(data) // PAGE):
                assert core.read_page(seg["p_paddr"] // PAGE + k) == data[k * PAGE:(k + 1) * PAGE]
    core.close()


def test_overlapping_segments_and_partial_pages():
    """/proc/vmcore repeats the kernel text in a segment of its own; RAM ranges need not end on
    a page boundary (the rest of that page reads as zero)."""
    segs = [(0, pattern(0) + pattern(1), 2 * PAGE), (PAGE, pattern(1), PAGE), (0x5000, b"x" * 100, 100)]
    core = _open(elf_file(segs))
    assert core.status == "complete", core.reason
    assert core.read_page(1) == pattern(1) and core.read_page(5) == b"x" * 100 + bytes(PAGE - 100)


def test_damage():
    good = elf_file(SEGS)
    cases = {
        "cut in the last segment": (good[:-100], "partial"),
        "cut in the ELF header": (good[:40], "corrupt"),
        "cut in the program headers": (good[:100], "corrupt"),
    }
    for name, (data, want) in cases.items():
        core = _open(data, verify=True)
        assert core.status == want, (name, core.reason)
    core = _open(good[:-100])
    assert dict(core.pages()) == {p: v for p, v in PAGES.items() if p != 17}


def _patched(fmt, at, value, data=None):
    d = bytearray(data or elf_file(SEGS))
    struct.pack_into(fmt, d, at, value)
    return d


PH1 = 64 + 56  # the first PT_LOAD's program header


@pytest.mark.parametrize("name, fmt, at, value, want", [
    ("ELF32", "B", 4, 1, "unsupported"),
    ("big-endian", "B", 5, 2, "unsupported"),
    ("bad class", "B", 4, 9, "corrupt"),
    ("not a core", "<H", 16, 2, "unsupported"),
    ("phentsize", "<H", 54, 32, "corrupt"),
    ("phnum 0", "<H", 56, 0, "corrupt"),
    ("phnum past the end", "<H", 56, 5000, "corrupt"),
    ("PN_XNUM without sections", "<H", 56, 0xFFFF, "corrupt"),
    ("incomplete flag", "<I", 48, 1, "partial"),
    ("filesz over memsz", "<Q", PH1 + 32, 10 * PAGE, "corrupt"),
    ("a segment far past the end", "<Q", PH1 + 8, 1 << 40, "corrupt"),
    ("segments overlap in the file", "<Q", PH1 + 56 + 8, 0x1000, "corrupt"),
    ("wrapping", "<Q", PH1 + 16 + 8, (1 << 64) - PAGE, "corrupt"),
    ("note past the end", "<Q", 64 + 8, 1 << 40, "corrupt"),
])
def test_absurd_fields(name, fmt, at, value, want):
    core = _open(_patched(fmt, at, value), verify=True)
    assert core.status == want, (name, core.reason)
    assert core.reason


def test_bad_pagesize_in_vmcoreinfo_is_corrupt():
    assert _open(elf_file(SEGS, vmcoreinfo="PAGESIZE=1000\n")).status == "corrupt"
    assert _open(elf_file(SEGS, vmcoreinfo="not key value\n")).status == "corrupt"
    assert _open(elf_file(SEGS, vmcoreinfo=None)).status == "complete"
