"""The kernel log in a vmcore: Linux's lockless printk ringbuffer (5.10 and later; Linux 6.1
keeps its log there), found through VMCOREINFO as makedumpfile --dump-dmesg finds it
(docs/vmcore-formats.md, "The kernel log").

VMCOREINFO gives the address of `prb` (a pointer to the ringbuffer) and the offsets and sizes
of its structures: the descriptor ring (2^count_bits descriptors and as many printk_info
records) and the text data ring (2^size_bits bytes). Records run from the ring's tail id to
its head id; a record's text is a block of the data ring that starts with the record's id.

Virtual addresses are translated for x86-64: the kernel image (from __START_KERNEL_map) by
phys_base; anything else (the direct map, a log buffer allocated at boot) through the page
tables from SYMBOL(init_top_pgt), 4- or 5-level as NUMBER(pgtable_l5_enabled) says.

read_dmesg() never raises on what it finds: a log it cannot read is a Dmesg with `problem`
set (and whatever records it read before).
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dumpbed.reader.vmcore.base import Vmcore
from dumpbed.reader.vmcore.notes import vmcoreinfo_int

START_KERNEL_MAP = 0xFFFFFFFF80000000
_U64 = (1 << 64) - 1
PTE_ADDR = 0x000FFFFFFFFFF000
PRESENT, PSE = 0x1, 0x80
DESC_SV_BITS = 64
DESC_FLAGS_SHIFT = DESC_SV_BITS - 2
DESC_ID_MASK = (1 << DESC_FLAGS_SHIFT) - 1
DESC_COMMITTED, DESC_FINALIZED = 1, 2
MAX_COUNT_BITS = 22
MAX_SIZE_BITS = 28
MAX_STRUCT = 4096
U64 = struct.Struct("<Q")

# The VMCOREINFO entries the reader needs, by the name it gives them.
_NEEDED = {
    "prb": "SYMBOL(prb)",
    "rb_desc_ring": "OFFSET(printk_ringbuffer.desc_ring)",
    "rb_text_ring": "OFFSET(printk_ringbuffer.text_data_ring)",
    "dr_count_bits": "OFFSET(prb_desc_ring.count_bits)",
    "dr_descs": "OFFSET(prb_desc_ring.descs)",
    "dr_infos": "OFFSET(prb_desc_ring.infos)",
    "dr_head": "OFFSET(prb_desc_ring.head_id)",
    "dr_tail": "OFFSET(prb_desc_ring.tail_id)",
    "desc_size": "SIZE(prb_desc)",
    "desc_state": "OFFSET(prb_desc.state_var)",
    "desc_lpos": "OFFSET(prb_desc.text_blk_lpos)",
    "lpos_begin": "OFFSET(prb_data_blk_lpos.begin)",
    "lpos_next": "OFFSET(prb_data_blk_lpos.next)",
    "info_size": "SIZE(printk_info)",
    "info_seq": "OFFSET(printk_info.seq)",
    "info_ts": "OFFSET(printk_info.ts_nsec)",
    "info_len": "OFFSET(printk_info.text_len)",
    "data_size_bits": "OFFSET(prb_data_ring.size_bits)",
    "data_data": "OFFSET(prb_data_ring.data)",
    "counter": "OFFSET(atomic_long_t.counter)",
}


@dataclass
class Record:
    seq: int
    ts_nsec: int
    text: str

    def line(self) -> str:
        """As dmesg and makedumpfile --dump-dmesg print it: "[    1.234567] text"."""
        return f"[{self.ts_nsec // 1_000_000_000:5d}.{self.ts_nsec % 1_000_000_000 // 1000:06d}] {self.text}"


@dataclass
class Dmesg:
    records: list[Record] = field(default_factory=list)
    problem: Optional[str] = None  # why the log could not be read (whole)
    source: str = "printk ringbuffer"

    @property
    def ok(self) -> bool:
        return self.problem is None

    def text(self) -> str:
        return "".join(r.line() + "\n" for r in self.records)

    def last_lines(self, n: int = 20) -> list[str]:
        lines = [ln for r in self.records for ln in r.text.split("\n")]
        return lines[-n:]


class _Unreadable(Exception):
    pass


class Translator:
    """x86-64 kernel virtual to physical addresses in one vmcore."""

    def __init__(self, core: Vmcore):
        self.core = core
        vi = core.vmcoreinfo
        phys_base = vmcoreinfo_int(vi, "NUMBER(phys_base)")
        if phys_base is None:
            sub = getattr(core, "sub_header", None)
            phys_base = sub.phys_base if sub is not None else 0
        self.phys_base = phys_base & _U64
        self.pgd = vmcoreinfo_int(vi, "SYMBOL(init_top_pgt)")
        self.levels = 5 if vmcoreinfo_int(vi, "NUMBER(pgtable_l5_enabled)") == 1 else 4
        sme = vmcoreinfo_int(vi, "NUMBER(sme_mask)") or 0
        self.addr_mask = PTE_ADDR & ~sme

    def _u64(self, paddr: int) -> int:
        raw = self.core.read_phys(paddr, 8)
        if raw is None:
            raise _Unreadable(f"physical address {paddr:#x} (a page table) is not in the vmcore")
        return U64.unpack(raw)[0]

    def vtop(self, vaddr: int) -> int:
        if vaddr >= START_KERNEL_MAP:
            return (vaddr - START_KERNEL_MAP + self.phys_base) & _U64  # phys_base may be "negative" (KASLR)
        return self.walk(vaddr)

    def walk(self, vaddr: int) -> int:
        """vaddr through the page tables (4 KiB, 2 MiB and 1 GiB pages)."""
        if self.pgd is None:
            raise _Unreadable(f"{vaddr:#x} is outside the kernel image and VMCOREINFO has no SYMBOL(init_top_pgt)")
        table = self.pgd - START_KERNEL_MAP + self.phys_base
        shifts = [48, 39, 30, 21, 12][5 - self.levels:]
        for level, shift in enumerate(shifts):
            entry = self._u64(table + ((vaddr >> shift) & 0x1FF) * 8)
            if not entry & PRESENT:
                raise _Unreadable(f"{vaddr:#x} is not mapped (level {self.levels - level} entry {entry:#x})")
            last = shift == 12 or (entry & PSE and shift in (21, 30))
            if last:
                base = entry & self.addr_mask & ~((1 << shift) - 1)
                return base | (vaddr & ((1 << shift) - 1))
            table = entry & self.addr_mask
        raise _Unreadable(f"{vaddr:#x}: no page table entry")  # not reached

    def read(self, vaddr: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            n = min(size, 4096 - vaddr % 4096)
            paddr = self.vtop(vaddr)
            chunk = self.core.read_phys(paddr, n)
            if chunk is None:
                raise _Unreadable(f"{vaddr:#x} (physical {paddr:#x}) is not in the vmcore")
            out += chunk
            vaddr += n
            size -= n
        return bytes(out)


def read_dmesg(core: Vmcore) -> Dmesg:
    """The records of the printk ringbuffer, oldest first."""
    vi = core.vmcoreinfo
    if not vi:
        return Dmesg(problem="the vmcore has no VMCOREINFO")
    if "SYMBOL(prb)" not in vi:
        if "SYMBOL(log_buf)" in vi:
            return Dmesg(problem="the kernel keeps its log in log_buf (before Linux 5.10): not read")
        return Dmesg(problem="VMCOREINFO has no SYMBOL(prb)")
    k = {}
    for name, key in _NEEDED.items():
        value = vmcoreinfo_int(vi, key)
        if value is None:
            return Dmesg(problem=f"VMCOREINFO has no (or a malformed) {key}")
        k[name] = value
    if not (0 < k["desc_size"] <= MAX_STRUCT and 0 < k["info_size"] <= MAX_STRUCT):
        return Dmesg(problem=f"SIZE(prb_desc) {k['desc_size']} / SIZE(printk_info) {k['info_size']}: absurd")
    records: list[Record] = []
    try:
        return _walk(Translator(core), k, records)
    except _Unreadable as e:
        return Dmesg(records, problem=str(e))


def _walk(t: Translator, k: dict, records: list[Record]) -> Dmesg:
    u64 = lambda b, o: U64.unpack_from(b, o)[0] if o + 8 <= len(b) else None  # noqa: E731
    prb = U64.unpack(t.read(k["prb"], 8))[0]
    span = max(k["rb_desc_ring"], k["rb_text_ring"]) + 256
    ring = t.read(prb, span)
    dr, tr = k["rb_desc_ring"], k["rb_text_ring"]
    count_bits = struct.unpack_from("<I", ring, dr + k["dr_count_bits"])[0]
    size_bits = struct.unpack_from("<I", ring, tr + k["data_size_bits"])[0]
    if count_bits > MAX_COUNT_BITS or size_bits > MAX_SIZE_BITS:
        raise _Unreadable(f"count_bits {count_bits} / size_bits {size_bits}: absurd")
    count, size = 1 << count_bits, 1 << size_bits
    fields_ = [u64(ring, dr + k["dr_descs"]), u64(ring, dr + k["dr_infos"]), u64(ring, tr + k["data_data"]),
               u64(ring, dr + k["dr_head"] + k["counter"]), u64(ring, dr + k["dr_tail"] + k["counter"])]
    if None in fields_:
        raise _Unreadable("the offsets VMCOREINFO gives run past the printk_ringbuffer")
    descs_at, infos_at, data_at, head, tail = fields_
    descs = t.read(descs_at, count * k["desc_size"])
    infos = t.read(infos_at, count * k["info_size"])
    data = t.read(data_at, size)
    head &= DESC_ID_MASK
    tail &= DESC_ID_MASK
    n = ((head - tail) & DESC_ID_MASK) + 1
    if n > count:
        return Dmesg(records, problem=f"tail id {tail} / head id {head}: more records than the ring's {count}")
    for step in range(n):
        rid = (tail + step) & DESC_ID_MASK
        d = (rid % count) * k["desc_size"]
        state_var = u64(descs, d + k["desc_state"] + k["counter"])
        begin = u64(descs, d + k["desc_lpos"] + k["lpos_begin"])
        nxt = u64(descs, d + k["desc_lpos"] + k["lpos_next"])
        if None in (state_var, begin, nxt):
            return Dmesg(records, problem="OFFSET(prb_desc.*) runs past SIZE(prb_desc)")
        if state_var & DESC_ID_MASK != rid or (state_var >> DESC_FLAGS_SHIFT) not in (DESC_COMMITTED, DESC_FINALIZED):
            continue  # reserved, reusable, or overwritten: not a record to print
        b, e = begin % size, nxt % size
        if b == e:
            continue  # a data-less record
        if b > e:
            b = 0  # the block wrapped: its text is at the ring's start
        b += 8  # the block starts with the record's id
        i = (rid % count) * k["info_size"]
        info_end = i + k["info_size"]
        ts_off, len_off, seq_off = i + k["info_ts"], i + k["info_len"], i + k["info_seq"]
        if max(ts_off + 8, len_off + 2, seq_off + 8) > info_end:
            return Dmesg(records, problem="OFFSET(printk_info.*) runs past SIZE(printk_info)")
        text_len = struct.unpack_from("<H", infos, len_off)[0]
        text_len = max(0, min(text_len, e - b))
        text = data[b:b + text_len].decode("utf-8", "backslashreplace")
        records.append(Record(u64(infos, seq_off), u64(infos, ts_off), text))
    return Dmesg(records)


def makedumpfile_dmesg(path: str | Path, timeout: float = 120) -> Dmesg:
    """The log as the host's makedumpfile reads it (`makedumpfile --dump-dmesg`), for a
    cross-check: its lines as records (seq and time 0, the text with its "[time] " prefix)."""
    exe = shutil.which("makedumpfile")
    if exe is None:
        return Dmesg(problem="makedumpfile is not installed", source="makedumpfile")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dmesg"
        try:
            p = subprocess.run([exe, "--dump-dmesg", str(path), str(out)], capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return Dmesg(problem=f"makedumpfile --dump-dmesg ran over {timeout} s", source="makedumpfile")
        if p.returncode != 0 or not out.exists():
            last = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
            return Dmesg(problem=f"makedumpfile --dump-dmesg failed ({p.returncode}): {last[0]}",
                         source="makedumpfile")
        lines = out.read_text("utf-8", "backslashreplace").splitlines()
    return Dmesg([Record(0, 0, ln) for ln in lines], source="makedumpfile")
