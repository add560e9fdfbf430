"""ELF notes as Linux's /proc/vmcore carries them (one PT_NOTE of NT_PRSTATUS notes, one per
CPU, and the VMCOREINFO note), and the VMCOREINFO text (KEY=VALUE lines).

Both parsers are total: malformed input ends the walk and says why; nothing raises.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

NT_PRSTATUS = 1
VMCOREINFO_NAME = "VMCOREINFO"
MAX_VMCOREINFO_BYTES = 1 << 20  # the kernel's is one page (VMCOREINFO_BYTES); far above that is hostile
MAX_NOTE_BYTES = 16 << 20  # a PT_NOTE of 16 MiB is thousands of CPUs' worth
MAX_NOTES = 65536

_NHDR = struct.Struct("<III")
# elf_prstatus on x86-64: pr_pid at 32, pr_reg (27 x u64) at 112, rip is pr_reg[16].
_PRSTATUS_PID = 32
_PRSTATUS_REG = 112
_PRSTATUS_BYTES = 336
_RIP, _RSP = 16, 19


@dataclass
class Note:
    name: str
    type: int
    desc: bytes
    offset: int  # of the note header within the note data


@dataclass
class CpuState:
    """What an x86-64 NT_PRSTATUS tells (None fields when the descriptor is shorter)."""
    pid: Optional[int]
    rip: Optional[int]
    rsp: Optional[int]


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def parse_notes(data: bytes) -> tuple[list[Note], Optional[str]]:
    """(the notes, why the walk stopped early or None). A zero-filled tail (the kernel pads
    its notes buffers) ends the walk quietly."""
    notes: list[Note] = []
    pos = 0
    while pos + _NHDR.size <= len(data):
        namesz, descsz, ntype = _NHDR.unpack_from(data, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break
        if len(notes) >= MAX_NOTES:
            return notes, f"more than {MAX_NOTES} notes"
        name_at = pos + _NHDR.size
        desc_at = name_at + _pad4(namesz)
        end = desc_at + _pad4(descsz)
        if namesz > len(data) or descsz > len(data) or desc_at + descsz > len(data):
            return notes, f"note {len(notes)} at byte {pos}: namesz {namesz} / descsz {descsz} run past the " \
                          f"{len(data)} bytes of notes"
        name = data[name_at:name_at + namesz].split(b"\0", 1)[0].decode("ascii", "replace")
        notes.append(Note(name, ntype, bytes(data[desc_at:desc_at + descsz]), pos))
        pos = end
    return notes, None


def parse_vmcoreinfo(raw: bytes) -> tuple[dict[str, str], Optional[str]]:
    """The KEY=VALUE lines of a VMCOREINFO text; (dict, problem or None). The text ends at
    its first NUL (the kernel's buffer is a zero-padded page)."""
    text = raw.split(b"\0", 1)[0]
    if not text.strip():
        return {}, "VMCOREINFO is empty"
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError as e:
        return {}, f"VMCOREINFO is not ASCII text (byte {e.start})"
    info: dict[str, str] = {}
    for n, line in enumerate(decoded.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            return info, f"VMCOREINFO line {n} is not KEY=VALUE: {line[:60]!r}"
        info[key] = value
    return info, None


def vmcoreinfo_note(notes: list[Note]) -> Optional[Note]:
    for n in notes:
        if n.name == VMCOREINFO_NAME:
            return n
    return None


def cpu_states(notes: list[Note]) -> list[CpuState]:
    """One CpuState per NT_PRSTATUS note named CORE (x86-64 layout), in note order."""
    out = []
    for n in notes:
        if n.name != "CORE" or n.type != NT_PRSTATUS:
            continue
        d = n.desc
        pid = struct.unpack_from("<i", d, _PRSTATUS_PID)[0] if len(d) >= _PRSTATUS_PID + 4 else None
        regs_ok = len(d) >= _PRSTATUS_BYTES
        rip = struct.unpack_from("<Q", d, _PRSTATUS_REG + 8 * _RIP)[0] if regs_ok else None
        rsp = struct.unpack_from("<Q", d, _PRSTATUS_REG + 8 * _RSP)[0] if regs_ok else None
        out.append(CpuState(pid, rip, rsp))
    return out


def vmcoreinfo_int(info: dict[str, str], key: str, base: Optional[int] = None) -> Optional[int]:
    """A VMCOREINFO value as an integer: SYMBOL() and KERNELOFFSET are hex (no 0x), OFFSET(),
    SIZE(), LENGTH(), NUMBER(), PAGESIZE decimal. None when missing or malformed."""
    value = info.get(key)
    if value is None:
        return None
    if base is None:
        base = 16 if key.startswith("SYMBOL(") or key == "KERNELOFFSET" else 10
    try:
        return int(value.strip(), base)
    except ValueError:
        return None
