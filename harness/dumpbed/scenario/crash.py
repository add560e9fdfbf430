"""Crash recipes: each is data (a name, what it does, what the crash record must then say) plus
the functions that inject it.

A recipe's expectation is what the `crash-record` oracle (harness/dumpbed/oracles/validate.py) compares the
dump's header with: reason, vector, error code and faulting address, the guest function the
recorded rip must lie in, and which registers must still equal the ground truth. For an NMI that
hits the idle guest every register does; for a crash typed at the console the ground truth is
taken just before the Enter, so the general registers, rip, rsp and rflags have moved on by the
time the exception comes, and only what the shell cannot change is compared (control
registers, EFER, segment selectors, fs/gs base).
"""
from __future__ import annotations

import json
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from dumpbed.errors import DumpbedError
from dumpbed.machine import resultchan
from dumpbed.machine.qemu import Machine

if TYPE_CHECKING:
    from dumpbed.guests.profiles import Console

NMI, PANIC, EXCEPTION = 1, 2, 3  # crash_reason (docs/dump-format.md)
NO_VECTOR = 0xFFFFFFFF
SYMBOLS_FILE = "crash-symbols.json"  # the guest symbols a recipe needs, from the kernel that ran
NESTED_FILE = "nested.json"  # what the nested recipe did during the dump
NESTED_NOTE = "NMI during the crash dump: ignored"  # the guest's console line for it
# What a console-typed crash leaves as it was at the ground truth.
STABLE_REGISTERS = ("cr0", "cr3", "cr4", "efer", "cs", "ss", "ds", "es", "fs", "gs", "fs_base", "gs_base")
PF_ADDR = 0x00000DEAD0000BAD  # guest/kern/crash.h CRASH_TEST_PF_ADDR
GP_SELECTOR = 0x80  # CRASH_TEST_GP_SELECTOR
HANG_SECONDS = 2  # the ib700 timeout the `hang` command arms


@dataclass(frozen=True)
class Crash:
    name: str
    description: str
    reason: int  # the crash_reason the dump header must carry (docs/dump-format.md)
    vector: int
    inject: Callable[[Machine], None]  # called with the VM stopped, after the ground truth
    # Called while the VM still runs, before it is stopped for the ground truth (e.g. type a
    # console command without its Enter, which inject() then sends): (machine, the guest
    # profile's Console).
    prepare: Optional[Callable[[Machine, "Console"], None]] = None
    error_code: int = 0  # crash_error_code
    fault_addr: int = 0  # crash_fault_addr (CR2 for a page fault)
    # Registers that must equal the ground truth; None: every register in the snapshot.
    same_registers: Optional[tuple[str, ...]] = None
    rip_in: Optional[str] = None  # the guest function the recorded rip must lie in
    # The recorded rip is a return address (a panic records its caller's return address: the
    # end of `panic` itself, whose last instruction is the noreturn call): (start, end].
    rip_is_return: bool = False
    # [start symbol, end symbol) the recorded CR2 must lie in (the double fault's guard page).
    cr2_in: Optional[tuple[str, str]] = None
    rsp_is: Optional[str] = None  # a symbol the recorded rsp must equal (the overflowed stack's bottom)
    qemu_args: tuple[str, ...] = ()  # devices and actions the crash needs
    extra_seconds: float = 0.0  # added to the dump deadline (time from inject to the crash)
    # Called after the VM continues with the crash injected, before the harness waits for DONE:
    # (machine, result_log, deadline in seconds). The nested recipe's second NMI.
    during_dump: Optional[Callable[[Machine, Path, float], None]] = None
    symbols: tuple[str, ...] = field(default=())  # guest symbols the expectation needs

    def needed_symbols(self) -> tuple[str, ...]:
        names = list(self.symbols)
        if self.rip_in:
            names.append(self.rip_in)
        if self.cr2_in:
            names += list(self.cr2_in)
        if self.rsp_is:
            names.append(self.rsp_is)
        return tuple(dict.fromkeys(names))


# --------------------------------------------------------------------------------------------
# Guest symbols (the ELF64 symbol table of the kernel that runs: BootFiles.symbols)
# --------------------------------------------------------------------------------------------


def elf_symbols(path: Path) -> dict[str, tuple[int, int]]:
    """{name: (address, size)} of the defined symbols of an ELF64 little-endian file."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise DumpbedError(f"{path}: not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    out: dict[str, tuple[int, int]] = {}
    for sh in sections:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[sh[6]]
        str_off = strtab[4]
        for off in range(sh[4], sh[4] + sh[5], 24):
            name_off, info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", data, off)
            if shndx == 0 or name_off == 0:
                continue
            end = data.index(b"\0", str_off + name_off)
            name = data[str_off + name_off:end].decode("ascii", "replace")
            if (info & 0xF) in (0, 1, 2):  # NOTYPE, OBJECT, FUNC
                out.setdefault(name, (value, size))
    return out


def save_symbols(crash: Crash, symbols: Optional[Path], run_dir: Path) -> None:
    """Write the symbols the recipe's expectation needs, from the symbol table of the kernel that
    runs (the guest profile finds it), to the run."""
    names = crash.needed_symbols()
    if not names:
        return
    if symbols is None:  # the preflight refuses this; a direct Machine user may not have checked
        raise DumpbedError(f"crash {crash.name} needs the kernel's symbols ({', '.join(names)}): none were found")
    table = elf_symbols(symbols)
    missing = [n for n in names if n not in table]
    if missing:
        raise DumpbedError(f"{symbols}: no symbol {', '.join(missing)}")
    (Path(run_dir) / SYMBOLS_FILE).write_text(
        json.dumps({n: {"address": table[n][0], "size": table[n][1]} for n in names}, indent=1) + "\n")


def load_symbols(run_dir: Optional[Path]) -> Optional[dict[str, tuple[int, int]]]:
    if run_dir is None or not (Path(run_dir) / SYMBOLS_FILE).is_file():
        return None
    data = json.loads((Path(run_dir) / SYMBOLS_FILE).read_text())
    return {name: (int(v["address"]), int(v["size"])) for name, v in data.items()}


# --------------------------------------------------------------------------------------------
# Injection
# --------------------------------------------------------------------------------------------


def _inject_nmi(machine: Machine) -> None:
    machine.qmp.command("inject-nmi")


def _type_command(name: str, timeout: float = 30.0) -> Callable[[Machine, "Console"], None]:
    """prepare() of the recipe NAME: type the guest's command for it (its Console's) at the
    prompt without its Enter and wait for its echo, so the ground truth holds the typed line;
    keep the symbols the expectation needs (from the kernel that runs) in the run directory,
    where the guest's crash record is checked against them."""
    def prepare(machine: Machine, console: "Console") -> None:
        if console.checks_symbols:
            save_symbols(get(name), machine.config.symbols, machine.artifacts)
        command = console.command(name, hang_seconds=HANG_SECONDS)
        machine.console.wait_for(console.prompt, timeout)
        mark = machine.console.mark()
        machine.console.send(command)
        machine.console.wait_for(re.escape(command), timeout, since=mark)
    return prepare


def _press_enter(machine: Machine) -> None:
    machine.console.send("\r")


NOTE_WAIT_S = 2.0  # how long the nested recipe waits for the guest's note of its second NMI


def _second_nmi_once_quiesced(machine: Machine, result_log: Path, timeout: float) -> None:
    """The nested crash: once the guest says QUIESCED (its crash handler has the dump device
    and is about to write), a second NMI. It must neither start another dump nor disturb this
    one. The guest takes it at its next IRETQ (the end of a ring-3 trip, NMIs blocked until
    then) and notes it on the console; that note is awaited (while the VM runs, NOTE_WAIT_S at
    most) so a live fault that stops the VM on a write of the dump (stale, kill) comes after
    it. The harness used to wait for the first PROGRESS line: a dump fast enough reached the
    stale fault's eighth write within the harness's reaction time, and the NMI went into a
    stopped VM. Whether the note came is the crash-record oracle's to judge."""
    resultchan.wait_for(result_log, "QUIESCED", timeout, machine.is_running,
                        "the guest's QUIESCED line (the dump is starting)")
    since = len(machine.console.text)
    record = {"second_nmi_injected": time.time(), "after": "QUIESCED"}  # just before it is sent
    machine.qmp.command("inject-nmi")
    until = time.monotonic() + NOTE_WAIT_S
    while NESTED_NOTE not in machine.console.text[since:] and time.monotonic() < until:
        try:
            running = machine.is_running() and machine.run_state() == "running"
        except DumpbedError:  # QEMU ended under the question (a guest that finished and exited)
            running = False
        if not running:
            break  # stopped on a fault's write, or gone: nothing more to wait for
        time.sleep(0.005)
    (Path(machine.artifacts) / NESTED_FILE).write_text(json.dumps(record, indent=1) + "\n")


def _exception(name: str, vector: int, what: str, function: str, **kw) -> Crash:
    return Crash(name, what, EXCEPTION, vector, _press_enter, _type_command(name),
                 same_registers=STABLE_REGISTERS + (() if vector in (8, 14) else ("cr2",)),
                 rip_in=function, **kw)


CRASHES = {
    c.name: c
    for c in [
        Crash("nmi", "an NMI sent over QMP (inject-nmi) while the guest idles", NMI, 2, _inject_nmi),
        Crash("panic", "the console's `panic`: an explicit guest panic (reason PANIC, no vector)", PANIC, NO_VECTOR,
              _press_enter, _type_command("panic"), same_registers=STABLE_REGISTERS + ("cr2",), rip_in="panic",
              rip_is_return=True),
        _exception("divide-error", 0, "the console's `divide-error`: #DE (div by zero)",
                   "crash_test_divide_error"),
        _exception("invalid-opcode", 6, "the console's `invalid-opcode`: #UD (ud2 in ring 0)",
                   "crash_test_invalid_opcode"),
        _exception("general-protection", 13,
                   "the console's `general-protection`: #GP loading selector 0x80 (error code 0x80)",
                   "crash_test_general_protection", error_code=GP_SELECTOR),
        _exception("page-fault", 14,
                   "the console's `page-fault`: #PF writing unmapped 0xdead0000bad (error code 0x2)",
                   "crash_test_page_fault", error_code=0x2, fault_addr=PF_ADDR),
        _exception("double-fault", 8,
                   "the console's `double-fault`: kernel stack overflow into its guard page, #PF then #DF",
                   "crash_test_stack_overflow", cr2_in=("boot_stack_guard", "boot_stack_bottom"), rsp_is="boot_stack_bottom"),
        Crash("hang", f"the console's `hang`: interrupts off, spin; the ib700 watchdog's expiry "
              f"({HANG_SECONDS} s) injects an NMI", NMI, 2, _press_enter, _type_command("hang"),
              same_registers=STABLE_REGISTERS + ("cr2",), rip_in="crash_test_hang",
              qemu_args=("-device", "ib700", "-action", "watchdog=inject-nmi"),
              extra_seconds=HANG_SECONDS + 10.0),
        Crash("nested", "an NMI (inject-nmi), then a second one once the guest says QUIESCED (the dump "
              "starts): ignored, the dump completes", NMI, 2, _inject_nmi, during_dump=_second_nmi_once_quiesced),
        # Linux's magic SysRq `c` (guest profile linux-kdump): a NULL pointer write in the kernel,
        # an oops that panic_on_oops makes a panic
        Crash("sysrq-c", "the console's `echo c > /proc/sysrq-trigger`: Linux's SysRq crash (an oops, then the "
              "panic)", PANIC, NO_VECTOR, _press_enter, _type_command("sysrq-c"), same_registers=STABLE_REGISTERS),
    ]
}


def get(name: str) -> Crash:
    try:
        return CRASHES[name]
    except KeyError:
        raise DumpbedError(f"unknown crash {name!r} (available: {', '.join(CRASHES)})") from None
