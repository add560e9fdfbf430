"""The vmcore readers (harness/dumpbed/reader/vmcore/) fuzzed with hostile files: random byte
flips (anywhere and in the structures), truncations and zeroed ranges of small kdump-compressed
files (each compressor) and an ELF vmcore, all holding a printk ringbuffer. The properties:
nothing raises (open, verify, pages, read_page, read_dmesg), the status is one of the five with
a reason, and every page read is one page long."""
from __future__ import annotations

import io
import sys
from pathlib import Path

from hypothesis import given, strategies as st

from dumpbed.reader import vmcore
from dumpbed.reader.vmcore.dmesg import read_dmesg

from .conftest import fuzz_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import test_vmcore_writer as w  # noqa: E402


def _files() -> dict[str, tuple[bytes, int]]:
    """name: (bytes, where the structures end: the start of the page data)."""
    mem, vi = w.printk_memory([f"line {i}" for i in range(20)] + ["Kernel panic - not syncing: fuzz"])
    pages = mem.frozen()
    for p in (0x300, 0x301, 0x305):
        pages[p] = w.pattern(p)
    out = {}
    for c in ("zlib", "lzo", "snappy", "zstd", None):
        k = w.kdump_file(pages, compressor=c, vmcoreinfo=vi, max_mapnr=0x400, phys_base=0x200000)
        out[f"kdump-{c}"] = (bytes(k.data), k.data_at)
    top = max(pages) + 1
    elf = w.elf_file([(0, b"".join(pages.get(p, bytes(w.PAGE)) for p in range(0x210)), 0x210 * w.PAGE),
                      (0x300 * w.PAGE, b"".join(pages.get(p, bytes(w.PAGE)) for p in range(0x300, top)),
                       (top - 0x300) * w.PAGE)], vmcoreinfo=vi, cpus=2)
    out["elf"] = (elf, 64 + 56 * 3 + 2000)
    return out


FILES = _files()
NAMES = sorted(FILES)


def _hold(data: bytes) -> None:
    core = vmcore.open(io.BytesIO(data))
    assert core.status in vmcore.STATUSES and core.reason
    core.verify()
    assert core.status in vmcore.STATUSES and core.reason
    for pfn, page in core.pages():
        assert len(page) == core.page_size
    for pfn in (0, 1, 0x100, 0x205, 0x300, 1 << 40, -1):
        page = core.read_page(pfn)
        assert page is None or len(page) == core.page_size
    d = read_dmesg(core)
    assert d.ok or d.problem
    core.summary()


@st.composite
def flips(draw, structures: bool):
    name = draw(st.sampled_from(NAMES), label="file")
    data, end = FILES[name]
    d = bytearray(data)
    for _ in range(draw(st.integers(1, 8), label="flips")):
        at = draw(st.integers(0, (end if structures else len(d)) - 1))
        d[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(d)


@fuzz_settings(4.0)
@given(data=flips(structures=False))
def test_vmcore_bit_flips_anywhere(data):
    _hold(data)


@fuzz_settings(4.0)
@given(data=flips(structures=True))
def test_vmcore_bit_flips_in_structures(data):
    _hold(data)


@fuzz_settings(4.0)
@given(name=st.sampled_from(NAMES), cut=st.floats(0, 1))
def test_vmcore_truncation(name, cut):
    data = FILES[name][0]
    _hold(data[:int(len(data) * cut)])


@fuzz_settings(4.0)
@given(name=st.sampled_from(NAMES), start=st.floats(0, 1), size=st.integers(1, 3 * 4096),
       fill=st.sampled_from([0, 0xFF]))
def test_vmcore_overwritten_ranges(name, start, size, fill):
    d = bytearray(FILES[name][0])
    at = int(len(d) * start)
    d[at:at + size] = bytes([fill]) * len(d[at:at + size])
    _hold(bytes(d))


@fuzz_settings(4.0)
@given(name=st.sampled_from(NAMES), at=st.integers(0, 1 << 14), value=st.sampled_from(
    [0, 1, 0x7F, 0xFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 40, (1 << 63) - 1, (1 << 64) - 1]))
def test_vmcore_absurd_words(name, at, value):
    d = bytearray(FILES[name][0])
    at = at // 4 * 4
    d[at:at + 8] = value.to_bytes(8, "little")
    _hold(bytes(d[:len(FILES[name][0])]))
