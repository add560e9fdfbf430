"""Crash recipes: each is data (a name and what it does) plus the function that injects it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from harness.errors import DumpbedError
from harness.machine import Machine


@dataclass(frozen=True)
class Crash:
    name: str
    description: str
    reason: int  # the crash_reason the dump header must carry (docs/dump-format.md)
    vector: int
    inject: Callable[[Machine], None]  # called with the VM stopped, after the ground truth
    # Called while the VM still runs, before it is stopped for the ground truth (e.g. type a
    # console command without its Enter, which inject() then sends).
    prepare: Optional[Callable[[Machine], None]] = None


def _inject_nmi(machine: Machine) -> None:
    machine.qmp.command("inject-nmi")


CRASHES = {
    c.name: c
    for c in [
        Crash("nmi", "an NMI sent over QMP (inject-nmi) while the guest idles", 1, 2, _inject_nmi),
    ]
}


def get(name: str) -> Crash:
    try:
        return CRASHES[name]
    except KeyError:
        raise DumpbedError(f"unknown crash {name!r} (available: {', '.join(CRASHES)})") from None
