"""`dumpbed bench`: how fast the guest's polled dump is, against what the host itself can do.

One run measures, side by side: the virtio-blk NMI scenario's dump throughput; the host's own
sequential write throughput to a raw image in the same directory, through QEMU's block layer
(`qemu-img bench`, same request size, as many requests in flight as the guest's virtio-blk
driver keeps, flushed at the end, as the guest does); and QEMU's host-side `dump-guest-memory` of the same guest, taken while it is stopped.
Figures are reported as ratios so that machines can be compared.
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from dumpbed import progress
from dumpbed.capture import blklog, guestprof
from dumpbed.errors import DumpbedError
from dumpbed.images.topology import DiskSpec, Topology
from dumpbed.machine.qemu import Machine
from dumpbed.run import Scenario, preflight, run_and_validate
from dumpbed.scenario.disks import DISKS
from dumpbed.units import MiB

REQUEST_BYTES = 2 * MiB  # the guest's DUMPQUERY max transfer on virtio-blk
REQUEST_DEPTH = 3  # and its max_outstanding: the writes it keeps in flight at once


def host_write_mib_s(directory: Path, nbytes: int, write_log: bool = False) -> float:
    """The host's own sequential write of `nbytes` (REQUEST_BYTES requests, REQUEST_DEPTH in flight, writeback,
    flushed at the end) to a new raw image in `directory`; with `write_log`, through the block
    graph a dump disk has (a blklogwrites node logging every write with its data to a new log
    beside the image), so the evidence's own cost is in the reference too."""
    image = directory / "bench-host-write.img"
    log = blklog.log_path(image)
    count = max(1, nbytes // REQUEST_BYTES)
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(image), str(count * REQUEST_BYTES)],
                       check=True, capture_output=True, timeout=60)
        if write_log:
            log.write_bytes(b"")
        seconds = qemu_img_bench(graph_target(image, log if write_log else None), count)
    finally:
        image.unlink(missing_ok=True)
        log.unlink(missing_ok=True)
    return count * REQUEST_BYTES / MiB / seconds


def graph_target(image: Path, log: Optional[Path]) -> list[str]:
    """qemu-img's arguments for `image` as a dump disk's block graph (with `log`: its write log),
    built by the same code that builds the guest's -blockdev."""
    if log is None:
        return ["-f", "raw", str(image)]
    spec = DiskSpec(image=image, node="bench", write_log=log)
    return ["json:" + json.dumps(Topology.blockdev(spec), separators=(",", ":"))]


def qemu_img_bench(target: list[str], count: int) -> float:
    """Seconds `qemu-img bench` took to write `count` requests of REQUEST_BYTES to `target`."""
    proc = subprocess.run(
        ["qemu-img", "bench", "-w", "-t", "writeback", "-s", str(REQUEST_BYTES), "-c", str(count), "-d", str(min(REQUEST_DEPTH, count)),
         f"--flush-interval={count}", "--pattern=0xa5", *target],
        capture_output=True, text=True, timeout=600)
    match = re.search(r"Run completed in ([0-9.]+) seconds", proc.stdout)
    if proc.returncode != 0 or not match:
        raise DumpbedError(f"qemu-img bench failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return float(match.group(1))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


class _ReferenceTaken(Exception):
    """The reference run ends once QEMU's dump is timed: its guest's own dump is not what it is
    for (not a DumpbedError, which a run records and goes on from)."""


class _QemuDumpTimer:
    """on_paused hook: time QEMU's own dump-guest-memory of the stopped guest, then end the run."""

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
        raise _ReferenceTaken()


BENCH_DISKS = tuple(DISKS)  # every disk kind, a row each
# A network dump target gets a second row through a lossy link: what retransmission costs.
LOSSY_LINK = "net-drop=1"


@dataclass(frozen=True)
class BenchCase:
    """One row: a disk kind, clean or through a fault, its RAM filled or not, compressed or not."""
    label: str
    disk: str
    faults: tuple[str, ...] = ()
    fill: bool = True
    compress: str = "off"


def bench_cases(disks: tuple[str, ...], compress: str = "off") -> list[BenchCase]:
    """Every kind clean, a network one also at 1% loss; with `compress`, the first disk kind
    benched again on compressible memory (no fill: zeros) uncompressed and compressed, and on
    incompressible memory (the fill) compressed: what compression gains and costs."""
    cases = []
    for disk in disks:
        cases.append(BenchCase(disk, disk))
        if DISKS[disk].network:
            # no '%' in the label: QEMU's -D takes it as a template
            cases.append(BenchCase(f"{disk}-1pct-loss", disk, (LOSSY_LINK,)))
    if compress != "off" and disks:
        disk = disks[0]
        cases += [BenchCase(f"{disk}-nofill", disk, fill=False),
                  BenchCase(f"{disk}-{compress}", disk, compress=compress),
                  BenchCase(f"{disk}-{compress}-nofill", disk, fill=False, compress=compress)]
    return cases


def compression_gains(rows: list[dict], compress: str) -> dict:
    """Each compressed row's effective rate (RAM bytes per second of dump) over the uncompressed
    dump of the same memory: compressible (no fill) and incompressible (the fill)."""
    def row(kind: str, fill: bool, method: str) -> Optional[dict]:
        return next((r for r in rows if r.get("kind") == kind and r.get("fill") == fill
                     and r.get("compress") == method and not r.get("faults") and r.get("data_mib_s")), None)

    gains = {}
    for packed in (r for r in rows if r.get("compress") == compress and r.get("data_mib_s")):
        plain = row(packed["kind"], packed["fill"], "off")
        if plain:
            gains["incompressible" if packed["fill"] else "compressible"] = round(
                packed["data_mib_s"] / plain["data_mib_s"], 3)
    return gains


def compression_line(gains: dict) -> str:
    """The summary's line for compression_gains (with repeats, each gain's median and range, as
    every other figure)."""
    spread = gains.get("spread") or {}
    shown = {k: _shown(gains.get(k, "-"), spread.get(k)) for k in ("compressible", "incompressible")}
    return (f"{gains['method']}: data MiB/s (the RAM dumped per second) over the uncompressed dump of the same "
            f"memory: compressible (no fill) {shown['compressible']}x, incompressible (fill) "
            f"{shown['incompressible']}x")


# The host's own figures each repeat measures, and the ratio each gives every row.
REFERENCES = ("host_write_mib_s", "graph_write_mib_s", "qemu_dump_guest_memory_mib_s")
RATIOS = dict(zip(("ratio_to_host_write", "ratio_to_graph_write", "ratio_to_qemu_dump"), REFERENCES))
# The figures --repeat gives as minimum, median and maximum (each repeat's ratios against the host
# references measured in that same repeat)
FIGURES = ("dump_mib_s", "data_mib_s", "ratio_to_host_write", "ratio_to_graph_write", "ratio_to_qemu_dump",
           "boot_s", "qemu_start_s", "crash_to_verdict_s", "validate_mib_s")


def run_bench(out: Path, memory_bytes: int, accel: str = "auto", keep: bool = False,
              disks: tuple[str, ...] = BENCH_DISKS, repeat: int = 1, compress: str = "off") -> dict:
    """One NMI scenario per disk type, each in out/DISK/ (out/DISK/N/ with repeat > 1), beside
    the host's own figures, measured again in each repeat; with repeat > 1 each figure is also
    given as its minimum, median and maximum over the repeats."""
    out = Path(out)
    if repeat < 1:
        raise DumpbedError(f"--repeat {repeat}: at least 1")
    cases = bench_cases(disks, compress)
    for case in cases:  # bad input ends here, before anything is written
        preflight(_scenario(case, out / case.label, memory_bytes, accel))
    out.mkdir(parents=True, exist_ok=True)
    repeats, accel_used = [], accel
    with progress.task("bench", total=len(cases) * repeat) as runs:  # each run's own bars below it
        for k in range(repeat):
            rows, accel_k, refs = _one_repeat(out, cases, memory_bytes, accel, keep, runs, k, repeat)
            accel_used = accel_k or accel_used
            repeats.append({**{name: round(refs[name], 1) for name in REFERENCES}, "disks": rows})
    first = repeats[0]
    rows = [dict(row) for row in first["disks"]]
    if repeat > 1:
        for i, row in enumerate(rows):
            row["repeats"] = {name: _spread([r["disks"][i].get(name) for r in repeats]) for name in FIGURES}
            row["verdict"] = "pass" if all(r["disks"][i]["verdict"] == "pass" for r in repeats) else "fail"
    result = {
        "verdict": "pass" if rows and all(r["verdict"] == "pass" for r in rows) else "fail",
        "machine": {"host": platform.node(), "cpu": _cpu_model(), "cores": os.cpu_count(),
                    "accel": accel_used, "memory_bytes": memory_bytes},
        "date": time.strftime("%Y-%m-%d"),
        "repeat": repeat,
        **{name: first[name] for name in REFERENCES},
        "disks": rows,
    }
    if compress != "off":
        result["compression"] = {"method": compress, **compression_gains(rows, compress)}
        if repeat > 1:
            each = [compression_gains(r["disks"], compress) for r in repeats]
            result["compression"]["repeats"] = each
            result["compression"]["spread"] = {k: _spread([g.get(k) for g in each])
                                               for k in ("compressible", "incompressible")}
    if repeat > 1:
        for name in REFERENCES:
            result[f"{name}_spread"] = _spread([r[name] for r in repeats])
        result["repeats"] = repeats
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _scenario(case: BenchCase, run_dir: Path, memory_bytes: int, accel: str, on_paused=None) -> Scenario:
    # No sample components: the figure is the driver's and the writer's, not the samples' few
    # hundred small areas (docs/benchmarks.md).
    return Scenario(out_dir=run_dir, disk=case.disk, memory_bytes=memory_bytes, accel=accel, components="none",
                    faults=list(case.faults), fill=case.fill, compress=case.compress, pictures=False,
                    on_paused=on_paused)


def _spread(values: list) -> Optional[dict]:
    """{min, median, max} of the repeats' values (None where a repeat has none)."""
    got = sorted(v for v in values if isinstance(v, (int, float)))
    if not got:
        return None
    return {"min": got[0], "median": round(statistics.median(got), 3), "max": got[-1], "n": len(got)}


def _one_repeat(out: Path, cases, memory_bytes: int, accel: str, keep: bool, runs, k: int, repeat: int):
    """Every case once, then the host's own writes and QEMU's dump of the first case's guest, in
    this repeat: (rows in the cases' order, the accelerator used, {reference: MiB/s}).

    The cases run in an order rotated by one each repeat: the first run after the references'
    GiBs were written and freed is the slower for it (measured: 350-450 MiB/s where the same kind
    ran at 800 later in its repeat), so no row pays for it in more than one repeat of a few."""
    rows, accel_used, dump_bytes = [], None, 0
    order = cases[k % len(cases):] + cases[:k % len(cases)]
    for index, case in enumerate(order):
        label = case.label
        runs.update(completed=k * len(cases) + index, description=f"bench: {label}" + (f" #{k + 1}" if k else ""))
        run_dir = out / label / str(k + 1) if repeat > 1 else out / label
        scenario = _scenario(case, run_dir, memory_bytes, accel)
        try:
            outcome, rep = run_and_validate(scenario)
        except DumpbedError as exc:
            rows.append({"disk": label, "verdict": "fail", "error": str(exc)})
            continue
        accel_used = outcome.accel
        if case.compress == "off":  # the host writes what an uncompressed dump writes
            dump_bytes = max(dump_bytes, rep["dump"].get("bytes", 0))
        seconds = rep["timings"].get("crash_to_dump_done")
        data_bytes = sum(a["length"] for a in rep["dump"].get("areas") or [])
        rows.append({
            "disk": label,
            "kind": case.disk,
            "faults": list(case.faults),
            "fill": case.fill,
            "compress": case.compress,
            "verdict": rep["verdict"],
            "dump_bytes": rep["dump"].get("bytes", 0),
            "dump_mib_s": rep["throughput_mib_s"] or 0.0,
            # the effective rate: the guest's data (its areas' lengths, before compression) per second
            "data_bytes": data_bytes,
            "data_mib_s": round(data_bytes / MiB / seconds, 2) if seconds else 0.0,
            "boot_s": rep["timings"].get("boot"),
            # of it, QEMU's start with the RAM preallocated: the host's part (docs/benchmarks.md)
            "qemu_start_s": rep["timings"].get("qemu_start"),
            "crash_to_verdict_s": round(rep["timings"].get("crash_to_dump_done", 0)
                                        + rep["timings"]["validate"], 3),
            # every oracle, the consistency sweep over every disk state among them, in dump MiB/s
            "validate_s": round(rep["timings"]["validate"], 3),
            "validate_mib_s": round(rep["dump"].get("bytes", 0) / MiB / rep["timings"]["validate"], 1)
            if rep["timings"]["validate"] else 0.0,
            # where the guest's dump time went (its PROFILE line; docs/guest-interface.md)
            "profile": guestprof.breakdown(run_dir),
            "report": str(run_dir / "report.json"),
        })
        if not keep:
            _drop_big_files(run_dir)
    labels = [c.label for c in cases]
    rows.sort(key=lambda row: labels.index(row["disk"]))
    with progress.task("bench: the host's own write (qemu-img bench), bare and through the write log"):
        refs = {"host_write_mib_s": host_write_mib_s(out, dump_bytes or memory_bytes),
                "graph_write_mib_s": host_write_mib_s(out, dump_bytes or memory_bytes, write_log=True)}
    refs["qemu_dump_guest_memory_mib_s"] = _qemu_dump_mib_s(out, cases[0], memory_bytes, accel, k, repeat)
    for row in rows:
        speed = row.get("dump_mib_s", 0.0)
        for ratio, name in RATIOS.items():
            row[ratio] = round(speed / refs[name], 3) if refs[name] and speed else None
    return rows, accel_used, refs


def _qemu_dump_mib_s(out: Path, case: BenchCase, memory_bytes: int, accel: str, k: int, repeat: int) -> float:
    """QEMU's dump-guest-memory of the first case's guest, stopped before its crash, in a run of
    its own that is not a row: taken inside a measured run it made that run's dump half as fast
    (measured: 300 against 700 MiB/s, its 1 GiB file written and deleted just before the crash)."""
    timer = _QemuDumpTimer(out / "qemu-dump-guest-memory.elf")
    run_dir = out / "qemu-dump-guest-memory" / (str(k + 1) if repeat > 1 else "")
    try:
        run_and_validate(_scenario(case, run_dir, memory_bytes, accel, on_paused=timer))
    except (_ReferenceTaken, DumpbedError):
        pass  # the reference is the timer's; a run that fails before it is a row's to report
    finally:
        _drop_big_files(run_dir)
    return timer.bytes / MiB / timer.seconds if timer.seconds else 0.0


def _drop_big_files(run_dir: Path) -> None:
    """The run's GiB-sized files (the disk images, their write logs, the RAM snapshot); the
    figures and the other logs stay."""
    for big in [*run_dir.glob("*.img"), *run_dir.glob(f"*{blklog.LOG_SUFFIX}"),
                *(run_dir / "snapshot").glob("mem-*.bin")]:
        big.unlink(missing_ok=True)


def _shown(value, spread: Optional[dict]) -> str:
    """A figure: the value, or with repeats its median and (min-max)."""
    if spread:
        return f"{spread['median']} ({spread['min']}-{spread['max']})"
    return f"{value}"


def _figure(row: dict, name: str) -> str:
    return _shown(row.get(name), (row.get("repeats") or {}).get(name))


def render(result: dict, profile: bool = False) -> None:
    m = result["machine"]
    repeat = result.get("repeat", 1)
    title = (f"dumpbed bench: {m['accel']}, {m['memory_bytes'] // MiB} MiB guest, {m['cpu']}"
             + (f"; median (min-max) of {repeat} repeats" if repeat > 1 else ""))
    table = Table(title=title)
    # dump MiB/s, then as a ratio to the host's write speed and to QEMU's dump-guest-memory
    for column in ("disk", "MiB/s", "data MiB/s", "x host", "x graph", "x qemu", "boot s", "of it QEMU s",
                   "to verdict s", "validate MiB/s", "verdict"):
        table.add_column(column, justify="left" if column in ("disk", "verdict") else "right",
                         no_wrap=column == "disk")
    for r in result["disks"]:
        if "error" in r:
            table.add_row(r["disk"], *["-"] * len(FIGURES), f"[red]error[/] {r['error']}")
            continue
        table.add_row(r["disk"], *(_figure(r, name) for name in FIGURES),
                      "[green]pass[/]" if r["verdict"] == "pass" else "[red]FAIL[/]")
    console = Console(width=max(Console().width, 100))  # the columns whole, even in a log
    console.print(table)
    host, graph, qemu = (_shown(result[name], result.get(f"{name}_spread")) for name in REFERENCES)
    print(f"x host: ratio to the host's write, qemu-img bench with {REQUEST_BYTES // MiB} MiB requests at depth "
          f"{REQUEST_DEPTH}, "
          f"writeback (the dump "
          f"disk's cache mode), measured in each repeat: {host} MiB/s\nx graph: the same write through the dump "
          f"disk's block graph (its blklogwrites write log): {graph} MiB/s\nx qemu: ratio to QEMU's "
          f"dump-guest-memory of the same guest: {qemu} MiB/s")
    if result.get("compression"):
        print(compression_line(result["compression"]))
    if profile:
        for r in result["disks"]:
            _render_profile(console, r)
    print("PASS" if result["verdict"] == "pass" else "FAIL (a dump did not validate: see its report)")


def _render_profile(console: Console, row: dict) -> None:
    """Where the guest's dump time went (its PROFILE line), for one row (the first repeat's)."""
    prof = row.get("profile")
    if not prof:
        console.print(f"{row['disk']}: no PROFILE line from the guest")
        return
    table = Table(title=f"{row['disk']}: {prof['total_ms']} ms from the crash to DONE")
    for column in ("where", "ms", "share", "calls", "ms each"):
        table.add_column(column, justify="left" if column == "where" else "right")
    for r in prof["rows"]:
        table.add_row(r["description"], f"{r['ms']:.1f}", f"{r['share']:.1%}", "" if r["n"] is None else str(r["n"]),
                      "" if r["per_ms"] is None else f"{r['per_ms']:.3f}")
    console.print(table)
    console.print(f"  ring 3 trips: {prof['user_calls']} x {prof['user_call_us']} us = {prof['user_calls_ms']} ms "
                  f"(inside the CRC, copy and zip rows); page-table switches: {prof['cr3_writes']}; the device took "
                  f"{prof['write_bytes'] // MiB} MiB at {prof['device_mib_s']} MiB/s while the guest waited")
