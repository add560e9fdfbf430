"""One scenario end to end: disk, boot, crash, dump, collect, validate.

Each step is a function of the module that owns it; this file only sequences them, times them,
and makes sure that whatever happens QEMU is gone and the artifacts are on disk.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from harness import accel as accel_mod
from harness import crash as crash_mod
from harness import groundtruth, images, resultchan
from harness.deadline import WaitTimeout
from harness.errors import DumpbedError
from harness.layout import DiskLayout
from harness.machine import Disk, Machine, MachineConfig

EXIT_COMPLETE = 67  # guest wrote 0x21 to isa-debug-exit: (0x21 << 1) | 1
EXIT_FAILED = 69
GIB = 1 << 30


@dataclass
class Scenario:
    out_dir: Path
    disk: str = "virtio-blk"
    crash: str = "nmi"
    memory_bytes: int = 256 << 20
    accel: str = "auto"
    firmware: str = "qboot"
    block_size: int = 512
    fill: bool = True
    # Called while the VM is stopped after the ground truth is taken, before the crash.
    on_paused: Optional[Callable[[Machine], None]] = field(default=None, repr=False)


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
    """Deadlines scaled for TCG (several times slower than KVM) and for guest size."""
    slow = 4.0 if accel == "tcg" else 1.0
    gib = max(1.0, memory_bytes / GIB)
    return {
        "boot": 30.0 * slow * gib,
        "dump": 60.0 * slow * gib,
        "io_ms": int(10_000 * slow),
    }


def prepare_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DumpbedError(f"output directory {out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def run(scenario: Scenario) -> RunOutcome:
    if scenario.disk != "virtio-blk":
        raise DumpbedError(f"unknown disk type {scenario.disk!r} (available: virtio-blk)")
    crash = crash_mod.get(scenario.crash)
    accel = accel_mod.choose(scenario.accel)
    out = prepare_out_dir(scenario.out_dir)
    limits = _timeouts(accel, scenario.memory_bytes)
    kernel = images.build_guest()

    dump_id = secrets.token_hex(16)
    fill_seed = secrets.token_hex(8) if scenario.fill else None
    layout = DiskLayout.for_dump(scenario.memory_bytes, block_size=scenario.block_size,
                                 canary_seed=secrets.randbits(32))
    image = out / "dump.img"
    images.create_dump_disk(image, layout)
    layout.save(out / "layout.json")

    cmdline = f"dumpdev=virtio-blk dumpid={dump_id} iotimeout={limits['io_ms']}"
    cmdline += f" fill={fill_seed}" if fill_seed else " fill=off"
    (out / "scenario.json").write_text(json.dumps({
        "version": 1, "disk": scenario.disk, "crash": scenario.crash,
        "memory_bytes": scenario.memory_bytes, "accel": accel, "firmware": scenario.firmware,
        "block_size": scenario.block_size, "dump_id": dump_id, "fill_seed": fill_seed,
        "cmdline": cmdline,
    }, indent=1) + "\n")

    config = MachineConfig(
        kernel=kernel, cmdline=cmdline, memory_bytes=scenario.memory_bytes, accel=accel,
        firmware=scenario.firmware,
        disks=[Disk(image=image.resolve(), kind="virtio-blk", block_size=scenario.block_size)],
    )
    result_log = out / "result.log"
    timings: dict[str, float] = {}
    guest_result = None
    problem = None
    machine = Machine(config, out)
    try:
        t0 = time.monotonic()
        machine.launch()
        machine.cont()
        resultchan.wait_for(result_log, "READY", limits["boot"], machine.is_running,
                            "the guest to boot (READY on the result channel)")
        timings["boot"] = time.monotonic() - t0

        machine.stop()
        groundtruth.take(machine, out / "snapshot", scenario.memory_bytes)
        if scenario.on_paused:
            scenario.on_paused(machine)
        t_crash = time.monotonic()
        crash.inject(machine)
        machine.cont()
        guest_result = resultchan.wait_for(result_log, "DONE", limits["dump"], machine.is_running,
                                           "the guest to finish its dump (DONE on the result channel)")
        machine.wait_exit(10)
        timings["crash_to_dump_done"] = time.monotonic() - t_crash
    except (WaitTimeout, resultchan.GuestGone) as exc:
        problem = str(exc)
        _save_diagnostics(machine, out, problem)
    finally:
        machine.shutdown()
    return RunOutcome(scenario, accel, dump_id, timings, machine.exit_status, guest_result, problem)


def _save_diagnostics(machine: Machine, out: Path, problem: str) -> None:
    """Before tearing QEMU down after a failure, keep what explains it."""
    lines = [f"problem: {problem}", f"qemu: {machine.stderr_summary()}"]
    if machine.is_running() and machine.qmp is not None:
        try:
            lines += ["", "registers:", machine.qmp.hmp("info registers", timeout=5)]
        except DumpbedError as exc:
            lines.append(f"registers unavailable: {exc}")
    if machine.console is not None:
        lines += ["", "console tail:", machine.console.tail()]
    (out / "diagnostics.txt").write_text("\n".join(lines) + "\n")


def run_and_validate(scenario: Scenario) -> tuple[RunOutcome, dict]:
    """run(), then every check on the artifacts; report.json is saved beside them."""
    from harness import report as report_mod
    from harness import validate

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
