"""Export a dump as an ELF64 core file that gdb, crash-style tools and pyelftools open
(`dumpbed export RUN|IMAGE --elf FILE`, docs/export.md).

The core is what a Linux x86-64 core looks like to its readers: ET_CORE, EM_X86_64, a PT_NOTE
first with NT_PRSTATUS (the crash record's general registers in the elf_prstatus /
user_regs_struct layout) and NT_PRFPREG (the crash record's 512-byte FXSAVE image), then one
PT_LOAD per exported area, p_vaddr = p_paddr = the area's physical address (the dumpbed guest
is identity-mapped), its bytes copied from the dump. Written with struct only: no library
writes ELF cores.

A complete dump exports every area; a partial dump only the areas whose every chunk the leader
seals and the reader verified (Dump.area_vouched). A corrupt, unsupported or absent dump is an
error (DumpbedError) and no file is written. The file is written beside its destination under
a temporary name and put in place at the end: an existing file is never overwritten unless
`force`, and a failed export leaves nothing behind.
"""
from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dumpbed.errors import DumpbedError
from dumpbed.reader import dumpfmt

# ELF constants (System V gABI, x86-64 psABI, Linux's elf.h)
ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE = 2, 1, 1, 0
ET_CORE, EM_X86_64 = 4, 62
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
NT_PRSTATUS, NT_PRFPREG = 1, 2
NOTE_NAME = b"CORE"
PAGE = 4096
_STEP = 8 << 20  # bytes copied at a time

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # 64 bytes
PHDR = struct.Struct("<IIQQQQQQ")  # 56 bytes
NHDR = struct.Struct("<III")

# user_regs_struct (Linux, arch/x86/include/asm/user_64.h), in order: 27 x u64.
USER_REGS = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
    "rsi", "rdi", "orig_rax", "rip", "cs", "rflags", "rsp", "ss", "fs_base", "gs_base", "ds",
    "es", "fs", "gs",
)
# elf_prstatus (Linux x86-64): elf_siginfo (3 x i32), pr_cursig (i16, 2 pad), pr_sigpend,
# pr_sighold (u64), pr_pid, pr_ppid, pr_pgrp, pr_sid (i32), four timevals (2 x i64 each),
# pr_reg (27 x u64), pr_fpvalid (i32, 4 pad): 336 bytes, pr_reg at 112.
PRSTATUS = struct.Struct("<iiih2xQQiiii8q27Qi4x")
PRSTATUS_REG_OFFSET = 112
assert PRSTATUS.size == 336
FXSAVE_BYTES = 512

# The signal a core says the "process" got, by crash (gdb prints it as the reason).
SIGILL, SIGTRAP, SIGABRT, SIGFPE, SIGKILL, SIGSEGV, SIGBUS = 4, 5, 6, 8, 9, 11, 7
_VECTOR_SIGNALS = {0: SIGFPE, 6: SIGILL, 8: SIGSEGV, 13: SIGSEGV, 14: SIGSEGV, 16: SIGFPE, 19: SIGFPE}


def crash_signal(reason: int, vector: int) -> int:
    """NMI: SIGTRAP, panic: SIGABRT, an exception: by its vector (SIGSEGV when unknown)."""
    if reason == dumpfmt.CrashReason.NMI:
        return SIGTRAP
    if reason == dumpfmt.CrashReason.PANIC:
        return SIGABRT
    return _VECTOR_SIGNALS.get(vector, SIGSEGV)


def prstatus(registers: dict[str, int], signal: int, fpvalid: bool) -> bytes:
    """An NT_PRSTATUS descriptor: pid 1, the signal, the registers (orig_rax -1)."""
    regs = dict(registers, orig_rax=(1 << 64) - 1)
    return PRSTATUS.pack(signal, 0, 0, signal, 0, 0, 1, 0, 1, 1, *([0] * 8),
                         *(regs.get(name, 0) & ((1 << 64) - 1) for name in USER_REGS), int(fpvalid))


def note(kind: int, desc: bytes) -> bytes:
    """One ELF note, name "CORE", name and descriptor each padded to 4 bytes."""
    name = NOTE_NAME + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)
    return NHDR.pack(len(name), len(desc), kind) + pad(name) + pad(desc)


@dataclass
class Export:
    """What export() wrote."""
    path: Path
    status: str  # the dump's classification: complete or partial
    areas: list[dumpfmt.Area] = field(default_factory=list)  # exported, in PT_LOAD order
    left_out: list[dumpfmt.Area] = field(default_factory=list)  # listed but not usable (partial)
    registers_from: str = "crash record"  # or "header" (no usable crash record: no NT_PRFPREG)
    bytes: int = 0  # size of the core file
    symbols: Optional[Path] = None  # the booted kernel's symbol file (a run's scenario.json), for gdb


def usable_areas(dump: dumpfmt.Dump) -> tuple[list[dumpfmt.Area], list[dumpfmt.Area]]:
    """(exported in PT_LOAD order, left out): every area of a complete dump; of a partial one
    those the leader seals and the reader verified."""
    memory = {c.index for c in dump.components if c.kind in (dumpfmt.ComponentKind.KERNEL, dumpfmt.ComponentKind.RAM)}
    # The KERNEL and RAM areas (memory as it was) first: where another component's area
    # overlaps them (the crash record, a STAGED area produced in a buffer at dump time), a
    # reader that takes the first PT_LOAD holding an address (gdb does) sees that memory.
    ordered = sorted(dump.areas, key=lambda a: a.component not in memory)
    if dump.status == "complete":
        return ordered, []
    return [a for a in ordered if dump.area_vouched(a)], [a for a in dump.areas if not dump.area_vouched(a)]


def write_core(dump: dumpfmt.Dump, image: dumpfmt.Image, dest: Path, force: bool = False) -> Export:
    """Write the core of a complete or partial dump read from `image` to dest."""
    if dump.status not in ("complete", "partial"):
        why = dump.first_inconsistency or dump.reason
        raise DumpbedError(f"no dump to export: the dump is {dump.status} ({why})")
    h = dump.header
    areas, left_out = usable_areas(dump)
    rec = dump.crash_record
    rec_ok = rec is not None and rec.magic == dumpfmt.CRASH_MAGIC and 0 <= rec.area < len(dump.areas) \
        and dump.areas[rec.area] in areas
    registers = rec.register_dict() if rec_ok else h.register_dict()
    notes = note(NT_PRSTATUS, prstatus(registers, crash_signal(h.crash_reason, h.crash_vector), rec_ok))
    if rec_ok:
        notes += note(NT_PRFPREG, bytes(rec.fxsave[:FXSAVE_BYTES]).ljust(FXSAVE_BYTES, b"\0"))

    phnum = 1 + len(areas)
    if phnum >= 0xFFFF:
        raise DumpbedError(f"{len(areas)} areas: more than an ELF program header table holds")
    note_offset = EHDR.size + phnum * PHDR.size
    pos = note_offset + len(notes)
    placed = []  # (area, file offset)
    for a in areas:
        pos += (a.phys_addr - pos) % PAGE  # p_offset = p_vaddr modulo the page: p_align 4096
        placed.append((a, pos))
        pos += a.length
    total = pos

    ident = bytes([0x7F]) + b"ELF" + bytes([ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE]) + bytes(8)
    head = EHDR.pack(ident, ET_CORE, EM_X86_64, EV_CURRENT, 0, EHDR.size, 0, 0, EHDR.size, PHDR.size, phnum,
                     64, 0, 0)
    head += PHDR.pack(PT_NOTE, 0, note_offset, 0, 0, len(notes), 0, 4)
    for a, off in placed:
        head += PHDR.pack(PT_LOAD, PF_R | PF_W | PF_X, off, a.phys_addr, a.phys_addr, a.length, a.length, PAGE)

    dest = Path(dest)
    if dest.exists() and not force:
        raise DumpbedError(f"{dest}: already exists (--force overwrites it)")
    if dest.is_dir():
        raise DumpbedError(f"{dest}: a directory, not a file to write")
    if not dest.parent.is_dir():
        raise DumpbedError(f"{dest}: no directory {dest.parent} to write it in")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent if str(dest.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            out.write(notes)
            for a, off in placed:
                out.seek(off)  # the padding between segments stays a hole
                for done in range(0, a.length, _STEP):
                    n = min(_STEP, a.length - done)
                    data = dump.read_area(image, a, done, n)  # an AreaDataError is a DumpbedError
                    if len(data) != n:
                        raise DumpbedError(f"area {a.index} ({a.name}): the image ends inside its data")
                    out.write(data)
            out.truncate(total)
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, dest)
        else:
            try:
                os.link(tmp, dest)  # fails rather than replace a file that appeared meanwhile
            except FileExistsError:
                raise DumpbedError(f"{dest}: already exists (--force overwrites it)") from None
            os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return Export(Path(dest), dump.status, [a for a, _ in placed], left_out,
                  "crash record" if rec_ok else "header", total)


def export(source: str | Path, dest: str | Path, force: bool = False) -> Export:
    """Export the dump of a run directory (its dump of record, looked for by the run's dump id)
    or of a bare image (its dump partition found through the GPT) to dest."""
    from dumpbed.images import gpt

    source = Path(source)
    dump_id = None
    symbols = None
    if source.is_dir():
        from dumpbed.oracles.devices import dump_devices, dump_of_record
        from dumpbed.oracles.validate import load_scenario

        if not (source / "scenario.json").exists():
            raise DumpbedError(f"{source}: not a run directory (no scenario.json)")
        scenario = load_scenario(source / "scenario.json")
        dump_id = scenario["dump_id"]
        symbols = (scenario.get("guest") or {}).get("symbols")
        targets = dump_devices(source, scenario)
        dumps, images = {}, {}
        for t in targets:
            if t.image.is_file():
                images[t.role] = t.image
                dumps[t.role] = dumpfmt.read(t.image, t.layout.dump_offset, t.layout.dump_size,
                                             t.layout.block_size, dump_id=dump_id)
        if "primary" not in dumps:
            raise DumpbedError(f"{targets[0].image}: dump image missing")
        role = dump_of_record(dumps)
        path, dump = images[role], dumps[role]
    elif source.is_file():
        path = source
        offset, size, block = gpt.find_dump_partition(source)
        dump = dumpfmt.read(source, offset, size, block)
    else:
        raise DumpbedError(f"{source}: no such run directory or dump image")
    with dumpfmt.Image(path) as image:
        result = write_core(dump, image, Path(dest), force)
    result.symbols = Path(symbols) if symbols else None
    return result
