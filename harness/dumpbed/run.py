"""One scenario end to end: disk, boot, crash, dump, collect, validate.

Each step is a function of the module that owns it; this file only sequences them, times them,
and makes sure that whatever happens QEMU is gone and the artifacts are on disk.
"""
from __future__ import annotations

import json
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dumpbed.capture import cmdlog, groundtruth, irqwatch, writelog
from dumpbed.capture.estimates import capture_estimates, console_command
from dumpbed.deadline import WaitAborted, WaitTimeout
from dumpbed.errors import DumpbedError, describe_os_error, environment_errors
from dumpbed.images import build as images, layout as layout_mod
from dumpbed.images.disks import make_disks
from dumpbed.images.topology import DUMP_NODE
from dumpbed.machine import accel as accel_mod, resultchan
from dumpbed.machine.qemu import Machine, MachineConfig, require_qemu
from dumpbed.oracles import dumpio
from dumpbed.scenario import crash as crash_mod, faultrun, faults as faults_mod
from dumpbed.scenario.spec import Scenario, check_scenario
from dumpbed.units import GiB, MiB

EXIT_COMPLETE = 67  # guest wrote 0x21 to isa-debug-exit: (0x21 << 1) | 1
EXIT_FAILED = 69


@dataclass
class RunOutcome:
    scenario: Scenario
    accel: str
    dump_id: str
    timings: dict[str, float]
    exit_status: Optional[int]
    guest_result: Optional[resultchan.ResultLine]
    problem: Optional[str]  # why the run itself went wrong (a timeout, QEMU died), if it did


def _timeouts(accel: str, memory_bytes: int) -> dict[str, float]:
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


@environment_errors  # a full disk or a hung tool is a DumpbedError here too, never an OSError
def run(scenario: Scenario) -> RunOutcome:
    components, faults = check_scenario(scenario)
    crash = crash_mod.get(scenario.crash)
    accel = accel_mod.choose(scenario.accel)
    require_qemu()  # before any disk image is built
    out = prepare_out_dir(scenario.out_dir)
    limits = _timeouts(accel, scenario.memory_bytes)
    limits["dump"] += crash.extra_seconds  # e.g. a hang: the watchdog's timeout comes first
    kernel = images.build_guest()

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

    cmdline = f"dumpdev={topology.dumpdev()} dumpid={dump_id} iotimeout={limits['io_ms']}"
    if topology.dumpdev2():
        cmdline += f" dumpdev2={topology.dumpdev2()}"
    cmdline += f" dumplevel={scenario.level} components={','.join(components) or 'none'}"
    cmdline += f" fill={fill_seed}" if fill_seed else " fill=off"
    if scenario.workload:
        cmdline += " workload=on"
    for word in scenario.guest_args:
        if "=" not in word or " " in word:
            raise DumpbedError(f"guest argument {word!r} is not KEY=VALUE")
        cmdline += f" {word}"
    (out / "scenario.json").write_text(json.dumps({
        "version": 1, "disk": scenario.disk, "crash": scenario.crash,
        "memory_bytes": scenario.memory_bytes, "ram_below_4g": scenario.ram_below_4g, "accel": accel, "firmware": scenario.firmware,
        "block_size": scenario.block_size, "dump_id": dump_id, "fill_seed": fill_seed,
        "workload": scenario.workload, "stop_disk": scenario.stop_disk,
        "topology": topology.to_json(), "cmdline": cmdline,
        "level": scenario.level, "components": components,
        "secondary": scenario.secondary, "faults": [str(f) for f in faults],
        # A device failure mid-dump with a secondary configured: the dump restarts there.
        "restart_expected": scenario.secondary is not None and any(f.kind.fails_device for f in faults),
        # What the run must end with (docs/faults.md): the dump's classification, and the
        # guest's DONE status (null: QEMU ends before the guest can say anything).
        "expect": faults_mod.expected_outcome(faults, scenario.secondary),
        "expect_guest_result": faults_mod.expected_guest_result(faults, scenario.secondary),
        "stale_previous": "previous" if stale else None,
    }, indent=1) + "\n")

    config = MachineConfig(
        kernel=kernel, cmdline=cmdline, memory_bytes=scenario.memory_bytes, accel=accel,
        ram_below_4g=scenario.ram_below_4g,
        firmware=scenario.firmware, devices=topology.qemu_args(),
        trace_events=list(dict.fromkeys(
            writelog.trace_events(scenario.disk, scenario.secondary or scenario.disk)
            + cmdlog.trace_events(scenario.disk, scenario.secondary or scenario.disk) + irqwatch.TRACE_EVENTS)),
        # trace lines carry the host time: before/after the crash; the crash may need devices
        extra_args=["-msg", "timestamp=on", *crash.qemu_args],
    )
    result_log = out / "result.log"
    timings: dict[str, float] = {}
    guest_result = None
    problem = None
    machine = Machine(config, out)
    armed = None
    try:
        t0 = time.monotonic()
        machine.launch()
        machine.cont()
        resultchan.wait_for(result_log, "READY", limits["boot"], machine.is_running,
                            "the guest to boot (READY on the result channel)")
        timings["boot"] = time.monotonic() - t0
        capture_estimates(machine, out, limits["boot"])
        if scenario.stop_disk:
            console_command(machine, "stop-disk", limits["boot"])
        if scenario.workload:
            time.sleep(scenario.workload_seconds)  # let runtime I/O pile up before the crash

        if crash.prepare:
            crash.prepare(machine)
        hold = next((f for f in faults if f.kind.holds_runtime), None)
        hold_log = faultrun.FaultLog(str(hold)) if hold else None
        if hold:  # QEMU stops by itself, runtime requests parked in the device
            data_offset = layout_mod.load(out / "layout.json").data_offset
            faultrun.hold_runtime(machine, DUMP_NODE, data_offset, limits["boot"], hold_log)
        machine.stop()
        groundtruth.take(machine, out / "snapshot", scenario.memory_bytes, scenario.ram_below_4g)
        if scenario.on_paused:
            scenario.on_paused(machine)
        # From the crash on, every byte the guest writes to its result channel is traced with
        # the host time: QUIESCED and DONE take their place among the device's commands.
        machine.qmp.command("trace-event-set-state", {"name": cmdlog.RESULT_EVENT, "enable": True})
        armed = _arm_fault(faults, machine, out, scenario)
        slow = next((f for f in faults if f.kind.throttles), None)
        if slow:
            faultrun.throttle(machine, scenario.disk, DUMP_NODE, slow.value)
            limits["dump"] += scenario.memory_bytes / (slow.value * MiB) * 1.5
        t_crash = time.monotonic()
        crash.inject(machine)
        crash_epoch = time.time()
        (out / "timeline.json").write_text(json.dumps({"crash_injected": crash_epoch}) + "\n")
        machine.cont()
        # Under TCG each sample stops the VM for a moment: sample less often there.
        sampler = irqwatch.RflagsSampler(machine, out, interval=0.05 if accel == "tcg" else 0.01,
                                         pause=accel == "tcg").start()
        try:
            if hold:
                try:
                    faultrun.ride_out_until_quiesced(machine, DUMP_NODE, result_log, limits["dump"], hold_log)
                finally:
                    hold_log.save(out)
            if crash.during_dump:  # e.g. the nested crash's second NMI
                crash.during_dump(machine, result_log, limits["dump"])
            live = next((f for f in faults if f.when is not None), None)
            if live is not None:
                fault_log = _live_fault(live, machine, out, armed, limits)
            # the guest goes on to its DONE unless the fault ended it (kill, reset: no DONE)
            if live is None or live.kind.guest_result is not None or not fault_log.fired:
                guest_result = resultchan.wait_for(result_log, "DONE", limits["dump"], machine.is_running,
                                                   "the guest to finish its dump (DONE on the result channel)")
                machine.wait_exit(10)
        finally:
            sampler.stop()
        timings["crash_to_dump_done"] = time.monotonic() - t_crash
    except (DumpbedError, OSError) as exc:  # WaitTimeout and GuestGone are DumpbedErrors
        problem = _run_failure(machine, out, exc)
    finally:
        machine.shutdown()
    _save_exit_status(out, machine.exit_status)
    if armed:
        _where_the_fault_hit(out, scenario, armed)
    return RunOutcome(scenario, accel, dump_id, timings, machine.exit_status, guest_result, problem)


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
        estimates = json.loads((out / "estimates.json").read_text())
        sector = faults_mod.trigger_sector(fault, dump_layout.dump_offset,
                                           faults_mod.body_offset_for(dump_layout.dump_size),
                                           estimates[str(scenario.level)]["total"])
    return str(fault), faultrun.arm(fault, machine, DUMP_NODE, sector)


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
    path = out / "fault.json"
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


def run_and_validate(scenario: Scenario) -> tuple[RunOutcome, dict]:
    """run(), then every check on the artifacts; report.json is saved beside them."""
    from dumpbed import report as report_mod
    from dumpbed.oracles import validate

    outcome = run(scenario)
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
    return outcome, report
