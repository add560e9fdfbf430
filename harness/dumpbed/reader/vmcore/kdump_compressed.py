"""Reader of makedumpfile's kdump-compressed format ("KDUMP   ", the diskdump layout;
docs/vmcore-formats.md). Header versions 1 to 6, 64-bit little-endian writers (x86-64, and
any LP64 little-endian kernel: the layout has no other architecture dependence).

Layout, in blocks of the header's block_size (the dumped kernel's page size):
  block 0                    disk_dump_header (464 bytes)
  block 1 ..                 kdump_sub_header (104 bytes), then the ELF notes (NT_PRSTATUS per
                             CPU, VMCOREINFO), sub_hdr_size blocks in all
  then bitmap_blocks blocks  1st bitmap (pages present in memory), then 2nd bitmap (pages
                             dumped), each half of the region; bit pfn is byte pfn//8, bit pfn%8
  then                       one 24-byte page_desc per set bit of the 2nd bitmap, in pfn order
                             (offset, size, flags, page_flags)
  then                       page data, contiguous in pfn order; pages that are all zero share
                             one block of zeros written first

Everything that does not hold is a finding (see base.Vmcore.note); the layout rules checked
are listed in docs/vmcore-formats.md.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

from dumpbed.reader.vmcore import compression as comp
from dumpbed.reader.vmcore.base import Vmcore
from dumpbed.reader.vmcore.source import Source

SIGNATURE = b"KDUMP   "
OLD_SIGNATURE = b"DISKDUMP"
MAX_VERSION = 6
DISK_DUMP_HEADER = struct.Struct("<8si390s6xqqIiiIIIIIIi")
assert DISK_DUMP_HEADER.size == 464
SUB_HEADER = struct.Struct("<QiiQQqQqQqQQQQ")
assert SUB_HEADER.size == 104
PAGE_DESC = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])
assert PAGE_DESC.itemsize == 24
KNOWN_STATUS = comp.COMPRESSION_MASK | comp.DUMP_DH_COMPRESSED_INCOMPLETE | comp.DUMP_DH_EXCLUDED_VMEMMAP
MIN_BLOCK, MAX_BLOCK = 1024, 1 << 20
MAX_PAGES = 1 << 36  # 256 TiB of 4 KiB pages: the bitmaps of anything bigger are not read
MAX_SUB_HEADER_BYTES = 64 << 20
_32BIT_MACHINES = {"i386", "i486", "i586", "i686", "x86", "arm", "armv7l", "armv6l", "ppc", "mips", "s390",
                   "sparc"}
_STEP = 1 << 22  # bytes read at a time from the bitmaps and descriptors


@dataclass
class DiskDumpHeader:
    signature: bytes
    header_version: int
    sysname: str
    nodename: str
    release: str
    version: str
    machine: str
    domainname: str
    timestamp_sec: int
    timestamp_usec: int
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int  # 32-bit, obsolete: KdumpSubHeader.max_mapnr_64 from version 6
    total_ram_blocks: int
    device_blocks: int
    written_blocks: int
    current_cpu: int
    nr_cpus: int

    @property
    def compression(self) -> str:
        return comp.NAMES.get(self.status & comp.COMPRESSION_MASK, f"{self.status & comp.COMPRESSION_MASK:#x}")

    @property
    def incomplete(self) -> bool:
        return bool(self.status & comp.DUMP_DH_COMPRESSED_INCOMPLETE)


@dataclass
class KdumpSubHeader:
    """Fields a header version does not have are 0."""
    phys_base: int
    dump_level: int  # version >= 1
    split: int  # version >= 2
    start_pfn: int
    end_pfn: int
    offset_vmcoreinfo: int  # version >= 3
    size_vmcoreinfo: int
    offset_note: int  # version >= 4
    size_note: int
    offset_eraseinfo: int  # version >= 5
    size_eraseinfo: int
    start_pfn_64: int  # version >= 6
    end_pfn_64: int
    max_mapnr_64: int


_SUB_SINCE = {"dump_level": 1, "split": 2, "start_pfn": 2, "end_pfn": 2, "offset_vmcoreinfo": 3,
              "size_vmcoreinfo": 3, "offset_note": 4, "size_note": 4, "offset_eraseinfo": 5,
              "size_eraseinfo": 5, "start_pfn_64": 6, "end_pfn_64": 6, "max_mapnr_64": 6}


def _text(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("ascii", "replace")


class KdumpCompressed(Vmcore):
    format = "kdump-compressed"

    def __init__(self, source: Source):
        super().__init__(source)
        self.sub_header: Optional[KdumpSubHeader] = None
        self.max_mapnr = 0
        self.eraseinfo = b""
        self._descs = np.zeros(0, dtype=PAGE_DESC)
        self._present = np.zeros(0, dtype=np.uint64)  # 1st bitmap: pages present in memory
        self._bad_pages: dict[int, str] = {}
        self.compression = "none"
        self._parse()

    # ---------------------------------------------------------------------------------------

    def _parse(self) -> None:
        src = self.source
        raw = src.read_exact(0, DISK_DUMP_HEADER.size)
        if raw is None:
            self.note("corrupt", f"the file ends at byte {src.length}, inside the {DISK_DUMP_HEADER.size}-byte "
                                 f"disk_dump_header")
            return
        v = DISK_DUMP_HEADER.unpack(raw)
        uts = [_text(v[2][i * 65:(i + 1) * 65]) for i in range(6)]
        h = self.header = DiskDumpHeader(v[0], v[1], *uts, *v[3:])
        if h.signature == OLD_SIGNATURE:
            self.note("unsupported", "a DISKDUMP (the old diskdump facility's) header, not makedumpfile's KDUMP")
            return
        if h.signature != SIGNATURE:
            self.note("corrupt", f"signature {h.signature!r}, not {SIGNATURE!r}")
            return
        if 1 <= struct.unpack("<i", struct.pack(">i", h.header_version))[0] <= MAX_VERSION:
            self.note("unsupported", f"header_version {h.header_version:#x}: a big-endian writer's header")
            return
        if h.header_version > MAX_VERSION:
            self.note("unsupported", f"header_version {h.header_version}: this reader knows 1 to {MAX_VERSION}")
            return
        if h.header_version < 1:
            self.note("corrupt", f"header_version {h.header_version}: makedumpfile writes 1 to {MAX_VERSION}")
            return
        if h.machine in _32BIT_MACHINES:
            self.note("unsupported", f"a {h.machine} (32-bit) writer's layout")
            return
        if h.status & ~KNOWN_STATUS:
            self.note("unsupported", f"header status {h.status:#x} has flags this reader does not know "
                                     f"({h.status & ~KNOWN_STATUS:#x})")
            return
        cbits = h.status & comp.COMPRESSION_MASK
        if cbits & (cbits - 1):
            self.note("corrupt", f"header status {h.status:#x} names more than one compressor")
            return
        self.compression = h.compression
        bs = h.block_size
        if not (MIN_BLOCK <= bs <= MAX_BLOCK) or bs & (bs - 1):
            self.note("corrupt", f"block_size {bs}: not a page size (a power of two, {MIN_BLOCK} to {MAX_BLOCK})")
            return
        self.page_size = bs
        if h.sub_hdr_size < 1 or h.sub_hdr_size * bs > MAX_SUB_HEADER_BYTES:
            self.note("corrupt", f"sub_hdr_size {h.sub_hdr_size} blocks: not 1 to {MAX_SUB_HEADER_BYTES // bs}")
            return
        if h.bitmap_blocks < 2 or h.bitmap_blocks % 2:
            self.note("corrupt", f"bitmap_blocks {h.bitmap_blocks}: two equal bitmaps need an even number, at least 2")
            return
        if not self._read_sub_header(h):
            return
        sub = self.sub_header
        self.max_mapnr = sub.max_mapnr_64 if h.header_version >= 6 else h.max_mapnr
        if h.header_version >= 6 and h.max_mapnr != min(sub.max_mapnr_64, 0xFFFFFFFF):
            self.note("corrupt", f"max_mapnr {h.max_mapnr} is not max_mapnr_64 {sub.max_mapnr_64} (capped to 32 bits)")
            return
        half = h.bitmap_blocks * bs // 2
        if self.max_mapnr > half * 8 or self.max_mapnr > MAX_PAGES:
            self.note("corrupt", f"max_mapnr {self.max_mapnr}: more pages than the bitmaps' {half * 8} bits "
                                 f"(or than {MAX_PAGES})")
            return
        if h.incomplete:
            self.note("partial", "the header's status says incomplete: makedumpfile stopped part-way "
                                 "(DUMP_DH_COMPRESSED_INCOMPLETE)")
        self._read_bitmaps_and_descriptors(h, half)

    def _read_sub_header(self, h: DiskDumpHeader) -> bool:
        bs = h.block_size
        src = self.source
        raw = src.read_exact(bs, SUB_HEADER.size)
        if raw is None:
            self.note("corrupt", f"the file ends at byte {src.length}, inside the kdump_sub_header at byte {bs}")
            return False
        vals = dict(zip([f.name for f in fields(KdumpSubHeader)], SUB_HEADER.unpack(raw)))
        for name, since in _SUB_SINCE.items():
            if h.header_version < since:
                vals[name] = 0
        sub = self.sub_header = KdumpSubHeader(**vals)
        end_sub = (1 + h.sub_hdr_size) * bs
        if src.length < end_sub:
            self.note("corrupt", f"the file ends at byte {src.length}, inside the sub header's "
                                 f"{h.sub_hdr_size} blocks (to byte {end_sub})")
            return False
        if sub.split not in (0, 1):
            self.note("corrupt", f"split {sub.split}: not 0 or 1")
            return False
        if sub.dump_level < 0 or sub.dump_level > 31:
            self.note("corrupt", f"dump_level {sub.dump_level}: not 0 to 31")
            return False
        # the notes and VMCOREINFO lie inside the sub header's blocks (makedumpfile puts them
        # right after the kdump_sub_header)
        regions = {"note": (sub.offset_note, sub.size_note), "vmcoreinfo": (sub.offset_vmcoreinfo, sub.size_vmcoreinfo)}
        for name, (off, size) in regions.items():
            if not off and not size:
                continue
            if size > end_sub or not (bs + SUB_HEADER.size <= off <= end_sub - size):
                self.note("corrupt", f"offset_{name} {off} / size_{name} {size}: outside the sub header's blocks "
                                     f"({bs + SUB_HEADER.size} to {end_sub})")
                return False
        if sub.size_note:
            self.read_notes(src.read(sub.offset_note, sub.size_note), "the ELF notes")
        if sub.size_vmcoreinfo:
            if sub.size_note and not (sub.offset_note <= sub.offset_vmcoreinfo and
                                      sub.offset_vmcoreinfo + sub.size_vmcoreinfo <= sub.offset_note + sub.size_note):
                self.note("corrupt", "the VMCOREINFO region is not inside the ELF notes")
            raw_vi = src.read(sub.offset_vmcoreinfo, sub.size_vmcoreinfo)
            if self.vmcoreinfo_raw and self.vmcoreinfo_raw.split(b"\0", 1)[0] != raw_vi.split(b"\0", 1)[0]:
                self.note("corrupt", "offset_vmcoreinfo does not point at the VMCOREINFO note's text")
            self.set_vmcoreinfo(raw_vi, "VMCOREINFO")
        if self.vmcoreinfo.get("PAGESIZE") and self.vmcoreinfo["PAGESIZE"] != str(bs):
            self.note("corrupt", f"VMCOREINFO's PAGESIZE {self.vmcoreinfo['PAGESIZE']} is not block_size {bs}")
        if sub.size_eraseinfo:
            end = sub.offset_eraseinfo + sub.size_eraseinfo
            if sub.size_eraseinfo > MAX_SUB_HEADER_BYTES or sub.offset_eraseinfo < end_sub:
                self.note("corrupt", f"offset_eraseinfo {sub.offset_eraseinfo} / size {sub.size_eraseinfo}: absurd")
            elif end > src.length:
                self.note("partial", f"the erase information (to byte {end}) is past the file's end ({src.length})")
            else:
                self.eraseinfo = src.read(sub.offset_eraseinfo, sub.size_eraseinfo)
        if sub.split:
            s, e = (sub.start_pfn_64, sub.end_pfn_64) if h.header_version >= 6 else (sub.start_pfn, sub.end_pfn)
            if s > e:
                self.note("corrupt", f"split part's start_pfn {s} is past its end_pfn {e}")
        return True

    def _read_bitmap(self, at: int, half: int, which: str) -> Optional[np.ndarray]:
        """The set bits (pfns) of one bitmap, below max_mapnr; None if the file ends in it."""
        n_bytes = (self.max_mapnr + 7) // 8
        pfns = []
        for done in range(0, n_bytes, _STEP):
            want = min(_STEP, n_bytes - done)
            chunk = self.source.read(at + done, want)
            if len(chunk) < want:
                self.note("partial", f"the file ends at byte {self.source.length}, inside the {which} bitmap "
                                     f"(bytes {at} to {at + half}): makedumpfile cut short before any page")
                return None
            bits = np.unpackbits(np.frombuffer(chunk, dtype=np.uint8), bitorder="little")
            pfns.append(np.flatnonzero(bits).astype(np.uint64) + np.uint64(done * 8))
        out = np.concatenate(pfns) if pfns else np.zeros(0, dtype=np.uint64)
        return out[out < np.uint64(self.max_mapnr)]

    def _read_bitmaps_and_descriptors(self, h: DiskDumpHeader, half: int) -> None:
        bs = h.block_size
        bitmap1_at = (1 + h.sub_hdr_size) * bs
        present = self._read_bitmap(bitmap1_at, half, "1st")
        if present is None:
            return
        dumped = self._read_bitmap(bitmap1_at + half, half, "2nd")
        if dumped is None:
            return
        self._present = present
        extra = np.setdiff1d(dumped, present, assume_unique=True)
        if len(extra):
            self.note("corrupt", f"the 2nd bitmap has {len(extra)} pages the 1st does not (first pfn {int(extra[0])}): "
                                 f"a page dumped that was not in memory")
            return
        desc_at = bitmap1_at + 2 * half
        n = len(dumped)
        data_start = desc_at + n * PAGE_DESC.itemsize
        if n == 0:
            if len(present):
                self.note("partial", f"no page dumped of the {len(present)} in memory (the 2nd bitmap is empty)")
            self.reason = self.reason or "no pages"
            return
        raw = self.source.read(desc_at, n * PAGE_DESC.itemsize)
        have = len(raw) // PAGE_DESC.itemsize
        descs = np.zeros(n, dtype=PAGE_DESC)
        descs[:have] = np.frombuffer(raw[:have * PAGE_DESC.itemsize], dtype=PAGE_DESC)
        if have < n:
            self.note("partial", f"the file ends at byte {self.source.length}, inside the page descriptors "
                                 f"({have} of {n} whole)")
        self._check_descriptors(h, dumped, descs, data_start)

    def _check_descriptors(self, h: DiskDumpHeader, dumped: np.ndarray, descs: np.ndarray, data_start: int) -> None:
        bs = h.block_size
        length = self.source.length
        off = descs["offset"]
        size = descs["size"].astype(np.int64)
        flags = descs["flags"]
        blank = (off == 0) & (size == 0) & (flags == 0) & (descs["page_flags"] == 0)
        written = ~blank
        pfn_of = lambda i: int(dumped[i])  # noqa: E731

        def bad(mask, what):
            idx = np.flatnonzero(mask & written)
            if len(idx):
                self.note("corrupt", f"{len(idx)} page descriptors {what} (first: pfn {pfn_of(idx[0])}, "
                                     f"offset {int(off[idx[0]])}, size {int(size[idx[0]])}, flags {int(flags[idx[0]]):#x})")
                return True
            return False

        cbits = flags & np.uint32(comp.COMPRESSION_MASK)
        header_c = h.status & comp.COMPRESSION_MASK
        if (bad(flags & ~np.uint32(comp.COMPRESSION_MASK) != 0, "have flags other than a compressor's")
                or bad((cbits & (cbits - np.uint32(1))) != 0, "name more than one compressor")
                or bad((cbits != 0) & (cbits != header_c), f"use another compressor than the header's "
                                                          f"({h.compression})")
                or bad(size <= 0, "have size 0")
                or bad(size > bs, f"have a size over one block ({bs})")
                or bad((cbits == 0) & (size != bs), "are uncompressed but not one block")
                or bad(off < data_start, f"point before the page data (byte {data_start})")
                or bad(off >= 1 << 56, "have an absurd offset")):
            return
        # The data blocks: distinct offsets, in the order descriptors first use them, must
        # tile the data region (makedumpfile and QEMU write them contiguously, in pfn order).
        # Pages that share a block (the zero page) share its size and flags. The shared zero
        # page is written first, before any page, though its first user may come later.
        widx = np.flatnonzero(written)
        if not len(widx):
            self.note("partial", f"none of the {len(descs)} page descriptors was written: makedumpfile cut short "
                                 f"before any page")
            return
        uoff, first, inverse = np.unique(off[widx], return_index=True, return_inverse=True)
        firsts = widx[first]
        if not (np.all(size[widx] == size[firsts][inverse]) and np.all(flags[widx] == flags[firsts][inverse])):
            self.note("corrupt", "page descriptors that share a data block disagree on its size or flags")
            return
        order = np.argsort(firsts, kind="stable")
        starts = uoff[order]
        ends = starts + size[firsts][order]
        lowest = int(np.argmin(starts))
        body = np.ones(len(starts), dtype=bool)
        body[lowest] = lowest == 0  # a lowest block first used after others is the zero page
        b_start, b_end = starts[body], ends[body]
        gaps = np.flatnonzero(b_start[1:] != b_end[:-1])
        if len(gaps):
            i = int(gaps[0]) + 1
            self.note("corrupt", f"page data is not contiguous in pfn order: a block at byte {int(b_start[i])} "
                                 f"follows one that ends at byte {int(b_end[i - 1])}")
            return
        if lowest and int(ends[lowest]) > int(b_start[0]):
            self.note("corrupt", f"the shared block at byte {int(starts[lowest])} overlaps the page data")
            return
        # Lost pages: descriptors never written (all zero) or whose data is past the end. A
        # file makedumpfile was stopped in loses a tail: after the first lost page, every page
        # is lost or uses a block written before it (the zero page).
        past = written & (off > length - size)
        lost = blank | past
        if np.any(lost):
            k = int(np.flatnonzero(lost)[0])
            shared = np.isin(off[k:], off[:k][written[:k]]) | (off[k:] == int(starts[lowest]))
            fresh = np.flatnonzero(~lost[k:] & ~shared)
            if len(fresh):
                j = k + int(fresh[0])
                why = "its descriptor never written" if blank[k] else "its data past the end"
                self.note("corrupt", f"the page of pfn {pfn_of(k)} is lost ({why}) but the later pfn {pfn_of(j)} "
                                     f"has data of its own")
                return
            self.note("partial", f"{int(lost.sum())} of {len(lost)} dumped pages lost from pfn {pfn_of(k)} on "
                                 f"({int(blank.sum())} descriptors never written, {int(past.sum())} with data past "
                                 f"the end at byte {length}): makedumpfile cut short")
        keep = ~lost
        self._dumped = dumped[keep]
        self._descs = descs[keep]
        if self.status == "complete":
            self.reason = (f"complete: {len(self._dumped)} pages of {bs} bytes ({self.compression}), "
                           f"max_mapnr {self.max_mapnr}")

    # ---------------------------------------------------------------------------------------

    def present_pfns(self) -> np.ndarray:
        """The 1st bitmap: pages that were in memory (dumped or excluded by the dump level)."""
        return self._present

    def descriptor(self, pfn: int) -> Optional[dict]:
        i = self._index(pfn)
        if i is None:
            return None
        d = self._descs[i]
        return {"offset": int(d["offset"]), "size": int(d["size"]), "flags": int(d["flags"]),
                "page_flags": int(d["page_flags"])}

    def _index(self, pfn: int) -> Optional[int]:
        if not isinstance(pfn, (int, np.integer)) or pfn < 0 or pfn >= 1 << 64:
            return None
        i = int(np.searchsorted(self._dumped, np.uint64(pfn)))
        return i if i < len(self._dumped) and int(self._dumped[i]) == pfn else None

    def read_page(self, pfn: int) -> Optional[bytes]:
        i = self._index(pfn)
        if i is None or pfn in self._bad_pages:
            return None
        d = self._descs[i]
        off, size, flags = int(d["offset"]), int(d["size"]), int(d["flags"])
        data = self.source.read_exact(off, size)
        if data is None:  # the window shrank under us (a file truncated while open)
            return self._bad(pfn, f"the data of pfn {pfn} (byte {off}, {size} bytes) is past the file's end")
        cflag = flags & comp.COMPRESSION_MASK
        if not cflag:
            return data
        try:
            return comp.decompress(cflag, data, self.page_size)
        except comp.PageDataError as e:
            return self._bad(pfn, f"pfn {pfn}: bad compressed data at byte {off} ({e})")

    def _bad(self, pfn: int, message: str) -> None:
        self._bad_pages[pfn] = message
        self.note("corrupt", message)
        return None

    def summary(self) -> dict:
        out = super().summary()
        h, s = self.header, self.sub_header
        if h is not None and h.signature == SIGNATURE:
            out.update(header_version=h.header_version, compression=self.compression, release=h.release,
                       nr_cpus=h.nr_cpus, max_mapnr=self.max_mapnr, incomplete=h.incomplete)
        if s is not None:
            out.update(dump_level=s.dump_level, phys_base=s.phys_base, split=bool(s.split))
        return out
