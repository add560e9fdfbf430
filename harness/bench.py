"""`dumpbed bench`: how fast the guest's polled dump is, against what the host itself can do.

One run measures, side by side: the virtio-blk NMI scenario's dump throughput; the host's own
sequential write throughput to a raw image in the same directory, through QEMU's block layer
(`qemu-img bench`, same request size, one request in flight, flushed at the end, as the guest
does); and QEMU's host-side `dump-guest-memory` of the same guest, taken while it is stopped.
Figures are reported as ratios so that machines can be compared.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.errors import DumpbedError
from harness.machine import Machine
from harness.run import Scenario, run_and_validate

MIB = 1 << 20
REQUEST_BYTES = 4 * MIB  # the guest's DUMPQUERY max transfer on virtio-blk


def host_write_mib_s(directory: Path, nbytes: int) -> float:
    image = directory / "bench-host-write.img"
    count = max(1, nbytes // REQUEST_BYTES)
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(image), str(count * REQUEST_BYTES)],
                       check=True, capture_output=True, timeout=60)
        proc = subprocess.run(
            ["qemu-img", "bench", "-w", "-t", "writeback", "-f", "raw", "-s", str(REQUEST_BYTES),
             "-c", str(count), "-d", "1", f"--flush-interval={count}", "--pattern=0xa5", str(image)],
            capture_output=True, text=True, timeout=600)
    finally:
        image.unlink(missing_ok=True)
    match = re.search(r"Run completed in ([0-9.]+) seconds", proc.stdout)
    if proc.returncode != 0 or not match:
        raise DumpbedError(f"qemu-img bench failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return count * REQUEST_BYTES / MIB / float(match.group(1))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


class _QemuDumpTimer:
    """on_paused hook: time QEMU's own dump-guest-memory of the stopped guest."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds = None
        self.bytes = 0

    def __call__(self, machine: Machine) -> None:
        since = len(machine.qmp.events())
        t0 = time.monotonic()
        machine.qmp.command("dump-guest-memory",
                            {"paging": False, "protocol": f"file:{self.path.resolve()}", "detach": True})
        event = machine.qmp.wait_event("DUMP_COMPLETED", timeout=600, since=since)
        self.seconds = time.monotonic() - t0
        if event.get("data", {}).get("error"):
            raise DumpbedError(f"dump-guest-memory failed: {event['data']['error']}")
        self.bytes = self.path.stat().st_size
        self.path.unlink()


def run_bench(out: Path, memory_bytes: int, accel: str = "auto", keep: bool = False) -> dict:
    qemu_dump = _QemuDumpTimer(Path(out) / "qemu-dump-guest-memory.elf")
    scenario = Scenario(out_dir=out, memory_bytes=memory_bytes, accel=accel, on_paused=qemu_dump)
    outcome, rep = run_and_validate(scenario)

    dump_bytes = rep["dump"].get("bytes", 0)
    host = host_write_mib_s(out, dump_bytes or memory_bytes)
    dump_speed = rep["throughput_mib_s"] or 0.0
    qemu_speed = qemu_dump.bytes / MIB / qemu_dump.seconds if qemu_dump.seconds else 0.0
    result = {
        "verdict": rep["verdict"],
        "machine": {"host": platform.node(), "cpu": _cpu_model(), "cores": os.cpu_count(),
                    "accel": outcome.accel, "memory_bytes": memory_bytes},
        "dump_bytes": dump_bytes,
        "dump_mib_s": dump_speed,
        "host_write_mib_s": round(host, 1),
        "qemu_dump_guest_memory_mib_s": round(qemu_speed, 1),
        "ratio_dump_to_host_write": round(dump_speed / host, 3) if host else None,
        "ratio_dump_to_qemu_dump": round(dump_speed / qemu_speed, 3) if qemu_speed else None,
        "boot_s": rep["timings"].get("boot"),
        "crash_to_verdict_s": round(rep["timings"].get("crash_to_dump_done", 0) + rep["timings"]["validate"], 3),
        "report": str(out / "report.json"),
    }
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    if not keep:  # the images are GiB-sized; the figures and logs stay
        for big in [out / "dump.img", *(out / "snapshot").glob("mem-*.bin")]:
            big.unlink(missing_ok=True)
    return result





def render(result: dict) -> None:
    table = Table(title=f"dumpbed bench ({result['machine']['accel']}, "
                        f"{result['machine']['memory_bytes'] // MIB} MiB guest)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("guest polled dump (virtio-blk)", f"{result['dump_mib_s']} MiB/s")
    table.add_row("host write, qemu-img bench", f"{result['host_write_mib_s']} MiB/s")
    table.add_row("QEMU dump-guest-memory", f"{result['qemu_dump_guest_memory_mib_s']} MiB/s")
    table.add_row("dump / host write", f"{result['ratio_dump_to_host_write']}")
    table.add_row("dump / dump-guest-memory", f"{result['ratio_dump_to_qemu_dump']}")
    table.add_row("boot", f"{result['boot_s']} s")
    table.add_row("crash to verdict", f"{result['crash_to_verdict_s']} s")
    Console().print(table)
    print("PASS" if result["verdict"] == "pass" else "FAIL (the dump did not validate: see the report)")
