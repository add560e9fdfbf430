"""Reader of ELF vmcores: a copy of Linux's /proc/vmcore, or what `makedumpfile -E` writes
(docs/vmcore-formats.md). ELF64 little-endian ET_CORE only (ELF32 and big-endian cores are
unsupported).

The PT_NOTE segments hold the NT_PRSTATUS notes (one per CPU) and the VMCOREINFO note. Each
PT_LOAD maps physical memory [p_paddr, p_paddr + p_memsz) to the file at p_offset; only its
first p_filesz bytes are in the file (makedumpfile -E leaves excluded pages out: they are not
dumped). Segments may overlap in physical memory (/proc/vmcore's kernel-text segment repeats
part of RAM): the first segment that holds a byte is read. A page only partly covered by the
segments reads as zero outside them.

Parsed with struct (pyelftools raises on hostile input; the tests cross-check with it).
"""
from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np

from dumpbed.reader.vmcore.base import Vmcore
from dumpbed.reader.vmcore.notes import MAX_NOTE_BYTES, vmcoreinfo_int
from dumpbed.reader.vmcore.source import Source

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR_INFO = struct.Struct("<I")  # sh_info, at byte 44 of an Elf64_Shdr
PT_LOAD, PT_NOTE = 1, 4
ET_CORE = 4
PN_XNUM = 0xFFFF
DUMP_ELF_INCOMPLETE = 0x1  # makedumpfile sets it in e_flags when it stopped part-way
MAX_PHNUM = 1 << 22
MACHINES = {62: "x86_64", 183: "aarch64", 243: "riscv", 21: "ppc64", 22: "s390", 3: "i386", 40: "arm"}


@dataclass
class ElfHeader:
    ei_class: int
    ei_data: int
    e_type: int
    e_machine: int
    e_version: int
    e_phoff: int
    e_shoff: int
    e_flags: int
    e_phnum: int  # the real count (from section 0's sh_info when the header says PN_XNUM)

    @property
    def machine(self) -> str:
        return MACHINES.get(self.e_machine, str(self.e_machine))

    @property
    def incomplete(self) -> bool:
        return bool(self.e_flags & DUMP_ELF_INCOMPLETE)


@dataclass
class Segment:
    """A PT_LOAD: physical [paddr, paddr + memsz), its first filesz bytes at offset."""
    index: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    available: int = 0  # bytes of filesz the file holds (less when it ends inside the segment)


class ElfVmcore(Vmcore):
    format = "elf"

    def __init__(self, source: Source):
        super().__init__(source)
        self.segments: list[Segment] = []
        self._by_paddr: list[Segment] = []
        self._starts: list[int] = []
        self._max_end: list[int] = []
        self._parse()

    def _parse(self) -> None:
        src = self.source
        raw = src.read_exact(0, EHDR.size)
        if raw is None:
            self.note("corrupt", f"the file ends at byte {src.length}, inside the ELF header")
            return
        (ident, e_type, e_machine, e_version, _entry, phoff, shoff, e_flags, _ehsize, phentsize, phnum, _shentsize,
         _shnum, _shstrndx) = EHDR.unpack(raw)
        if ident[4] == 1:
            self.note("unsupported", "an ELF32 core: this reader reads ELF64 vmcores")
            return
        if ident[4] != 2:
            self.note("corrupt", f"ELF class {ident[4]}: not ELF32 or ELF64")
            return
        if ident[5] == 2:
            self.note("unsupported", "a big-endian ELF core: this reader reads little-endian vmcores")
            return
        if ident[5] != 1:
            self.note("corrupt", f"ELF data encoding {ident[5]}: not little- or big-endian")
            return
        if e_type != ET_CORE:
            self.note("unsupported", f"ELF type {e_type}, not a core (ET_CORE {ET_CORE})")
            return
        if phnum == PN_XNUM:
            sh = src.read_exact(shoff + 44, 4) if shoff else None
            if sh is None:
                self.note("corrupt", f"e_phnum is PN_XNUM but section header 0 (at byte {shoff}) is not in the file")
                return
            phnum = SHDR_INFO.unpack(sh)[0]
        self.header = h = ElfHeader(ident[4], ident[5], e_type, e_machine, e_version, phoff, shoff, e_flags, phnum)
        if phentsize != PHDR.size:
            self.note("corrupt", f"e_phentsize {phentsize}, not {PHDR.size}")
            return
        if phnum == 0 or phnum > MAX_PHNUM:
            self.note("corrupt", f"e_phnum {phnum}: not 1 to {MAX_PHNUM}")
            return
        table = src.read_exact(phoff, phnum * PHDR.size)
        if table is None:
            self.note("corrupt", f"the program header table (byte {phoff}, {phnum} entries) runs past the file's "
                                 f"end at byte {src.length}")
            return
        if h.incomplete:
            self.note("partial", "e_flags has makedumpfile's incomplete flag: it stopped part-way")
        loads, note_data = [], b""
        for i in range(phnum):
            p_type, _pf, off, vaddr, paddr, filesz, memsz, _align = PHDR.unpack_from(table, i * PHDR.size)
            if p_type == PT_NOTE:
                if filesz > MAX_NOTE_BYTES or off + filesz > src.length:
                    self.note("corrupt", f"PT_NOTE {i} (byte {off}, {filesz} bytes) is not in the file")
                    return
                note_data += src.read(off, filesz)
            elif p_type == PT_LOAD:
                if filesz > memsz:
                    self.note("corrupt", f"PT_LOAD {i}: p_filesz {filesz} over p_memsz {memsz}")
                    return
                if off + filesz >= 1 << 64 or paddr + memsz >= 1 << 64:
                    self.note("corrupt", f"PT_LOAD {i}: offset {off} / paddr {paddr:#x} + sizes wrap around")
                    return
                loads.append(Segment(i, off, vaddr, paddr, filesz, memsz))
        if note_data:
            self.read_notes(note_data, "PT_NOTE")
        ps = vmcoreinfo_int(self.vmcoreinfo, "PAGESIZE")
        if ps is not None:
            if ps < 1024 or ps > 1 << 20 or ps & (ps - 1):
                self.note("corrupt", f"VMCOREINFO's PAGESIZE {ps} is not a page size")
                return
            self.page_size = ps
        if not loads:
            self.note("corrupt", "no PT_LOAD segment: no memory in the core")
            return
        self._place(loads)

    def _place(self, loads: list[Segment]) -> None:
        length = self.source.length
        in_file = sorted((s for s in loads if s.filesz), key=lambda s: s.offset)
        for a, b in zip(in_file, in_file[1:]):
            if a.offset + a.filesz > b.offset:
                self.note("corrupt", f"PT_LOAD {a.index} and {b.index} overlap in the file (bytes {a.offset} and "
                                     f"{b.offset})")
                return
        # A file cut short loses its last segments' data (they are written in file order).
        cut = [s for s in in_file if s.offset + s.filesz > length]
        if cut:
            first = cut[0]
            if first.offset > length + self.page_size:
                self.note("corrupt", f"PT_LOAD {first.index} starts at byte {first.offset}, past the file's end at "
                                     f"byte {length}")
                return
            self.note("partial", f"the file ends at byte {length}: {len(cut)} of {len(in_file)} PT_LOAD segments are "
                                 f"not whole (from PT_LOAD {first.index}, paddr {first.paddr:#x}): cut short")
        for s in loads:
            s.available = max(0, min(s.filesz, length - s.offset))
            if s.available < s.filesz:  # a page the file ends in is not held
                s.available = max(0, (s.paddr + s.available) // self.page_size * self.page_size - s.paddr)
        self.segments = loads
        held = [s for s in loads if s.available]
        held.sort(key=lambda s: (s.paddr, s.index))
        self._by_paddr = held
        self._starts = [s.paddr for s in held]
        running = 0
        for s in held:
            running = max(running, s.paddr + s.available)
            self._max_end.append(running)
        ps = self.page_size
        ranges = [(s.paddr // ps, -(-(s.paddr + s.available) // ps)) for s in held]
        total = sum(e - b for b, e in ranges)
        if total > (length // ps) + 2 * len(ranges):  # cannot happen with whole, disjoint segments
            self.note("corrupt", f"the segments claim {total} pages, more than the file holds")
            return
        pfns = np.concatenate([np.arange(b, e, dtype=np.uint64) for b, e in ranges]) if ranges \
            else np.zeros(0, dtype=np.uint64)
        self._dumped = np.unique(pfns)
        if self.status == "complete":
            excluded = sum(-(-(s.memsz - s.filesz) // ps) for s in loads)
            self.reason = (f"complete: {len(self._dumped)} pages of {ps} bytes in {len(loads)} PT_LOAD segments"
                           + (f" ({excluded} pages excluded)" if excluded else ""))

    def read_page(self, pfn: int) -> Optional[bytes]:
        if not self.is_dumped(pfn):
            return None
        ps = self.page_size
        lo, hi = pfn * ps, (pfn + 1) * ps
        page = bytearray(ps)
        covered = []
        i = bisect.bisect_left(self._starts, hi) - 1
        while i >= 0 and self._max_end[i] > lo:
            s = self._by_paddr[i]
            a, b = max(lo, s.paddr), min(hi, s.paddr + s.available)
            if a < b:
                covered.append((s.index, a, b, s))
            i -= 1
        for _, a, b, s in sorted(covered, key=lambda c: c[0], reverse=True):  # the first segment wins
            data = self.source.read(s.offset + (a - s.paddr), b - a)
            page[a - lo:a - lo + len(data)] = data
        return bytes(page)

    def summary(self) -> dict:
        out = super().summary()
        if self.header is not None:
            out.update(machine=self.header.machine, segments=len(self.segments),
                       incomplete=self.header.incomplete)
        return out
