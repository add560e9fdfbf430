"""A scenario: what one run is asked to do (its disk, crash, RAM, faults, ...), and the check
that refuses a bad one before anything is created.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from dumpbed.errors import DumpbedError
from dumpbed.guest_interface import COMPRESSIONS
from dumpbed.guests import boot, profiles
from dumpbed.oracles import samples
from dumpbed.scenario import crash as crash_mod, disks as disks_mod, faults as faults_mod
from dumpbed.units import MiB

if TYPE_CHECKING:
    from dumpbed.machine.qemu import Machine


RAM_BELOW_4G_MIN = 32 * MiB  # the kernel, its pinned pool and the low-memory areas fit
# Slots 2..31 of the pc machine's PCI bus 0 (0 and 1 are the host bridge and the PIIX3): a disk
# of a kind not on an HBA is a PCI device of its own (measured: the 31st virtio-blk-pci is refused).
PC_PCI_SLOTS = 30

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
    guest_args: list[str] = field(default_factory=list)  # extra kernel command-line words (--append)
    profile: str = profiles.DEFAULT  # the guest profile (dumpbed.guests.profiles): how the guest is judged
    kernel: Optional[Path] = None  # --kernel: boot this instead of the profile's own image
    initrd: Optional[Path] = None  # --initrd, with a bzImage
    stop_disk: bool = False  # leave the dump disk stopped (START STOP UNIT) before the crash
    fill: bool = True
    compress: str = "off"  # the dump's body compression: a guest_interface.COMPRESSIONS word
    level: int = 3  # the dump detail level of the RAS components (CD_LVL_NORMAL)
    components: str = "default"  # the enabled sample components (docs/components.md)
    secondary: Optional[str] = None  # the secondary dump device's disk kind, if any
    faults: list[str] = field(default_factory=list)  # --fault specs (harness/dumpbed/scenario/faults.py)
    # run.html and its pictures drawn when the run is validated; the pytest plugin draws them only
    # for the run directories it keeps (a passing test's go at once)
    pictures: bool = True
    # Called while the VM is stopped after the ground truth is taken, before the crash.
    on_paused: Optional[Callable[[Machine], None]] = field(default=None, repr=False)


def check_scenario(scenario: Scenario) -> tuple[list[str], list[faults_mod.Fault]]:
    """Refuse bad options before anything is created; returns the components and faults."""
    profile = profiles.get(scenario.profile)
    crash = crash_mod.get(scenario.crash)
    if not profile.crash_applies(crash.name):
        raise DumpbedError(f"--crash {crash.name}: guest profile {profile.name} has no such crash (its crash kinds: "
                           f"{', '.join(profile.crashes or ())})")
    boot.check(profile, scenario.kernel, scenario.initrd, crash)
    kind = disks_mod.get(scenario.disk)
    _check_memory(scenario.memory_bytes, profile)
    # The API's target and LUN default to 0, which a kind off an HBA takes as "none"
    problem = scsi_address_problem(scenario.disk, scenario.target or None, scenario.lun or None)
    if problem:
        raise DumpbedError(problem)
    _check_network(scenario, kind)
    _check_other_disks(scenario, kind)
    for word in scenario.guest_args:
        problem = profile.word_problem(word)
        if problem:
            raise DumpbedError(f"--append {problem}")
    lo, hi = profile.levels
    if not lo <= scenario.level <= hi:
        raise DumpbedError(f"--level {scenario.level}: {profile.levels_what} is {lo}..{hi}")
    _check_profile_options(scenario, profile)
    _check_compress(scenario)
    below = scenario.ram_below_4g
    if below is not None and not (RAM_BELOW_4G_MIN <= below < scenario.memory_bytes and below % (2 * MiB) == 0):
        raise DumpbedError(f"--ram-below-4g {below // MiB}M: must be a multiple of 2M, at least "
                           f"{RAM_BELOW_4G_MIN // MiB}M and below the guest's {scenario.memory_bytes // MiB}M "
                           f"of RAM (the rest lies above 4 GiB)")
    components = list(samples.resolve_components(scenario.components))
    faults = [faults_mod.parse(spec) for spec in scenario.faults]
    for f in faults:
        why = profile.fault_problem(f.kind)
        if why:
            raise DumpbedError(f"--fault {f}: does not apply to guest profile {profile.name}: {why}")
    faults_mod.check_combination(faults, scenario.disk, scenario.secondary)
    held = next((f for f in faults if f.kind.holds_runtime), None)
    if held and not scenario.workload:
        raise DumpbedError(f"fault {held.name} holds the runtime workload's requests: it needs --workload")
    return components, faults


def _check_profile_options(scenario: Scenario, profile: profiles.GuestProfile) -> None:
    """The dump disk kinds and run options the guest implements (a Linux guest has no sample
    components, no secondary, no NVMe driver in its initramfs)."""
    why = profile.disk_problem(disks_mod.get(scenario.disk))
    if why:
        raise DumpbedError(f"--disk {scenario.disk}: not for guest profile {profile.name}: {why}")
    given = {"--workload": scenario.workload, "--secondary": scenario.secondary is not None,
             "--stop-disk": scenario.stop_disk, "--components": scenario.components != "default",
             "--other-disks": scenario.other_disks > 0, "--compress": scenario.compress != "off"}
    for option, why in profile.unsupported_options.items():
        if given.get(option):
            raise DumpbedError(f"{option}: not for guest profile {profile.name} ({why})")


def _check_compress(scenario: Scenario) -> None:
    if scenario.compress not in COMPRESSIONS:
        raise DumpbedError(f"--compress {scenario.compress}: one of {', '.join(COMPRESSIONS)}")
    sized = next((spec for spec in scenario.faults if faults_mod.parse(spec).kind.sizes_partition), None)
    if sized and scenario.compress != "off" and not scenario.fill:
        # Unfilled RAM is mostly zeros: whether its compressed dump fits P% of the uncompressed
        # one is the data's to say, and the run must know what to expect. Filled RAM does not
        # compress, so it never fits (E2BIG).
        raise DumpbedError(f"--fault {sized} with --compress {scenario.compress} needs filled RAM (no --no-fill): "
                           "unfilled RAM compresses, and whether it then fits the partition is not known ahead")


def _check_memory(memory_bytes: int, profile: profiles.GuestProfile) -> None:
    if memory_bytes % MiB:
        raise DumpbedError(f"--memory {memory_bytes} bytes: guest RAM must be a whole number of MiB (dumpbed gives "
                           "QEMU's -m in MiB, and the dump disk is sized for the RAM), e.g. 64M or 1G")
    if memory_bytes < profile.min_memory:
        raise DumpbedError(f"--memory {memory_bytes // MiB}M: the guest needs at least {profile.min_memory // MiB}M "
                           f"of RAM (guest profile {profile.name}: {profile.min_memory_why})")


def scsi_address_problem(disk: str, target: Optional[int], lun: Optional[int]) -> Optional[str]:
    """Why the dump disk cannot sit at this --target and --lun (None: not given), or None. A kind
    on an HBA takes the address within its bus's limits; a kind off one takes none at all."""
    kind = disks_mod.get(disk)
    given = [f"--{name} {value}" for name, value in (("target", target), ("lun", lun)) if value is not None]
    if not kind.on_hba:
        if not given:
            return None
        on_hba = ", ".join(name for name, k in disks_mod.DISKS.items() if k.on_hba)
        return (f"{' and '.join(given)}: {disk} disks have no SCSI target or LUN (only the disks on an HBA "
                f"have: {on_hba})")
    return kind.address_problem(target or 0, lun or 0)


def _check_network(scenario: Scenario, kind: disks_mod.DiskKind) -> None:
    """A network dump target has no controller, disks or runtime I/O in the guest to go with it,
    and one link: the secondary is a disk."""
    if kind.network:
        for given, option, why in ((scenario.other_disks, "--other-disks", "no controller to put them on"),
                                   (scenario.workload, "--workload", "the workload drives a disk's controller"),
                                   (scenario.stop_disk, "--stop-disk", "there is no disk in the guest to stop")):
            if given:
                raise DumpbedError(f"{option}: {scenario.disk} dumps over the network ({why})")
    if scenario.secondary is not None and disks_mod.get(scenario.secondary).network:
        raise DumpbedError(f"--secondary {scenario.secondary}: the secondary dump device is a disk (a run has one "
                           "network link)")


def _check_other_disks(scenario: Scenario, kind: disks_mod.DiskKind) -> None:
    n = scenario.other_disks
    if n < 0:
        raise DumpbedError(f"--other-disks {n}: a number of disks, 0 or more")
    if kind.on_hba:
        # one target each, beside the dump disk's (and a secondary's on the same HBA)
        most = kind.targets - 1 - (1 if scenario.secondary == scenario.disk else 0)
        why = f"one target each on its HBA's bus, whose targets are 0..{kind.targets - 1}"
    else:
        most = PC_PCI_SLOTS - 1 - (1 if scenario.secondary is not None else 0)
        why = f"a PCI device each, and the pc machine has {PC_PCI_SLOTS} free slots"
    if n > most:
        raise DumpbedError(f"--other-disks {n}: at most {most} with {scenario.disk} as the dump disk"
                           f"{' and a secondary' if scenario.secondary else ''} ({why})")
