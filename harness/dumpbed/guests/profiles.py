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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from dumpbed.errors import DumpbedError
from dumpbed.guests.kernelfile import KernelFormat
from dumpbed.units import MiB


@dataclass(frozen=True)
class ResultWord:
    """A line of the result channel that marks a moment of the run, and what a wait for it is called."""
    word: str
    waiting_for: str


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

# The least RAM it dumps with, measured: it is loaded at 1 MiB and ends near 3.5 MiB (its .bss
# included), its pinned pool takes 2 MiB above it (below 6M: `ERROR msg=pinpool` at boot), and
# the `all` sample components need a MiB more (at 6M their checks fail; 7M passes every disk kind
# with --components all --level 9). tests/integration/test_bad_input.py holds it to the kernel's end.
DUMPBED_MIN_MEMORY = 7 * MiB
# The command-line words the harness sets itself: --append may add others (testfault=,
# pinpool=), never one of these, which would contradict scenario.json.
DUMPBED_KEYS = ("dumpdev", "dumpdev2", "dumpid", "iotimeout", "dumplevel", "components", "fill", "workload",
                "netaddr", "netserver", "netmtu")


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
    crashes=None,
    not_applicable={},
    min_memory=DUMPBED_MIN_MEMORY,
    min_memory_why="its kernel ends near 3.5 MiB, its pinned pool takes 2 MiB above it, the sample components 1 MiB more",
    reserved_keys=DUMPBED_KEYS,
    word=re.compile(r"(?P<key>[A-Za-z0-9_.-]+)=[!-~]+"),  # printable ASCII, no space
    word_form="KEY=VALUE (one word of the guest's command line: printable ASCII, no spaces, e.g. testfault=irq-on)",
    cmdline=_dumpbed_cmdline,
    symbols=_dumpbed_symbols,
)

PROFILES: dict[str, GuestProfile] = {p.name: p for p in (DUMPBED,)}
DEFAULT = DUMPBED.name


def get(name: str) -> GuestProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise DumpbedError(f"unknown guest profile {name!r} (available: {', '.join(PROFILES)})") from None
