"""A small writer of the vmcore formats for the tests (docs/vmcore-formats.md): kdump-compressed
files with a few pages and each compressor, ELF cores with PT_LOADs and notes, and a Linux
6.1-shaped printk ringbuffer in physical memory. Written from the layout, with struct; the
tests at the end check the writer itself against pyelftools and the host's makedumpfile.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass, field

import pytest
from elftools.elf.elffile import ELFFile

PAGE = 4096
ZLIB, LZO, SNAPPY, ZSTD = 0x1, 0x2, 0x4, 0x20
COMPRESSORS = {"zlib": ZLIB, "lzo": LZO, "snappy": SNAPPY, "zstd": ZSTD, None: 0}
START_KERNEL_MAP = 0xFFFFFFFF80000000
DIRECT_MAP = 0xFFFF888000000000



def needs_makedumpfile() -> str:
    """The host's makedumpfile: `make setup` installs it, so a missing one fails, never skips."""
    path = shutil.which("makedumpfile")
    if path is None:
        pytest.fail("makedumpfile is not installed (make setup installs it)")
    return path

def compress(kind, page: bytes) -> bytes:
    if kind == "zlib":
        return zlib.compress(page)
    if kind == "lzo":
        from lzallright import LZOCompressor
        return LZOCompressor().compress(page)
    import cramjam
    if kind == "snappy":
        return bytes(cramjam.snappy.compress_raw(page))
    if kind == "zstd":
        return bytes(cramjam.zstd.compress(page))
    raise ValueError(kind)


def note(name: str, ntype: int, desc: bytes) -> bytes:
    n = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def prstatus(pid: int = 1, rip: int = 0xFFFFFFFF81000000) -> bytes:
    d = bytearray(336)
    struct.pack_into("<i", d, 32, pid)
    struct.pack_into("<Q", d, 112 + 16 * 8, rip)
    return bytes(d)


def vmcore_notes(vmcoreinfo: str | None, cpus: int = 1) -> tuple[bytes, int]:
    """(the notes, offset of the VMCOREINFO text in them or -1)."""
    out = b"".join(note("CORE", 1, prstatus(pid=i + 1)) for i in range(cpus))
    at = -1
    if vmcoreinfo is not None:
        at = len(out) + 12 + 12  # header, "VMCOREINFO\0" padded to 12
        out += note("VMCOREINFO", 0, vmcoreinfo.encode())
    return out, at


@dataclass
class Kdump:
    data: bytearray
    pages: dict
    bitmap_at: int
    half: int
    desc_at: int
    data_at: int
    order: list = field(default_factory=list)  # dumped pfns in descriptor order


def kdump_file(pages: dict[int, bytes], *, compressor="zlib", vmcoreinfo: str | None = "OSRELEASE=6.1.0\nPAGESIZE=4096\n",
               max_mapnr: int | None = None, present: set | None = None, version: int = 6, block_size: int = PAGE,
               incomplete: bool = False, cpus: int = 1, phys_base: int = 0, dump_level: int = 1,
               zero_page: bool = True) -> Kdump:
    """A kdump-compressed file as makedumpfile lays it out: pages {pfn: bytes}."""
    bs = block_size
    max_mapnr = max_mapnr or (max(pages, default=0) + 1)
    present = set(pages) | (present or set())
    notes, vi_at = vmcore_notes(vmcoreinfo, cpus)
    sub_blocks = -(-(104 + len(notes)) // bs)
    bitmap_bytes = -(-max_mapnr // 8)
    half = -(-bitmap_bytes // bs) * bs
    cflag = COMPRESSORS[compressor]
    status = cflag | (0x8 if incomplete else 0)
    head = struct.pack("<8si390s6xqqIiiIIIIIIi", b"KDUMP   ", version,
                       b"Linux".ljust(65, b"\0") + b"box".ljust(65, b"\0") + b"6.1.0".ljust(65, b"\0")
                       + b"#1".ljust(65, b"\0") + b"x86_64".ljust(65, b"\0") + bytes(65),
                       1700000000, 0, status, bs, sub_blocks, 2 * half // bs, min(max_mapnr, 0xFFFFFFFF),
                       0, 0, 0, 0, cpus)
    note_at = bs + 104
    kh = struct.pack("<QiiQQqQqQqQQQQ", phys_base, dump_level, 0, 0, 0,
                     note_at + vi_at if vi_at >= 0 else 0, len(vmcoreinfo) if vmcoreinfo is not None else 0,
                     note_at, len(notes), 0, 0, 0, 0, max_mapnr)
    out = bytearray(head.ljust(bs, b"\0"))
    out += (kh + notes).ljust(sub_blocks * bs, b"\0")
    bitmap_at = len(out)
    b1, b2 = bytearray(half), bytearray(half)
    for p in present:
        b1[p // 8] |= 1 << (p % 8)
    for p in pages:
        b2[p // 8] |= 1 << (p % 8)
    out += b1 + b2
    desc_at = len(out)
    order = sorted(pages)
    data_at = desc_at + 24 * len(order)
    descs, body = bytearray(), bytearray()
    zero_off = None
    if zero_page:
        zero_off = data_at
        body += bytes(bs)
    for pfn in order:
        page = pages[pfn]
        assert len(page) == bs
        if zero_page and not page.strip(b"\0"):
            descs += struct.pack("<qIIQ", zero_off, bs, 0, 0)
            continue
        c = compress(compressor, page) if compressor else page
        flags = cflag if compressor and len(c) < bs else 0
        blob = c if flags else page
        descs += struct.pack("<qIIQ", data_at + len(body), len(blob), flags, 0)
        body += blob
    out += descs + body
    return Kdump(out, pages, bitmap_at, half, desc_at, data_at, order)


def elf_file(segments: list[tuple[int, bytes, int]], *, vmcoreinfo: str | None = "OSRELEASE=6.1.0\nPAGESIZE=4096\n",
             cpus: int = 1, incomplete: bool = False, machine: int = 62) -> bytes:
    """An ELF64 vmcore: segments (paddr, file bytes, memsz), each a PT_LOAD after one PT_NOTE."""
    notes, _ = vmcore_notes(vmcoreinfo, cpus)
    phnum = 1 + len(segments)
    pos = 64 + 56 * phnum
    note_at = pos
    pos += len(notes)
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, note_at, 0, 0, len(notes), len(notes), 0)
    body = bytearray()
    for paddr, data, memsz in segments:
        pad = -pos % PAGE
        body += bytes(pad)
        pos += pad
        phdrs += struct.pack("<IIQQQQQQ", 1, 7, pos, DIRECT_MAP + paddr, paddr, len(data), memsz, 0)
        body += data
        pos += len(data)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    eh = struct.pack("<16sHHIQQQIHHHHHH", ident, 4, machine, 1, 0, 64, 0, 1 if incomplete else 0, 64, 56, phnum,
                     64, 0, 0)
    return eh + phdrs + notes + bytes(body)


def pattern(pfn: int, size: int = PAGE) -> bytes:
    """A page that says which it is (compressible, not all zero)."""
    line = f"pfn {pfn:#x} ".encode()
    return (line * (size // len(line) + 1))[:size]


# --------------------------------------------------------------------------------------------
# A Linux 6.1 printk ringbuffer (x86-64 layout, offsets as pahole prints them)
# --------------------------------------------------------------------------------------------

PRB_VMCOREINFO = {
    "OFFSET(printk_ringbuffer.desc_ring)": 0, "OFFSET(printk_ringbuffer.text_data_ring)": 48,
    "OFFSET(printk_ringbuffer.fail)": 80, "SIZE(printk_ringbuffer)": 88,
    "SIZE(prb_desc_ring)": 48, "OFFSET(prb_desc_ring.count_bits)": 0, "OFFSET(prb_desc_ring.descs)": 8,
    "OFFSET(prb_desc_ring.infos)": 16, "OFFSET(prb_desc_ring.head_id)": 24, "OFFSET(prb_desc_ring.tail_id)": 32,
    "SIZE(prb_desc)": 24, "OFFSET(prb_desc.state_var)": 0, "OFFSET(prb_desc.text_blk_lpos)": 8,
    "SIZE(prb_data_blk_lpos)": 16, "OFFSET(prb_data_blk_lpos.begin)": 0, "OFFSET(prb_data_blk_lpos.next)": 8,
    "SIZE(printk_info)": 88, "OFFSET(printk_info.seq)": 0, "OFFSET(printk_info.ts_nsec)": 8,
    "OFFSET(printk_info.text_len)": 16, "OFFSET(printk_info.caller_id)": 20, "OFFSET(printk_info.dev_info)": 24,
    "SIZE(dev_printk_info)": 64, "OFFSET(dev_printk_info.subsystem)": 0, "LENGTH(printk_info_subsystem)": 16,
    "OFFSET(dev_printk_info.device)": 16, "LENGTH(printk_info_device)": 48,
    "SIZE(prb_data_ring)": 32, "OFFSET(prb_data_ring.size_bits)": 0, "OFFSET(prb_data_ring.data)": 8,
    "OFFSET(prb_data_ring.head_lpos)": 16, "OFFSET(prb_data_ring.tail_lpos)": 24,
    "SIZE(atomic_long_t)": 8, "OFFSET(atomic_long_t.counter)": 0, "OFFSET(latched_seq.val)": 8,
}


class Memory:
    """Sparse physical memory, page by page."""

    def __init__(self):
        self.pages: dict[int, bytearray] = {}

    def write(self, paddr: int, data: bytes) -> None:
        for i, b in enumerate(data):  # small data: byte by byte is fine
            page = self.pages.setdefault((paddr + i) // PAGE, bytearray(PAGE))
            page[(paddr + i) % PAGE] = b

    def frozen(self) -> dict[int, bytes]:
        return {p: bytes(b) for p, b in self.pages.items()}


def printk_memory(messages: list[str], *, phys_base: int = 0x200000, count_bits: int = 4, size_bits: int = 10,
                  wrap: bool = True, data_in_direct_map: bool = True) -> tuple[Memory, str]:
    """Physical memory holding a printk ringbuffer with these messages (the last ones: the
    ring keeps what fits), and the VMCOREINFO text that finds it. The ring's text data lives
    in the direct map (reached through 4-level page tables from init_top_pgt) unless told
    otherwise; everything else in the kernel image."""
    mem = Memory()
    kimg = lambda paddr: START_KERNEL_MAP + paddr - phys_base  # noqa: E731  (virtual of a kernel-image paddr)
    # kernel image layout (physical)
    prb_ptr, rb, descs, infos = phys_base + 0x1000, phys_base + 0x1100, phys_base + 0x2000, phys_base + 0x3000
    pgd, pud, pmd, pte = phys_base + 0x10000, phys_base + 0x11000, phys_base + 0x12000, phys_base + 0x13000
    data_phys = 0x100000
    count, size = 1 << count_bits, 1 << size_bits
    data_virt = DIRECT_MAP + data_phys if data_in_direct_map else kimg(phys_base + 0x20000)
    if not data_in_direct_map:
        data_phys = phys_base + 0x20000
    ring = bytearray(size)
    # lay out the records: each block is id (8 bytes) + text, rounded to 8
    blocks = []
    lpos = 0
    for i, msg in enumerate(messages):
        text = msg.encode()
        need = 8 + len(text)
        need += -need % 8
        if wrap and lpos % size + need > size:  # does not fit before the end: wrap to the start
            begin = lpos
            lpos += size - lpos % size  # the tail of the ring is skipped
            next_ = lpos + need
            start_index = 0
        else:
            begin, next_, start_index = lpos, lpos + need, lpos % size
        blocks.append((i, begin, next_, start_index, text))
        lpos = next_
    # keep the last records that fit in the ring (data and descriptors)
    while lpos - blocks[0][1] > size or len(blocks) > count:
        blocks.pop(0)
    for rid, begin, next_, start, text in blocks:
        ring[start:start + 8] = struct.pack("<Q", rid)
        ring[start + 8:start + 8 + len(text)] = text
        d = (rid % count) * 24
        mem.write(descs + d, struct.pack("<QQQ", (2 << 62) | rid, begin, next_))
        mem.write(infos + (rid % count) * 88, struct.pack("<QQHBBI", rid, 1_000_000 * (rid + 1), len(text), 0, 0,
                                                         0x80000000))
    head, tail = blocks[-1][0], blocks[0][0]
    mem.write(data_phys, bytes(ring))
    rbv = bytearray(88)
    struct.pack_into("<IxxxxQQQQ", rbv, 0, count_bits, kimg(descs), kimg(infos), head, tail)
    struct.pack_into("<IxxxxQ", rbv, 48, size_bits, data_virt)
    mem.write(rb, bytes(rbv))
    mem.write(prb_ptr, struct.pack("<Q", kimg(rb)))
    uts = phys_base + 0x4000  # init_uts_ns: makedumpfile checks its release against OSRELEASE
    mem.write(uts, b"".join(s.ljust(65, b"\0") for s in (b"Linux", b"box", b"6.1.0-test", b"#1", b"x86_64", b"")))
    mem_map = phys_base + 0x5000  # FLATMEM's mem_map pointer: makedumpfile wants a memory model
    mem.write(mem_map, struct.pack("<Q", kimg(phys_base + 0x30000)))
    # the kernel image's mapping: pgd[511] -> pud[510] -> one 2 MiB page at phys_base
    pud_k, pmd_k = phys_base + 0x14000, phys_base + 0x15000
    mem.write(pgd + 511 * 8, struct.pack("<Q", pud_k | 0x63))
    mem.write(pud_k + 510 * 8, struct.pack("<Q", pmd_k | 0x63))
    mem.write(pmd_k, struct.pack("<Q", phys_base | 0xE3))
    if data_in_direct_map:  # page tables mapping the ring's pages at DIRECT_MAP + paddr
        mem.write(pgd + ((data_virt >> 39) & 511) * 8, struct.pack("<Q", pud | 0x63))
        mem.write(pud + ((data_virt >> 30) & 511) * 8, struct.pack("<Q", pmd | 0x63))
        mem.write(pmd + ((data_virt >> 21) & 511) * 8, struct.pack("<Q", pte | 0x63))
        for k in range(-(-size // PAGE)):
            v = data_virt + k * PAGE
            mem.write(pte + ((v >> 12) & 511) * 8, struct.pack("<Q", (data_phys + k * PAGE) | 0x63))
    vi = {"OSRELEASE": "6.1.0-test", "PAGESIZE": "4096", "SYMBOL(prb)": f"{kimg(prb_ptr):x}",
          "SYMBOL(init_top_pgt)": f"{kimg(pgd):x}",
          "SYMBOL(init_uts_ns)": f"{kimg(uts):x}", "OFFSET(uts_namespace.name)": "0",
          "SYMBOL(mem_map)": f"{kimg(mem_map):x}", "SIZE(page)": "64", "OFFSET(page.flags)": "0",
          "OFFSET(page._refcount)": "52", "OFFSET(page.mapping)": "24", "NUMBER(phys_base)": str(phys_base),
          "NUMBER(pgtable_l5_enabled)": "0", "KERNELOFFSET": "0", **{k: str(v) for k, v in PRB_VMCOREINFO.items()}}
    return mem, "".join(f"{k}={v}\n" for k, v in vi.items())


# --------------------------------------------------------------------------------------------
# The writer's own checks
# --------------------------------------------------------------------------------------------


def test_elf_writer_is_what_pyelftools_reads(tmp_path):
    path = tmp_path / "core"
    path.write_bytes(elf_file([(0, pattern(0) + pattern(1), 3 * PAGE), (0x10000, pattern(16), PAGE)], cpus=2))
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_type"] == "ET_CORE"
        segs = list(elf.iter_segments())
        assert [s["p_type"] for s in segs] == ["PT_NOTE", "PT_LOAD", "PT_LOAD"]
        assert segs[1].data() == pattern(0) + pattern(1) and segs[1]["p_memsz"] == 3 * PAGE
        names = [n["n_name"] for n in segs[0].iter_notes()]
        assert names == ["CORE", "CORE", "VMCOREINFO"]


def test_makedumpfile_reads_the_writers_kdump_file(tmp_path):
    """The host's makedumpfile (if installed) takes the writer's file for its own: it prints
    the log of the synthetic ringbuffer."""
    needs_makedumpfile()
    mem, vi = printk_memory(["Linux version 6.1.0-test", "hello", "Kernel panic - not syncing: test"])
    k = kdump_file(mem.frozen(), vmcoreinfo=vi, max_mapnr=0x400, phys_base=0x200000)
    path = tmp_path / "dump"
    path.write_bytes(k.data)
    out = tmp_path / "dmesg"
    p = subprocess.run(["makedumpfile", "--dump-dmesg", str(path), str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert out.read_text().splitlines()[-1].endswith("Kernel panic - not syncing: test")
