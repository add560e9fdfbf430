"""One scenario end to end: disk, boot, crash, dump, collect, validate.

Each step is a function of the module that owns it; this file only sequences them, times them,
and makes sure that whatever happens QEMU is gone and the artifacts are on disk.
"""
from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from dumpbed import progress
from dumpbed.capture import cmdlog, groundtruth, irqwatch, writelog
from dumpbed.capture.estimates import capture_estimates, console_command
from dumpbed.deadline import WaitAborted, WaitTimeout
from dumpbed.errors import DumpbedError, describe_os_error, environment_errors, stop_signal
from dumpbed.guests import boot, profiles
from dumpbed.images import build as images, layout as layout_mod
from dumpbed.images.disks import DiskPlan, make_disks, plan_disks
from dumpbed.images.topology import DUMP_NODE
from dumpbed.machine import accel as accel_mod, resultchan
from dumpbed.machine.qemu import Machine, MachineConfig, require_firmware, require_qemu
from dumpbed.net.service import NetService
from dumpbed.oracles import dumpio
from dumpbed.scenario import crash as crash_mod, faultrun, faults as faults_mod
from dumpbed.scenario.spec import Scenario, check_scenario
from dumpbed.units import GiB, MiB, format_size

EXIT_COMPLETE = 67  # guest wrote 0x21 to isa-debug-exit: (0x21 << 1) | 1
EXIT_FAILED = 69
# The multiboot command line the guest keeps (guest/kern/multiboot.h BOOT_CMDLINE_MAX, its NUL
# included): QEMU puts the kernel's path first, then -append.
GUEST_CMDLINE_MAX = 1023
# Host memory QEMU takes beside the guest's RAM (its own code, the devices, the block layer).
QEMU_MEMORY_OVERHEAD = 128 * MiB
# Beside the images, the logs of a run (console, QMP transcript, QEMU's trace) take a few MiB.
LOGS_ROOM = 64 * MiB
INTERRUPTED = "interrupted"  # the marker a run stopped by a signal leaves in its directory


@dataclass
class RunOutcome:
    scenario: Scenario
    accel: str
    dump_id: str
    timings: dict[str, float]
    exit_status: Optional[int]
    guest_result: Optional[resultchan.ResultLine]
    problem: Optional[str]  # why the run itself went wrong (a timeout, QEMU died), if it did


@dataclass
class Interaction:
    """`dumpbed session` (harness/dumpbed/session.py): once the guest is up, a person drives it
    until they pick the crash; the run then goes on exactly as it would have for that crash."""
    choose: Callable[[Machine], str]  # hands the console over; returns the crash kind to inject now
    qemu_args: tuple[str, ...] = ()  # devices the crashes it may choose need (the hang's watchdog)
    # faults armed at the console (Ctrl-] f), asked once choose returned: only kinds armed at the
    # crash (session.py refuses those set up before QEMU starts), armed then as --fault's are
    faults: Callable[[], list[faults_mod.Fault]] = list


def timeouts(accel: str, memory_bytes: int) -> dict[str, float]:
    """Deadlines scaled for TCG (several times slower than KVM) and for guest size.

    The dump deadline assumes a floor on throughput well below anything measured (the LSI
    emulation, the slowest path, dumps 5 GiB at ~50 MiB/s under KVM), so only a hang trips it."""
    slow = 4.0 if accel == "tcg" else 1.0
    mib = memory_bytes / MiB
    return {
        "boot": 30.0 * slow * max(1.0, memory_bytes / GiB),
        "dump": 60.0 + mib / (10.0 / slow),
        "io_ms": int(10_000 * slow),
    }


def prepare_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DumpbedError(f"output directory {out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


@dataclass
class Preflight:
    """What run() settled before writing anything."""
    components: list[str]
    faults: list[faults_mod.Fault]
    accel: str


@environment_errors
def preflight(scenario: Scenario) -> Preflight:
    """Everything that can be checked before a file is written: the options (check_scenario),
    the disks' plan (targets, LUNs, --disk-size), the accelerator, QEMU on PATH, the guest's
    command line, and room on the host: disk space where the run writes, and memory."""
    components, faults = check_scenario(scenario)
    profile = profiles.get(scenario.profile)
    if "%" in str(Path(scenario.out_dir).absolute()):
        raise DumpbedError(f"--out {scenario.out_dir}: a '%' in the run directory's path is QEMU's log-file template "
                           "character (its trace log would not open): choose a path without one")
    accel = accel_mod.choose(scenario.accel, profile.kvm_problem())
    require_qemu()  # before any disk image is built
    require_firmware(scenario.firmware)
    images.require_qemu_img()
    plan = plan_disks(scenario, Path(scenario.out_dir), faults)
    limits = timeouts(accel, scenario.memory_bytes)
    kernel = boot.planned_kernel_path(profile, scenario.kernel)  # first on the line
    line = f"{kernel} " + guest_cmdline(scenario, plan.topology, components, "0" * 32,
                                        "0" * 16 if scenario.fill else None, limits["io_ms"])
    if len(line) > GUEST_CMDLINE_MAX:
        raise DumpbedError(f"the guest's command line would be {len(line)} bytes (its kernel's path and the words "
                           f"dumpbed and --append put there), the guest keeps {GUEST_CMDLINE_MAX}")
    short = host_shortfalls(scenario, faults, plan)
    if short:
        raise DumpbedError(short)
    return Preflight(components, faults, accel)


def host_shortfalls(scenario: Scenario, faults: list[faults_mod.Fault], plan: DiskPlan) -> Optional[str]:
    """What the host lacks for this run, in one line, or None: disk space in the filesystem the
    run directory lies in (the images, the dump disks' write logs, the RAM snapshot, the copy of
    a dump partition the consistency check rebuilds states in) and memory (MemAvailable) for the
    guest's RAM and QEMU."""
    topology = plan.topology
    dump_sizes = [l.dump_size for l in plan.layouts.values()
                  if l.image in {Path(d.image).name for d in topology.disks if d.write_log is not None}]
    parts = {"the disk images": plan.image_bytes(),
             "the dump disks' write logs": sum(size + size // 64 for size in dump_sizes),
             "the RAM snapshot": scenario.memory_bytes,
             "the consistency check's copy of a dump partition": max(dump_sizes, default=0)}
    if any(f.kind.previous_dump for f in faults):  # the earlier run, and the disk as it was
        primary = plan.layouts["layout.json"]
        parts["the earlier run of `stale`"] = (primary.size_bytes + 2 * primary.dump_size + primary.dump_size // 64
                                              + scenario.memory_bytes + primary.size_bytes)
    need = sum(parts.values()) + LOGS_ROOM
    short = {}
    free = shutil.disk_usage(_existing_ancestor(Path(scenario.out_dir))).free
    if need > free:
        detail = ", ".join(f"{what} {format_size(n)}" for what, n in parts.items() if n)
        short["disk space"] = (f"the run writes about {format_size(need)} under {scenario.out_dir} ({detail}) and "
                               f"its filesystem has {format_size(free)} free")
    available = mem_available()
    ram = scenario.memory_bytes + QEMU_MEMORY_OVERHEAD
    if available is not None and ram > available:
        short["memory"] = (f"the guest's {format_size(scenario.memory_bytes)} of RAM and QEMU need about "
                           f"{format_size(ram)} of host memory and {format_size(available)} is available "
                           "(MemAvailable in /proc/meminfo)")
    if not short:
        return None
    return f"not enough {' or '.join(short)} for this run: " + "; ".join(short.values())


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mem_available() -> Optional[int]:
    """The host's MemAvailable in bytes, or None where /proc/meminfo does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def guest_cmdline(scenario: Scenario, topology, components: list[str], dump_id: str, fill_seed: Optional[str],
                  io_ms: int) -> str:
    """The guest kernel's command line: the words the guest profile has dumpbed set
    (docs/guest-interface.md for dumpbed's own), then the --append words."""
    words = profiles.get(scenario.profile).cmdline(scenario, topology, components, dump_id, fill_seed, io_ms)
    return " ".join([words, *scenario.guest_args])


def _created_by(out_dir: Path) -> list[Path]:
    """The directories prepare_out_dir will create for out_dir, deepest first."""
    missing = []
    path = Path(out_dir).absolute()
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_if_empty(created: list[Path]) -> None:
    """After a failure: the directories this run created, if nothing was written in them."""
    for path in created:
        try:
            path.rmdir()  # only ever removes an empty directory
        except OSError:
            return


def _mark_interrupted(out: Path, signame: str) -> None:
    """A run stopped by a signal says so in its directory: `dumpbed validate` then reports it
    interrupted rather than judging the half-written artifacts (docs/artifacts.md)."""
    try:
        (out / INTERRUPTED).write_text(json.dumps({"signal": signame, "time": time.time()}) + "\n")
    except OSError:
        pass


def interrupted(run_dir: Path) -> Optional[dict]:
    """The interrupted marker of a run directory ({"signal", "time"}), or None."""
    path = Path(run_dir) / INTERRUPTED
    if not path.exists():
        return None
    try:
        marker = json.loads(path.read_text())
        return marker if isinstance(marker, dict) else {}
    except (OSError, ValueError):
        return {}


@environment_errors  # a full disk or a hung tool is a DumpbedError here too, never an OSError
def run(scenario: Scenario, interact: Optional[Interaction] = None) -> RunOutcome:
    checked = preflight(scenario)
    # the profile's image built (or found in the cache) first: a failed build leaves no run directory
    booted = boot.prepare(profiles.get(scenario.profile), scenario.kernel, scenario.initrd)
    created = _created_by(scenario.out_dir)
    out = prepare_out_dir(scenario.out_dir)
    try:
        return _run(scenario, checked, booted, out, interact)
    except BaseException as exc:
        signame = stop_signal(exc)
        if signame:
            _mark_interrupted(out, signame)
        else:
            _remove_if_empty(created)
        raise


def _run(scenario: Scenario, checked: Preflight, booted: boot.BootFiles, out: Path,
         interact: Optional[Interaction] = None) -> RunOutcome:
    components, faults, accel = checked.components, checked.faults, checked.accel
    profile = profiles.get(scenario.profile)
    crash = crash_mod.get(scenario.crash)
    limits = timeouts(accel, scenario.memory_bytes)
    limits["dump"] += crash.extra_seconds  # e.g. a hang: the watchdog's timeout comes first

    if any(f.kind.shortens_io_waits for f in faults):
        # Every request to the removed disk times out in the guest, and it still tries its
        # FAILED headers: shorter waits, and the harness's deadline allows for a dozen.
        limits["io_ms"] //= 5
        limits["dump"] += 12 * limits["io_ms"] / 1000
    dump_id = secrets.token_hex(16)
    fill_seed = secrets.token_hex(8) if scenario.fill else None
    stale = any(f.kind.previous_dump for f in faults)
    if stale:
        _previous_dump(scenario, out)
    topology = make_disks(scenario, out, faults, reuse_dump_disk=stale)

    cmdline = guest_cmdline(scenario, topology, components, dump_id, fill_seed, limits["io_ms"])
    (out / "scenario.json").write_text(json.dumps({
        "version": 1, "disk": scenario.disk, "crash": scenario.crash,
        "memory_bytes": scenario.memory_bytes, "ram_below_4g": scenario.ram_below_4g, "accel": accel, "firmware": scenario.firmware,
        "block_size": scenario.block_size, "dump_id": dump_id, "fill_seed": fill_seed, "compress": scenario.compress,
        "workload": scenario.workload, "stop_disk": scenario.stop_disk,
        "topology": topology.to_json(), "cmdline": cmdline,
        "level": scenario.level, "components": components,
        "secondary": scenario.secondary, **_expectations(faults, scenario.secondary),
        "stale_previous": "previous" if stale else None,
        "guest": {"profile": scenario.profile, **booted.to_json()},
    }, indent=1) + "\n")

    # A network dump: the dump server and the link first (net/service.py); QEMU's NIC gets the
    # link's socket. Stopped after QEMU, whatever happens.
    net = NetService(out, topology.dump_disk.image, dump_id).start() if topology.network else None
    config = MachineConfig(
        kernel=booted.kernel, initrd=booted.initrd, symbols=booted.symbols, cmdline=cmdline,
        memory_bytes=scenario.memory_bytes, accel=accel,
        ram_below_4g=scenario.ram_below_4g, pass_fds=(net.qemu_fd,) if net else (),
        firmware=scenario.firmware, devices=topology.qemu_args(net.qemu_fd if net else None),
        trace_events=list(dict.fromkeys(
            writelog.trace_events(scenario.disk, scenario.secondary or scenario.disk)
            + cmdlog.trace_events(scenario.disk, scenario.secondary or scenario.disk) + irqwatch.TRACE_EVENTS)),
        # the crash may need devices
        extra_args=[*profile.qemu_args, *crash.qemu_args, *(interact.qemu_args if interact else ())],
    )
    result_log = out / "result.log"
    timings: dict[str, float] = {}
    guest_result = None
    problem = None
    machine = Machine(config, out)
    armed = None
    try:
        t0 = time.monotonic()
        with progress.task(f"boot (to {profile.ready.word})"):
            machine.launch()
            # QEMU up, its RAM preallocated: the part of the boot that is the host's (a host
            # whose fresh memory comes slowly shows it here, not in the guest's part)
            qemu_start = time.monotonic() - t0
            if net:
                net.qemu_started()
            machine.cont()
            resultchan.wait_for(result_log, profile.ready.word, limits["boot"], machine.is_running,
                                profile.ready.waiting_for)
        timings["boot"] = time.monotonic() - t0
        timings["qemu_start"] = qemu_start
        if profile.estimates:
            capture_estimates(machine, out, limits["boot"])
        if scenario.stop_disk:
            console_command(machine, "stop-disk", limits["boot"])
        if scenario.workload:
            time.sleep(scenario.workload_seconds)  # let runtime I/O pile up before the crash
        if interact is not None:
            crash = _chosen_crash(interact.choose(machine), crash, out, limits)
            faults = _chosen_faults(interact.faults(), faults, scenario, out)

        if crash.prepare:
            crash.prepare(machine, profile.console)
        hold = next((f for f in faults if f.kind.holds_runtime), None)
        hold_log = faultrun.FaultLog(str(hold)) if hold else None
        if hold:  # QEMU stops by itself, runtime requests parked in the device
            data_offset = layout_mod.load(out / "layout.json").data_offset
            faultrun.hold_runtime(machine, DUMP_NODE, data_offset, limits["boot"], hold_log)
        if hold:
            machine.stop()  # QEMU stopped by itself on the held request: the guest may not run on
            stops = 1
        else:
            stops = groundtruth.stop_for_snapshot(machine)
        groundtruth.take(machine, out / "snapshot", scenario.memory_bytes, scenario.ram_below_4g)
        if scenario.on_paused:
            scenario.on_paused(machine)
        # From the crash on, every byte the guest writes to its result channel is traced with
        # the host time: QUIESCED and DONE take their place among the device's commands.
        machine.qmp.command("trace-event-set-state", {"name": cmdlog.RESULT_EVENT, "enable": True})
        armed = (net.arm(faults, _trigger_offset(next((f for f in faults if f.when), None), out, scenario))
                 if net else _arm_fault(faults, machine, out, scenario))
        slow = next((f for f in faults if f.kind.throttles), None)
        if slow:
            faultrun.throttle(machine, scenario.disk, DUMP_NODE, slow.value)
            limits["dump"] += scenario.memory_bytes / (slow.value * MiB) * 1.5
        t_crash = time.monotonic()
        crash.inject(machine)
        crash_epoch = time.time()
        (out / "timeline.json").write_text(json.dumps({"crash_injected": crash_epoch,
                                                       "stops_before_snapshot": stops}) + "\n")
        machine.cont()
        # Under TCG each sample stops the VM for a moment: sample less often there. Under KVM
        # every 2 ms until a sample follows the guest's CRASH line, the oracle's window opening.
        # Only for the no-interrupts oracle: a guest it does not apply to is not sampled.
        sampler = irqwatch.RflagsSampler(
            machine, out, interval=0.05 if accel == "tcg" else 0.01, pause=accel == "tcg",
            enabled="no-interrupts" not in profile.not_applicable,
            crash_taken=lambda: resultchan.said(result_log, "CRASH"),
            first_interval=None if accel == "tcg" else 0.002).start()
        try:
            if hold:
                try:
                    faultrun.ride_out_until_quiesced(machine, DUMP_NODE, result_log, limits["dump"], hold_log)
                finally:
                    hold_log.save(out)
            if crash.during_dump:  # e.g. the nested crash's second NMI
                crash.during_dump(machine, result_log, limits["dump"])
            # a network fault's trigger is the link's (net/service.py): nothing to wait for here
            live = next((f for f in faults if f.when is not None and not f.kind.network), None)
            if live is not None:
                fault_log = _live_fault(live, machine, out, armed, limits)
            # the guest goes on to its DONE unless the fault ended it (kill, reset: no DONE)
            if live is None or live.kind.guest_result is not None or not fault_log.fired:
                with progress.task("dump", unit="bytes") as bar:  # moved by the guest's PROGRESS lines
                    guest_result = resultchan.wait_for(result_log, profile.done.word, limits["dump"],
                                                       machine.is_running, profile.done.waiting_for,
                                                       on_line=progress.DumpLines(bar))
                machine.wait_exit(10)
        finally:
            sampler.stop()
        timings["crash_to_dump_done"] = time.monotonic() - t_crash
    except (DumpbedError, OSError) as exc:  # WaitTimeout and GuestGone are DumpbedErrors
        problem = _run_failure(machine, out, exc)
    finally:
        machine.shutdown()
        if net:
            net.stop()
    _save_exit_status(out, machine.exit_status)
    if armed and not net:
        _where_the_fault_hit(out, scenario, armed)
    return RunOutcome(scenario, accel, dump_id, timings, machine.exit_status, guest_result, problem)


def _chosen_crash(name: str, crash: crash_mod.Crash, out: Path, limits: dict) -> crash_mod.Crash:
    """The crash a session's person chose: scenario.json says it, for the crash-record oracle."""
    if name == crash.name:
        return crash
    chosen = crash_mod.get(name)
    limits["dump"] += chosen.extra_seconds - crash.extra_seconds
    _update_scenario(out, crash=name)
    return chosen


def _chosen_faults(added: list[faults_mod.Fault], faults: list[faults_mod.Fault], scenario: Scenario,
                   out: Path) -> list[faults_mod.Fault]:
    """The faults a session's person armed at the console, added to --fault's: scenario.json
    records them and what the run must then end with, as it would have for --fault."""
    if not added:
        return faults
    late = [f for f in added if f.kind.setup_reason]
    if late:
        raise DumpbedError(f"{late[0]} cannot be armed at the crash: {late[0].kind.setup_reason}")
    faults = faults + list(added)
    _update_scenario(out, **_expectations(faults, scenario.secondary))
    return faults


def _update_scenario(out: Path, **fields) -> None:
    """A session's choices into scenario.json, as if the command line had given them."""
    path = out / "scenario.json"
    recorded = json.loads(path.read_text())
    recorded.update(fields)
    path.write_text(json.dumps(recorded, indent=1) + "\n")


def _expectations(faults: list[faults_mod.Fault], secondary: Optional[str]) -> dict:
    """scenario.json's faults and what the run must end with (docs/faults.md)."""
    return {
        "faults": [str(f) for f in faults],
        # A device failure mid-dump with a secondary configured: the dump restarts there.
        "restart_expected": secondary is not None and any(f.kind.fails_device for f in faults),
        # The dump's classification, and the guest's DONE status (null: QEMU ends before the
        # guest can say anything).
        "expect": faults_mod.expected_outcome(faults, secondary),
        "expect_guest_result": faults_mod.expected_guest_result(faults, secondary),
    }


def _arm_fault(faults: list[faults_mod.Fault], machine: Machine, out: Path,
               scenario: Scenario) -> Optional[tuple[str, str]]:
    """At the crash, the VM stopped: the blkdebug rules of eio-at or of a live fault's trigger
    under the dump disk, counting from here (harness/dumpbed/scenario/faultrun.py). Returns (fault, rule)."""
    fault = next((f for f in faults if f.kind.fails_device or f.when is not None), None)
    if fault is None:
        return None
    sector = None
    if fault.at_fraction is not None:
        dump_layout = layout_mod.load(out / "layout.json")
        sector = faults_mod.trigger_sector(fault, dump_layout.dump_offset, *_fault_scale(out, scenario, dump_layout))
    return str(fault), faultrun.arm(fault, machine, DUMP_NODE, sector)


def _trigger_offset(fault: Optional[faults_mod.Fault], out: Path, scenario: Scenario) -> Optional[int]:
    """A network fault's point `@P%` as a partition offset (faults.trigger_offset; a disk's is
    _arm_fault's sector), from the run's layout and the guest's estimate; None without one."""
    if fault is None or fault.at_fraction is None:
        return None
    dump_layout = layout_mod.load(out / "layout.json")
    return faults_mod.trigger_offset(fault, *_fault_scale(out, scenario, dump_layout))


def _fault_scale(out: Path, scenario: Scenario, dump_layout) -> tuple[int, int]:
    """What a fault's @P% counts in: (where the dump's body starts in the partition, the bytes P%
    is of). The guest's estimate of the dump at the run's level (printed before the crash) into
    dumpbed's body; for a guest without estimates, the bytes its profile says the dump needs at
    least, from the partition's start (a vmcore's header is at its first byte)."""
    profile = profiles.get(scenario.profile)
    if not profile.estimates:
        return 0, profile.dump_needs(scenario)
    estimate = json.loads((out / "estimates.json").read_text())[str(scenario.level)]["total"]
    return faults_mod.body_offset_for(dump_layout.dump_size), estimate


def _save_exit_status(out: Path, status: Optional[int]) -> None:
    """QEMU's exit status beside the crash time (timeline.json): the guest-result oracle holds
    the DONE line to it when the run is validated again from its artifacts."""
    path = out / "timeline.json"
    try:
        timeline = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # the run broke before the crash
    timeline["qemu_exit_status"] = status
    path.write_text(json.dumps(timeline) + "\n")


def _where_the_fault_hit(out: Path, scenario: Scenario, armed: tuple[str, str]) -> None:
    """After the run, from the device's own logs: the first dump write that did not reach the
    disk (the one the rule failed or stopped) and how many had (fault.json)."""
    path = out / faults_mod.FAULT_FILE
    log = faultrun.FaultLog(**json.loads(path.read_text())) if path.exists() else \
        faultrun.FaultLog(armed[0], armed=armed[1])
    crashed = writelog.crash_time(out)
    dump_layout = layout_mod.load(out / "layout.json")
    if crashed is not None:
        io = dumpio.load("primary", out / dump_layout.image, scenario.disk, scenario.target, scenario.lun, 0,
                         dump_layout.dump_offset, dump_layout.dump_size, crashed,
                         cmdlog.read(out, scenario.block_size))
        landed = sum(len(w.entries) for w in io.writes)
        stopped = next((w for w in io.writes if sum(e.length for e in w.entries) < w.length), None)
        log.writes_landed = landed
        if stopped is not None:
            done = sum(e.length for e in stopped.entries)
            log.fired = True
            log.stopped_write = (f"{stopped.describe(crashed)} did not reach the disk"
                                 + (f", of which {done} bytes had" if done else "")
                                 + f" (partition block {(stopped.offset + done) // scenario.block_size})")
    log.save(out)


def _live_fault(fault: faults_mod.Fault, machine: Machine, out: Path, armed: tuple[str, str],
                limits: dict) -> faultrun.FaultLog:
    """Wait for the fault's write, do it, and keep what happened in fault.json."""
    log = faultrun.wait_for_trigger(fault, machine, DUMP_NODE, out / "result.log", limits["dump"])
    log.armed = armed[1]
    try:
        if log.fired:
            faultrun.act(fault, machine, f"{DUMP_NODE}-dev", log)
            if fault.kind.reboots:
                # The machine reboots into the guest, which boots again and idles: its second
                # READY shows the reset took, and that nothing else touched the disk.
                faultrun.wait_for_lines(out / "result.log", "READY", 2, limits["boot"], machine.is_running,
                                        "the guest to boot again after system_reset (a second READY)")
                log.events.append("the guest booted again after the reset")
    finally:
        log.save(out)
    return log


def _previous_dump(scenario: Scenario, out: Path) -> None:
    """`stale`: a complete dump of an earlier run, left on the disk the new run will use."""
    previous = Scenario(out_dir=out / "previous", disk=scenario.disk, crash="nmi",
                        memory_bytes=scenario.memory_bytes, accel=scenario.accel, firmware=scenario.firmware,
                        block_size=scenario.block_size, target=scenario.target, lun=scenario.lun,
                        level=scenario.level, components=scenario.components)
    _, report = run_and_validate(previous)
    if report["verdict"] != "pass":
        raise DumpbedError(f"stale: the earlier run that leaves a dump on the disk failed: see {out / 'previous'}")
    for name in ("dump.img", "layout.json"):
        shutil.copyfile(out / "previous" / name, out / name)
    # What the disk held before the new run: the canary oracle compares the sectors outside
    # the new dump with it (the old dump's must still be there, untouched).
    shutil.copyfile(out / "dump.img", out / "before.img")


def _run_failure(machine: Machine, out: Path, exc: BaseException) -> str:
    """A failure while QEMU ran: diagnostics first (QEMU is still up), then what it was.

    Returns the problem when the run ended badly on the guest's side (a wait timed out, the
    guest exited early): the report carries it. Raises DumpbedError, one line for the CLI's
    exit status 2, when QEMU or the host failed: QEMU killed or exiting on its own, a QMP
    command refused, a full disk. A launch failure is already such an error."""
    if not machine.launched:
        raise exc
    message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
    try:  # QEMU says only "An IO error has occurred" when a pmemsave fills the disk
        if shutil.disk_usage(out).free < MiB and "No space left" not in message:
            message += f" (the filesystem of {out} is full)"
    except OSError:
        pass
    timed_out = isinstance(exc, WaitTimeout) and not isinstance(exc, WaitAborted)
    # EOF on QMP or the console can arrive a moment before QEMU's exit status does.
    died = machine.died(grace=0.0 if timed_out else 1.0)
    saved = _save_diagnostics(machine, out, message)
    where = f"diagnostics in {saved}" if isinstance(saved, Path) else f"diagnostics not saved: {saved}"
    if died:
        during = f"while waiting for {exc.what}" if isinstance(exc, WaitAborted) and exc.what else f"({message})"
        raise DumpbedError(f"QEMU {died} {during}; {where}") from None
    if isinstance(exc, WaitTimeout):
        return f"{message}; {where}"
    raise DumpbedError(f"{message}; {where}") from None


def _save_diagnostics(machine: Machine, out: Path, problem: str):
    """Before tearing QEMU down after a failure, keep what explains it: how QEMU stands, its
    registers (if it still answers), the console, the result channel and QEMU's stderr.
    Returns the file's path, or why it could not be written (it never raises)."""
    lines = [f"problem: {problem}", f"qemu: {machine.stderr_summary()}"]
    if machine.is_running() and machine.qmp is not None:
        try:
            lines += ["", "registers:", machine.qmp.hmp("info registers", timeout=5).rstrip()]
        except DumpbedError as exc:
            lines += ["", f"registers unavailable: {exc}"]
    else:
        lines += ["", "registers unavailable: QEMU is not running"]
    if machine.console is not None:
        lines += ["", "console tail:", machine.console.tail().rstrip()]
    else:
        try:
            lines += ["", "console tail:", (out / "console.log").read_text(errors="replace")[-2000:].rstrip()]
        except OSError:
            pass
    try:
        result_lines = (out / "result.log").read_text(errors="replace").splitlines()[-10:]
        lines += ["", "result channel tail:", *result_lines]
    except OSError:
        pass
    lines += ["", "qemu stderr tail:", machine.stderr_tail(20) or "(empty)"]
    if machine.qmp is not None:
        lines += ["", "last QMP events:", *(json.dumps(e) for e in machine.qmp.events()[-10:])]
    path = out / "diagnostics.txt"
    try:
        path.write_text("\n".join(lines) + "\n")
    except OSError as exc:
        return describe_os_error(exc)
    return path


def run_and_validate(scenario: Scenario, interact: Optional[Interaction] = None) -> tuple[RunOutcome, dict]:
    """run(), then every check on the artifacts; report.json is saved beside them."""
    from dumpbed import report as report_mod
    from dumpbed.oracles import validate

    outcome = run(scenario, interact)
    out = Path(scenario.out_dir)
    t0 = time.monotonic()
    try:
        validation = validate.validate_run(out).to_dict()
    except DumpbedError as exc:
        if outcome.problem is None:
            raise
        # The run broke before its ground truth was complete: judge what the disk alone
        # carries, and say why the rest could not be checked.
        validation = validate.validate_image(out / "dump.img").to_dict()
        validation["checks"].append({"name": "ground-truth", "ok": False, "detail": str(exc)})
    timings = dict(outcome.timings, validate=time.monotonic() - t0)
    scenario_json = json.loads((out / "scenario.json").read_text())
    report = report_mod.build(out, validation, timings, scenario=scenario_json,
                              exit_status=outcome.exit_status, problem=outcome.problem)
    report_mod.save(report, out)
    if scenario.pictures:
        draw_pictures(out, report)
    return outcome, report


def draw_pictures(out: Path, report: dict) -> None:
    """The disk map, the write timeline and run.html beside a run's report: never an error."""
    from dumpbed import pictures

    page = pictures.write(out, report)["html"]
    if page:
        print(f"dumpbed: pictures and checks in {page}", file=sys.stderr)


def validate_run_dir(path: Path, save: bool = False) -> dict:
    """`dumpbed validate RUN`: every check on a run directory's artifacts, whoever made them (this
    machine, or a remote host whose run was copied back: docs/nightly.md), the pictures redrawn
    beside them (and report.json replaced by this report with `save`). An interrupted run or a directory that is not a run's is
    a DumpbedError."""
    from dumpbed import pictures, report as report_mod
    from dumpbed.oracles import validate

    path = Path(path)
    t0 = time.monotonic()
    marker = interrupted(path)
    if marker is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(marker["time"])) \
            if isinstance(marker.get("time"), (int, float)) else "at an unknown time"
        raise DumpbedError(f"{path}: interrupted: the run was stopped by {marker.get('signal', 'a signal')} "
                           f"({when}) before it finished, so its artifacts are incomplete: nothing to validate")
    if not (path / "scenario.json").exists():
        raise DumpbedError(f"{path}: not a run directory (no scenario.json: `dumpbed run --out DIR` writes one)")
    validation = validate.validate_run(path).to_dict()
    scenario = json.loads((path / "scenario.json").read_text())
    report = report_mod.build(path, validation, {"validate": time.monotonic() - t0}, scenario=scenario)
    if save:
        report_mod.save(report, path)
    pictures.write(path, report)  # redrawn to match this report, as run draws them: never an error
    return report

