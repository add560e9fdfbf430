"""The ground truth of a crash: guest RAM and CPU registers, taken while the VM is stopped."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Optional

from dumpbed import progress
from dumpbed.machine.memory import ram_regions
from dumpbed.machine.qemu import Machine

# The header's register list (docs/dump-format.md), minus the reserved slot.
REGISTER_NAMES = (
    "rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rip rflags "
    "cs ss ds es fs gs fs_base gs_base cr0 cr2 cr3 cr4 efer"
).split()

_SIMPLE = re.compile(r"\b(R[A-Z0-9]{1,2})\s*=([0-9a-fA-F]+)")
_SEGMENT = re.compile(r"^(ES|CS|SS|DS|FS|GS)\s*=([0-9a-fA-F]+)\s+([0-9a-fA-F]+)", re.M)
_CONTROL = re.compile(r"\b(CR[0234]|EFER)=([0-9a-fA-F]+)")


def parse_info_registers(text: str) -> dict[str, int]:
    """CPU 0's registers from HMP `info registers` (64-bit layout) as {name: value}."""
    regs: dict[str, int] = {}
    for name, value in _SIMPLE.findall(text):
        key = "rflags" if name == "RFL" else name.lower()
        if key in REGISTER_NAMES:
            regs.setdefault(key, int(value, 16))
    for name, selector, base in _SEGMENT.findall(text):
        regs[name.lower()] = int(selector, 16)
        if name in ("FS", "GS"):
            regs[f"{name.lower()}_base"] = int(base, 16)
    for name, value in _CONTROL.findall(text):
        regs[name.lower()] = int(value, 16)
    return regs


FPU_FILE = "fpu.json"
_FPU_CONTROL = re.compile(r"\bFCW=([0-9a-fA-F]+) FSW=([0-9a-fA-F]+) \[ST=\d\] FTW=([0-9a-fA-F]+) MXCSR=([0-9a-fA-F]+)")
_FPR = re.compile(r"\bFPR(\d)=([0-9a-fA-F]{16}) ([0-9a-fA-F]{4})")
_XMM = re.compile(r"\bXMM(\d\d)=([0-9a-fA-F]{16}) ([0-9a-fA-F]{16})")


def parse_fpu(text: str) -> dict:
    """CPU 0's x87/SSE state from `info registers` (QEMU prints it with CPU_DUMP_FPU): FCW, FSW,
    the abridged tag byte FTW (bit i: physical register i holds a value), MXCSR, the eight
    physical x87 registers FPR0..7 as [mantissa, sign+exponent] and XMM0..15 as [high, low]
    64-bit halves. {} when the text has none (no SSE, or AVX shown as YMM instead)."""
    control = _FPU_CONTROL.search(text)
    fpr = {int(i): [int(lo, 16), int(hi, 16)] for i, lo, hi in _FPR.findall(text)}
    xmm = {int(i): [int(hi, 16), int(lo, 16)] for i, hi, lo in _XMM.findall(text)}
    if not control or len(fpr) != 8 or len(xmm) != 16:
        return {}
    fcw, fsw, ftw, mxcsr = (int(v, 16) for v in control.groups())
    return {"fcw": fcw, "fsw": fsw, "ftw": ftw, "mxcsr": mxcsr,
            "fpr": [fpr[i] for i in range(8)], "xmm": [xmm[i] for i in range(16)]}


_STI = 0xFB


def in_interrupt_shadow(machine: Machine) -> bool:
    """Whether CPU 0 stopped in an interrupt shadow: right after an STI (the one-byte 0xFB
    before RIP), or wherever QEMU says so (`info registers` II=1; under this host's PV-mode KVM
    it never did)."""
    text = machine.qmp.hmp("info registers")
    if re.search(r"\bII=1\b", text):
        return True
    rip = parse_info_registers(text).get("rip")
    if not rip:
        return False
    before = machine.qmp.hmp(f"x /1xb 0x{rip - 1:x}")
    return re.search(rf":\s*0x{_STI:02x}\b", before, re.I) is not None


# How often stop_for_snapshot lets the guest run on, out of an interrupt or an STI's shadow.
STOP_TRIES = 20


def stop_for_snapshot(machine: Machine) -> int:
    """Stop the VM at a moment CPU 0 has no interrupt in service and is not in an interrupt
    shadow, and return the stops it took.

    The NMI injected after the snapshot must be the next thing the CPU does. Two places it is
    not: an interrupt the stop caught between the local APIC and the guest (KVM delivers it
    first on the next entry) runs its handler before the NMI, and a guest inside its handler is
    in the same case; and right after an STI the NMI waits for the shadow to end, which this
    host's PV-mode KVM gives it only at the guest's next exit. Either way the crash would not
    happen where the snapshot's registers say. The second was the cause of a crash during
    runtime I/O with nine registers off, about once in 50 CI runs: stopped between the shell's
    STI and its read of the UART's status (RAX 1, idle_hook's answer), the guest took the NMI
    after the read (RAX 0x60). From such a stop the guest is let run on a millisecond and
    stopped again. After STOP_TRIES the VM stays stopped where it is: a guest that never ends
    its interrupts is judged as it is."""
    tries = 1
    machine.stop()
    while tries < STOP_TRIES and (machine.interrupts_in_service() or in_interrupt_shadow(machine)):
        machine.cont()
        time.sleep(0.001)
        machine.stop()
        tries += 1
    return tries


def take(machine: Machine, snapshot_dir: Path, ram_bytes: int, max_below_4g: Optional[int] = None) -> dict:
    """Save RAM (pmemsave, one file per region) and registers. The VM must be stopped."""
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    regions = []
    with progress.task("snapshot RAM", total=ram_bytes, unit="bytes") as bar:
        for phys, length in ram_regions(ram_bytes, max_below_4g):
            name = f"mem-{phys:016x}.bin"
            # QEMU writes the file itself: the path must be absolute (its cwd is a scratch dir).
            machine.qmp.command(
                "pmemsave", {"val": phys, "size": length, "filename": str((snapshot_dir / name).resolve())},
                timeout=120,
            )
            regions.append({"phys": phys, "length": length, "file": name})
            bar.advance(length)
    (snapshot_dir / "memory.json").write_text(json.dumps({"regions": regions}, indent=1) + "\n")
    text = machine.qmp.hmp("info registers")
    (snapshot_dir / "info-registers.txt").write_text(text)
    registers = parse_info_registers(text)
    (snapshot_dir / "registers.json").write_text(json.dumps(registers, indent=1) + "\n")
    (snapshot_dir / FPU_FILE).write_text(json.dumps(parse_fpu(text), indent=1) + "\n")
    return registers
