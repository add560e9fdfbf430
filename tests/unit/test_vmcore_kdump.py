"""The kdump-compressed reader (harness/dumpbed/reader/vmcore/kdump_compressed.py) on files of
the tests' writer (test_vmcore_writer.py) and of the host's makedumpfile: read back page for
page, and every structural damage classified with a reason, never raised."""
from __future__ import annotations

import io
import struct
import subprocess

import numpy as np
import pytest

from dumpbed.reader import vmcore
from dumpbed.reader.vmcore import compression

from test_vmcore_writer import needs_makedumpfile, COMPRESSORS, PAGE, compress, elf_file, kdump_file, pattern, printk_memory

PAGES = {0: pattern(0), 1: bytes(PAGE), 2: pattern(2), 7: pattern(7), 8: pattern(8), 40: bytes(PAGE),
         41: bytes(range(256)) * 16, 63: pattern(63)}


def _open(data, **kw):
    return vmcore.open(io.BytesIO(bytes(data)), **kw)


def _same(core, pages):
    assert [int(p) for p in core.dumped_pfns()] == sorted(pages)
    for pfn, page in pages.items():
        assert core.read_page(pfn) == page, pfn
    assert dict(core.pages()) == pages


@pytest.mark.parametrize("compressor", ["zlib", "lzo", "snappy", "zstd", None])
def test_each_compressor_reads_back_page_for_page(compressor):
    k = kdump_file(PAGES, compressor=compressor, max_mapnr=100, present={70, 71}, cpus=3)
    core = _open(k.data, verify=True)
    assert core.status == "complete", core.reason
    assert core.format == "kdump-compressed" and core.compression == (compressor or "none")
    _same(core, PAGES)
    assert core.read_page(3) is None and core.read_page(70) is None and core.read_page(10**12) is None
    assert core.dumped_ranges() == [(0, 3), (7, 9), (40, 42), (63, 64)]
    assert [int(p) for p in core.present_pfns()] == sorted(set(PAGES) | {70, 71})
    assert core.vmcoreinfo == {"OSRELEASE": "6.1.0", "PAGESIZE": "4096"}
    assert len(core.cpus) == 3 and [c.pid for c in core.cpus] == [1, 2, 3]
    h, s = core.header, core.sub_header
    assert (h.header_version, h.block_size, h.release, h.machine, h.nr_cpus) == (6, PAGE, "6.1.0", "x86_64", 3)
    assert (s.max_mapnr_64, s.dump_level, s.split) == (100, 1, 0)
    d = core.descriptor(0)  # a compressible page is stored compressed
    assert d["flags"] == COMPRESSORS[compressor] and (d["size"] < PAGE) == bool(compressor)


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_header_versions(version):
    core = _open(kdump_file(PAGES, version=version, max_mapnr=64).data, verify=True)
    assert core.status == "complete", core.reason
    _same(core, PAGES)
    s = core.sub_header
    assert s.max_mapnr_64 == (64 if version >= 6 else 0)
    assert bool(core.vmcoreinfo) == (version >= 3) and bool(core.notes) == (version >= 4)


def test_a_window_of_a_bigger_file():
    k = kdump_file(PAGES)
    disk = b"\xAA" * 8192 + bytes(k.data) + b"\x55" * 5000
    core = vmcore.open(io.BytesIO(disk), offset=8192, length=len(k.data))
    assert core.status == "complete", core.reason
    _same(core, PAGES)


def test_a_path_and_the_summary(tmp_path):
    p = tmp_path / "dump"
    p.write_bytes(kdump_file(PAGES).data)
    with vmcore.open(p) as core:
        s = core.summary()
    assert s["status"] == "complete" and s["dumped_pages"] == len(PAGES) and s["compression"] == "zlib"


# --------------------------------------------------------------------------------------------
# Damage
# --------------------------------------------------------------------------------------------


def _k(**kw):
    return kdump_file(PAGES, max_mapnr=64, **kw)


def _status(data):
    core = _open(data, verify=True)
    assert core.reason, core.status
    return core.status, core.reason, core


def test_nothing_written_is_none_and_another_format_unsupported():
    assert _status(b"")[0] == "none"
    assert _status(bytes(20000))[0] == "none"
    assert _status(b"makedumpfile\0\0\0\0" + bytes(4000))[0] == "unsupported"
    d = _k().data
    d[:8] = b"DISKDUMP"
    assert _status(d)[0] == "unsupported"


def test_bad_signature_is_corrupt():
    d = _k().data
    d[:8] = b"KDUMP  X"
    assert _status(d)[:2] == ("corrupt", "no vmcore signature (KDUMP or ELF): starts with b'KDUMP  X'")
    assert _status(b"garbage!" * 100)[0] == "corrupt"


@pytest.mark.parametrize("at, field, value, want", [
    (8, "<i", 7, "unsupported"),  # a header version from the future
    (8, "<i", 0, "corrupt"),
    (8, ">i", 6, "unsupported"),  # big-endian
    (424, "<I", 0x100, "unsupported"),  # unknown status flag
    (424, "<I", 0x3, "corrupt"),  # two compressors
    (428, "<i", 4097, "corrupt"),  # block_size not a power of two
    (428, "<i", 1 << 30, "corrupt"),
    (432, "<i", 0, "corrupt"),  # sub_hdr_size
    (432, "<i", 1 << 30, "corrupt"),
    (436, "<I", 3, "corrupt"),  # odd bitmap_blocks
    (436, "<I", 0xFFFFFFFE, "partial"),  # bitmaps far past the end: cut short
    (440, "<I", 1 << 31, "corrupt"),  # max_mapnr != max_mapnr_64
])
def test_absurd_header_fields(at, field, value, want):
    d = _k().data
    struct.pack_into(field, d, at, value)
    assert _status(d)[0] == want


@pytest.mark.parametrize("at, fmt, value", [
    (96, "<Q", 1 << 40),  # max_mapnr_64
    (8, "<i", 99),  # dump_level
    (12, "<i", 7),  # split
    (32, "<q", 1 << 40),  # offset_vmcoreinfo
    (40, "<Q", 1 << 40),  # size_vmcoreinfo
    (48, "<q", 10),  # offset_note, inside the disk_dump_header
    (56, "<Q", 1 << 40),  # size_note
    (64, "<q", 10),  # offset_eraseinfo
])
def test_absurd_sub_header_fields(at, fmt, value):
    d = _k().data
    struct.pack_into(fmt, d, PAGE + at, value)
    if at == 64:
        struct.pack_into("<Q", d, PAGE + 72, 100)  # size_eraseinfo: then its offset is looked at
    assert _status(d)[0] == "corrupt"


def test_incomplete_flag_is_partial():
    status, reason, core = _status(_k(incomplete=True).data)
    assert status == "partial" and "incomplete" in reason
    _same(core, PAGES)


@pytest.mark.parametrize("cut, want", [(100, "corrupt"), (PAGE + 50, "corrupt"), ("bitmap", "partial"),
                                       ("descs", "partial"), ("data", "partial")])
def test_truncated(cut, want):
    k = _k()
    at = {"bitmap": k.bitmap_at + 10, "descs": k.desc_at + 30, "data": len(k.data) - 10}.get(cut, cut)
    status, reason, core = _status(k.data[:at])
    assert status == want, reason
    if cut == "data":  # every page but the last is still there
        assert [int(p) for p in core.dumped_pfns()] == sorted(PAGES)[:-1]
        _same(core, {p: PAGES[p] for p in sorted(PAGES)[:-1]})


def test_descriptors_never_written_at_the_tail_are_partial():
    """A partition (fixed size) makedumpfile stopped on: the last descriptors are zero."""
    k = _k()
    d = k.data
    d[k.desc_at + 24 * 5:k.desc_at + 24 * 8] = bytes(72)
    status, reason, core = _status(d)
    assert status == "partial" and "3 of 8 dumped pages lost from pfn 40" in reason, reason
    assert [int(p) for p in core.dumped_pfns()] == sorted(PAGES)[:5]


def test_a_descriptor_lost_in_the_middle_is_corrupt():
    k = _k()
    d = k.data
    d[k.desc_at + 24 * 2:k.desc_at + 24 * 3] = bytes(24)
    assert _status(d)[0] == "corrupt"


def test_bitmap_mismatch_is_corrupt():
    k = _k()
    d = k.data
    d[k.bitmap_at] &= ~1  # pfn 0 not in memory, but dumped
    status, reason, _ = _status(d)
    assert status == "corrupt" and "2nd bitmap" in reason


def test_a_dumped_page_more_than_descriptors_is_caught():
    k = _k()
    d = k.data
    d[k.bitmap_at + k.half + 1] |= 0x10  # pfn 12 said dumped: every descriptor after it shifts by one
    d[k.bitmap_at + 1] |= 0x10
    assert _status(d)[0] == "corrupt"


@pytest.mark.parametrize("field, at, value", [
    ("offset past the end, in the middle", 0, 1 << 40),
    ("offset into the descriptors", 0, 100),
    ("size over a block", 8, PAGE + 1),
    ("size 0", 8, 0),
    ("an unknown flag", 12, 0x40),
    ("another compressor", 12, 0x2),
    ("absurd offset", 0, 1 << 60),
])
def test_bad_descriptors_are_corrupt(field, at, value):
    k = _k()
    d = k.data
    struct.pack_into("<q" if at == 0 else "<I", d, k.desc_at + 24 * 2 + at, value)
    status, reason, _ = _status(d)
    assert status == "corrupt", (field, reason)


def test_the_last_descriptor_past_the_end_is_partial():
    k = _k()
    d = k.data
    struct.pack_into("<q", d, k.desc_at + 24 * 7, len(d) - 10)  # the last page's data: cut
    last = struct.unpack_from("<I", d, k.desc_at + 24 * 7 + 8)[0]
    del d[len(d) - last:]
    status, reason, core = _status(d)
    assert status in ("partial", "corrupt"), reason


def test_bad_compressed_data_is_corrupt_and_the_page_unreadable():
    k = _k()
    d = k.data
    off, size = struct.unpack_from("<qI", d, k.desc_at)
    d[off:off + size] = b"\xff" * size
    core = _open(d)
    assert core.status == "complete"  # the structure holds; the data is read lazily
    assert core.read_page(0) is None
    assert core.status == "corrupt" and "pfn 0: bad compressed data" in core.reason
    assert dict(core.pages()) == {p: v for p, v in PAGES.items() if p != 0}
    assert _open(d, verify=True).status == "corrupt"


@pytest.mark.parametrize("compressor", ["zlib", "lzo", "snappy", "zstd"])
def test_compressed_data_of_another_length_is_corrupt(compressor):
    k = kdump_file({0: pattern(0)}, compressor=compressor, zero_page=False)
    d = k.data
    off, size = struct.unpack_from("<qI", d, k.desc_at)
    short = compress(compressor, pattern(0)[:2048])
    d[off:off + len(short)] = short
    struct.pack_into("<I", d, k.desc_at + 8, len(short))
    del d[off + len(short):]
    core = _open(d, verify=True)
    assert core.status == "corrupt", core.reason


def test_a_missing_library_makes_its_pages_unreadable(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_cramjam(name, *a, **kw):
        if name == "cramjam":
            raise ImportError(name)
        return real(name, *a, **kw)

    data = kdump_file(PAGES, compressor="zstd").data
    monkeypatch.setattr(builtins, "__import__", no_cramjam)
    core = _open(data)
    assert core.read_page(0) is None and "cramjam library is not installed" in core.reason


def test_every_compressor_is_available_here():
    assert compression.available() == {"zlib": True, "lzo": True, "snappy": True, "zstd": True}


# --------------------------------------------------------------------------------------------
# The host's makedumpfile
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["-c", "-l", "-E"])
def test_what_makedumpfile_writes(tmp_path, option):
    """makedumpfile converts an ELF core (a /proc/vmcore stand-in with a synthetic VMCOREINFO)
    at dump level 1 (zero pages excluded): the reader reads its output page for page."""
    needs_makedumpfile()
    mem, vi = printk_memory(["Linux version 6.1.0-test", "Kernel panic - not syncing: test"])
    pages = mem.frozen()
    for p in range(0x300, 0x340):
        pages[p] = pattern(p)
    top = max(pages) + 1
    src = tmp_path / "in.elf"
    src.write_bytes(elf_file([(0, b"".join(pages.get(p, bytes(PAGE)) for p in range(top)), top * PAGE)],
                             vmcoreinfo=vi))
    out = tmp_path / "out"
    p = subprocess.run(["makedumpfile", option, "-d", "1", str(src), str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    core = vmcore.open(out, verify=True)
    assert core.status == "complete", core.reason
    assert core.format == ("elf" if option == "-E" else "kdump-compressed")
    if option != "-E":
        assert core.compression == {"-c": "zlib", "-l": "lzo"}[option] and core.sub_header.dump_level == 1
    nonzero = {p for p, v in pages.items() if v.strip(b"\0")}
    held = {int(p) for p in core.dumped_pfns()}
    assert nonzero <= held
    for pfn in held:
        assert core.read_page(pfn) == pages.get(pfn, bytes(PAGE)), pfn
    assert core.vmcoreinfo["SYMBOL(prb)"]
    core.close()


def test_dumped_pfns_is_a_numpy_array():
    core = _open(_k().data)
    assert isinstance(core.dumped_pfns(), np.ndarray) and core.dumped_pfns().dtype == np.uint64
