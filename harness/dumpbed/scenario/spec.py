"""A scenario: what one run is asked to do (its disk, crash, RAM, faults, ...), and the check
that refuses a bad one before anything is created.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from dumpbed.errors import DumpbedError
from dumpbed.oracles import samples
from dumpbed.scenario import crash as crash_mod, disks as disks_mod, faults as faults_mod
from dumpbed.units import MiB

if TYPE_CHECKING:
    from dumpbed.machine.qemu import Machine


RAM_BELOW_4G_MIN = 32 * MiB  # the kernel, its pinned pool and the low-memory areas fit


@dataclass
class Scenario:
    out_dir: Path
    disk: str = disks_mod.DEFAULT
    crash: str = "nmi"
    memory_bytes: int = 256 << 20
    # QEMU's max-ram-below-4g: RAM past it lies above 4 GiB, so a small guest has high memory
    ram_below_4g: Optional[int] = None
    accel: str = "auto"
    firmware: str = "qboot"
    block_size: int = 512
    disk_size: Optional[int] = None  # the dump disk's size; default: just enough for the dump
    target: int = 0  # SCSI target and LUN of the dump disk
    lun: int = 0
    other_disks: int = 0  # more disks on the same controller, canary-checked, never written
    workload: bool = False  # runtime I/O in flight on the dump disk's controller at the crash
    workload_seconds: float = 1.0  # how long the workload runs between READY and the crash
    guest_args: list[str] = field(default_factory=list)  # extra kernel command-line words
    stop_disk: bool = False  # leave the dump disk stopped (START STOP UNIT) before the crash
    fill: bool = True
    level: int = 3  # the dump detail level of the RAS components (CD_LVL_NORMAL)
    components: str = "default"  # the enabled sample components (docs/components.md)
    secondary: Optional[str] = None  # the secondary dump device's disk kind, if any
    faults: list[str] = field(default_factory=list)  # --fault specs (harness/dumpbed/scenario/faults.py)
    # Called while the VM is stopped after the ground truth is taken, before the crash.
    on_paused: Optional[Callable[[Machine], None]] = field(default=None, repr=False)


def check_scenario(scenario: Scenario) -> tuple[list[str], list[faults_mod.Fault]]:
    """Refuse bad options before anything is created; returns the components and faults."""
    crash_mod.get(scenario.crash)
    if not 0 <= scenario.level <= 9:
        raise DumpbedError(f"--level {scenario.level}: the dump detail level is 0..9")
    below = scenario.ram_below_4g
    if below is not None and not (RAM_BELOW_4G_MIN <= below < scenario.memory_bytes and below % (2 * MiB) == 0):
        raise DumpbedError(f"--ram-below-4g {below // MiB}M: must be a multiple of 2M, at least "
                           f"{RAM_BELOW_4G_MIN // MiB}M and below the guest's {scenario.memory_bytes // MiB}M "
                           f"of RAM (the rest lies above 4 GiB)")
    components = list(samples.resolve_components(scenario.components))
    faults = [faults_mod.parse(spec) for spec in scenario.faults]
    faults_mod.check_combination(faults, scenario.disk, scenario.secondary)
    held = next((f for f in faults if f.kind.holds_runtime), None)
    if held and not scenario.workload:
        raise DumpbedError(f"fault {held.name} holds the runtime workload's requests: it needs --workload")
    return components, faults
