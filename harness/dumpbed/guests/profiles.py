"""Guest profiles: what the harness needs to know about a guest to test its dump (docs/guest-profiles.md).

A profile is one entry of data plus hooks: the interface the guest speaks, the images/ recipe of
its own kernel, the kernel formats it boots from, the result-channel lines that mark READY and
DONE, the crash kinds and oracles that apply, the least RAM it runs in, and its kernel command
line. `--kernel FILE` boots another kernel that speaks the same interface (a driver under
development, a guest with a bug seeded): the profile says how to judge it. dumpbed's own guest is
the first profile; a guest of another interface is a new entry here, not a string compared
elsewhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from dumpbed.errors import DumpbedError
from dumpbed.guest_interface import PROMPT
from dumpbed.guests.kernelfile import KernelFormat
from dumpbed.units import MiB


@dataclass(frozen=True)
class ResultWord:
    """A line of the result channel that marks a moment of the run, and what a wait for it is called."""
    word: str
    waiting_for: str


@dataclass(frozen=True)
class Console:
    """The guest's console as the crash kinds typed there need it: its shell's prompt (a regular
    expression), what to type for each such crash kind (its own name when not listed), and
    whether the crash's checks read the kernel's symbols (the crash-record oracle)."""
    prompt: str
    commands: dict[str, str]  # may say {hang_seconds}: the watchdog's timeout (scenario/crash.py)
    checks_symbols: bool = True

    def command(self, crash: str, **values) -> str:
        return self.commands.get(crash, crash).format(**values)


@dataclass(frozen=True)
class GuestProfile:
    name: str
    summary: str
    interface: str  # the document the guest honours
    recipe: str  # the images/ recipe that builds the profile's own kernel
    formats: tuple[KernelFormat, ...]  # what --kernel may be
    ready: ResultWord  # crashes may be injected from this line on
    done: ResultWord  # the dump's end, with its status
    crashes: Optional[tuple[str, ...]]  # the crash kinds that apply (None: every kind, dumpbed list crashes)
    # the checks that do not apply to this guest, each with why (e.g. no-interrupts for a
    # capture kernel that takes interrupts): reported as skipped, never computed into the verdict
    not_applicable: dict[str, str]
    min_memory: int  # the least guest RAM it dumps in
    min_memory_why: str
    reserved_keys: tuple[str, ...]  # command-line keys the harness sets: --append may not
    word: re.Pattern  # one word of --append, with a `key` group (the guest's command-line syntax)
    word_form: str  # that syntax, said to a person: "KEY=VALUE (...)"
    # (scenario, topology, components, dump_id, fill_seed, io_ms) -> the words the harness sets
    cmdline: Callable[..., str]
    # the kernel QEMU boots -> the file with its symbols (the crash kinds' rip checks), or None
    symbols: Callable[[Path], Optional[Path]]
    console: Console
    # Which oracles judge its dump (oracles/validate.py JUDGES): "dumpbed" (docs/dump-format.md)
    # or "vmcore" (a Linux vmcore: docs/linux-kdump.md)
    judge: str = "dumpbed"
    levels: tuple[int, int] = (0, 9)  # what --level may be
    levels_what: str = "the dump detail level"
    # The guest prints its estimate of the dump at each level at the console (`estimate`): a
    # fault's @P% is P% of it into the body. Without, @P% is P% of dump_needs into the partition.
    estimates: bool = True
    # (scenario) -> bytes the dump needs at least: enospc=P sizes the dump partition at P% of it
    dump_needs: Callable[..., int] = lambda scenario: scenario.memory_bytes
    qemu_args: tuple[str, ...] = ()  # more QEMU arguments the guest needs (e.g. -no-reboot)
    # (a DiskKind) -> why the guest cannot dump to it (no driver), or None
    disk_problem: Callable[..., Optional[str]] = lambda kind: None
    # (a FaultKind) -> why the fault does not apply to this guest, or None
    fault_problem: Callable[..., Optional[str]] = lambda kind: None
    # run options the guest does not implement -> why (refused before the run)
    unsupported_options: dict[str, str] = field(default_factory=dict)
    # () -> why this host's KVM cannot run the guest, or None: --accel auto then takes TCG
    kvm_problem: Callable[[], Optional[str]] = lambda: None

    def crash_applies(self, crash: str) -> bool:
        return self.crashes is None or crash in self.crashes

    def word_problem(self, word: str) -> Optional[str]:
        """Why an --append word cannot go on this guest's command line, or None."""
        m = self.word.fullmatch(word)
        if m is None:
            return f"{word!r}: not {self.word_form}"
        if m["key"] in self.reserved_keys:
            return f"{word}: dumpbed sets {m['key']}= itself, from the run's options"
        return None


# --- dumpbed's own guest (docs/guest-interface.md) --------------------------------------------

# The least RAM it dumps with, measured: it is loaded at 1 MiB and ends near 5.75 MiB (its .bss
# included, the compressor's 2 MiB output buffer among it), its pinned pool takes 2 MiB above it,
# and the `all` sample components need a MiB more (at 8M their checks fail; 9M passes with
# --components all --level 9). tests/integration/test_bad_input.py holds it to the kernel's end.
DUMPBED_MIN_MEMORY = 9 * MiB
# The command-line words the harness sets itself: --append may add others (testfault=,
# pinpool=), never one of these, which would contradict scenario.json.
DUMPBED_KEYS = ("dumpdev", "dumpdev2", "dumpid", "iotimeout", "dumplevel", "components", "fill", "workload",
                "netaddr", "netserver", "netmtu", "compress")


def _dumpbed_cmdline(scenario, topology, components: list[str], dump_id: str, fill_seed: Optional[str],
                     io_ms: int) -> str:
    words = [f"dumpdev={topology.dumpdev()}", f"dumpid={dump_id}", f"iotimeout={io_ms}"]
    if topology.dumpdev2():
        words.append(f"dumpdev2={topology.dumpdev2()}")
    words += topology.guest_words()  # a network dump's addresses
    words += [f"dumplevel={scenario.level}", f"components={','.join(components) or 'none'}",
              f"fill={fill_seed}" if fill_seed else "fill=off"]
    if scenario.workload:
        words.append("workload=on")
    if scenario.compress != "off":
        words.append(f"compress={scenario.compress}")
    return " ".join(words)


def _dumpbed_symbols(kernel: Path) -> Optional[Path]:
    """The ELF64 the build links (with symbols) beside the ELF32 container QEMU boots."""
    elf64 = Path(kernel).with_suffix(".elf64")
    return elf64 if elf64.is_file() else None


DUMPBED = GuestProfile(
    name="dumpbed",
    summary="dumpbed's own guest, or any kernel that speaks its interface (result channel on port 0xE9)",
    interface="docs/guest-interface.md",
    recipe="dumpbed-guest",
    formats=(KernelFormat.MULTIBOOT, KernelFormat.BZIMAGE),
    ready=ResultWord("READY", "the guest to boot (READY on the result channel)"),
    done=ResultWord("DONE", "the guest to finish its dump (DONE on the result channel)"),
    crashes=("nmi", "panic", "divide-error", "invalid-opcode", "general-protection", "page-fault", "double-fault",
             "hang", "nested"),
    not_applicable={},
    min_memory=DUMPBED_MIN_MEMORY,
    min_memory_why="its kernel ends near 5.75 MiB, its pinned pool takes 2 MiB above it, the sample components 1 MiB "
                   "more",
    reserved_keys=DUMPBED_KEYS,
    word=re.compile(r"(?P<key>[A-Za-z0-9_.-]+)=[!-~]+"),  # printable ASCII, no space
    word_form="KEY=VALUE (one word of the guest's command line: printable ASCII, no spaces, e.g. testfault=irq-on)",
    cmdline=_dumpbed_cmdline,
    symbols=_dumpbed_symbols,
    console=Console(prompt=re.escape(PROMPT), commands={}),
)


# --- Linux with kdump (docs/linux-kdump.md) ---------------------------------------------------

# The capture kernel's reservation (docs/linux-kdump.md: 128M is safe, 64M fails), and the least
# RAM the first kernel and the pattern then boot in.
LINUX_CRASHKERNEL = "128M"
LINUX_MIN_MEMORY = 512 * MiB
# The words the harness sets (docs/linux-kdump.md, "Kernel command line"): --append may add
# dumpbed.format=, dumpbed.compress=, dumpbed.disk=, dumpbed.debug= and any word of Linux's own.
LINUX_KEYS = ("console", "crashkernel", "dumpbed.level", "dumpbed.pattern", "dumpbed.runid", "dumpbed.exit",
              "dumpbed.capture")


def linux_pattern_bytes(memory_bytes: int) -> int:
    """The workload's pattern: a 16th of the RAM, whole MiB (64 MiB of a 1 GiB guest)."""
    return max(MiB, memory_bytes // 16 // MiB * MiB)


def linux_runid(dump_id: str) -> str:
    """The pattern's run id: the run's dump id's first 16 hex digits (a u64)."""
    return dump_id[:16]


def _linux_cmdline(scenario, topology, components: list[str], dump_id: str, fill_seed: Optional[str],
                   io_ms: int) -> str:
    return " ".join([f"console=ttyS0 crashkernel={LINUX_CRASHKERNEL}", f"dumpbed.level={scenario.level}",
                     f"dumpbed.pattern={linux_pattern_bytes(scenario.memory_bytes) // MiB}M",
                     f"dumpbed.runid={linux_runid(dump_id)}", "dumpbed.exit=debug-exit"])


def _pv_kvm() -> Optional[str]:
    """A PV-mode nested KVM (the kvm_pvm module) runs dumpbed's guest but not a Linux kernel
    (../shared/QEMU-FACTS.md, "Linux guests")."""
    if Path("/sys/module/kvm_pvm").exists():
        return "the host's KVM is PV-mode (kvm_pvm), which cannot run a Linux kernel"
    return None


# The disk drivers its initramfs loads (images/linux-kdump/build.sh MODULES)
LINUX_DRIVERS = ("virtio_blk", "virtio_scsi")


def _linux_disk_problem(kind) -> Optional[str]:
    if kind.linux_driver is None:
        return "it dumps over the network to dumpbed's dump server, and this kdump writes a block device"
    if kind.linux_driver not in LINUX_DRIVERS:
        return (f"its initramfs has no {kind.linux_driver} module (it loads {', '.join(LINUX_DRIVERS)}: the MODULES "
                "of images/linux-kdump/build.sh)")
    return None


def _linux_fault_problem(kind) -> Optional[str]:
    """The faults of a dump disk that need nothing of dumpbed's guest apply (eio-at, enospc,
    kill, pause, slow: docs/linux-kdump.md, "Faults")."""
    reasons = [(kind.previous_dump, "the earlier dump it leaves on the disk is dumpbed's format"),
               (kind.reboots, "after the reset the guest boots again, and its second READY is dumpbed's guest's"),
               (kind.holds_runtime, "it holds --workload's requests, dumpbed's guest's"),
               (kind.network, "the guest has no network dump"),
               (kind.shortens_io_waits, "its I/O waits are Linux's own, not an iotimeout= on the command line")]
    return next((why for applies, why in reasons if applies), None)


LINUX_KDUMP = GuestProfile(
    name="linux-kdump",
    summary="Debian 12 Linux with kdump: the capture kernel saves /proc/vmcore with makedumpfile",
    interface="docs/linux-kdump.md",
    recipe="linux-kdump",
    formats=(KernelFormat.BZIMAGE,),
    ready=ResultWord("READY", "Linux to boot and load its capture kernel (READY on the result channel)"),
    done=ResultWord("DONE", "the capture kernel to save the vmcore (DONE on the result channel)"),
    crashes=("nmi", "sysrq-c", "panic", "hang"),
    not_applicable={
        "no-interrupts": "a capture kernel boots and takes interrupts; its writes go through the page cache",
        "consistency": "makedumpfile writes through the page cache, in no order its formats promise to leave "
                       "readable: the vmcore check judges what the disk holds, vmcore-io that it is what was written",
        "crash-record": "Linux's panic path saves its own registers in the vmcore's notes, not those of the "
                        "instant the harness stopped the machine",
    },
    min_memory=LINUX_MIN_MEMORY,
    min_memory_why=f"the capture kernel's crashkernel={LINUX_CRASHKERNEL} comes out of it",
    reserved_keys=LINUX_KEYS,
    word=re.compile(r"(?P<key>[A-Za-z0-9_.-]+)(=[!-~]*)?"),
    word_form="WORD or KEY=VALUE (one word of Linux's command line: printable ASCII, no spaces, "
              "e.g. dumpbed.compress=zlib)",
    cmdline=_linux_cmdline,
    symbols=lambda kernel: None,  # Debian's symbols are in linux-image-*-dbg (about 1 GB)
    console=Console(prompt=r"dumpbed-linux# ", checks_symbols=False,
                    commands={"sysrq-c": "echo c > /proc/sysrq-trigger", "panic": "dumpbed-panic",
                              "hang": "agent hang {hang_seconds}"}),
    judge="vmcore",
    levels=(0, 31),
    levels_what="makedumpfile's dump level (-d: 1 zero pages, 2 cache, 4 private cache, 8 user, 16 free pages "
                "excluded)",
    estimates=False,
    dump_needs=lambda scenario: linux_pattern_bytes(scenario.memory_bytes),
    qemu_args=("-no-reboot",),
    kvm_problem=_pv_kvm,
    disk_problem=_linux_disk_problem,
    fault_problem=_linux_fault_problem,
    unsupported_options={
        "--workload": "its runtime workload is the pattern process, always on",
        "--secondary": "makedumpfile writes one dump file",
        "--stop-disk": "a console command of dumpbed's own guest",
        "--components": "the sample components are dumpbed's guest's",
        "--other-disks": "its capture environment takes the first disk with a dump partition (dumpbed.disk=auto)",
        "--compress": "makedumpfile compresses its own vmcore: --append dumpbed.compress=zlib|lzo|none",
    },
)

PROFILES: dict[str, GuestProfile] = {p.name: p for p in (DUMPBED, LINUX_KDUMP)}
DEFAULT = DUMPBED.name


def get(name: str) -> GuestProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise DumpbedError(f"unknown guest profile {name!r} (available: {', '.join(PROFILES)})") from None
