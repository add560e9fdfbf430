"""The report of a run or a re-validation: report.json for machines, a rich table for people."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.table import Table

from dumpbed import provenance, tables
from dumpbed.errors import DumpbedError
from dumpbed.reader import outcome
from dumpbed.scenario.faults import FAULT_FILE, fault_record
from dumpbed.units import MiB

# report.json's layout, as docs/report.schema.json describes it: raised when a field changes
# meaning or goes away (adding an optional field keeps it).
SCHEMA_VERSION = 1

ARTIFACT_FILES = {
    "qemu_cmdline": "qemu-cmdline.txt",
    "qemu_argv": "qemu-argv.json",
    "console_log": "console.log",
    "qemu_stderr": "qemu-stderr.log",
    "qmp_transcript": "qmp.jsonl",
    "result_channel": "result.log",
    "dump_image": "dump.img",
    "layout": "layout.json",
    "snapshot": "snapshot/memory.json",
    "registers": "snapshot/registers.json",
    "scenario": "scenario.json",
    "diagnostics": "diagnostics.txt",
    "report": "report.json",
    # a network dump's (docs/netdump-protocol.md, sections 7 and 8)
    "link_pcap": "link.pcap",
    "link_stats": "link.json",
    "server_events": "netdumpd.jsonl",
    "server_log": "netdumpd.log",
}



def build(run_dir: Optional[Path], validation: dict, timings: dict[str, float], *,
          scenario: Optional[dict] = None, exit_status: Optional[int] = None,
          problem: Optional[str] = None) -> dict[str, Any]:
    """The report of a run directory, or of a bare image when run_dir is None."""
    checks = list(validation["checks"])
    artifacts = {}
    if run_dir is not None:
        run_dir = Path(run_dir).resolve()
        artifacts = {k: str(run_dir / f) for k, f in ARTIFACT_FILES.items()
                     if (run_dir / f).exists() or k == "report"}
    elif validation.get("image"):
        artifacts = {"dump_image": str(Path(validation["image"]).resolve())}
    dump = validation.get("dump", {})
    judged = outcome.verdict(checks, dump, scenario, problem, validation.get("expected"))
    seconds = timings.get("crash_to_dump_done")
    throughput = round(dump.get("bytes", 0) / MiB / seconds, 2) if seconds else None
    return {
        "schema_version": SCHEMA_VERSION,
        **judged,
        "problem": problem,
        "scenario": scenario,
        "accel": (scenario or {}).get("accel"),
        "fault": _fault_log(run_dir),
        "checks": checks,
        "dump": dump,
        "devices": validation.get("devices") or [],
        "content": validation.get("content"),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "throughput_mib_s": throughput,
        "artifacts": artifacts,
        "provenance": provenance.collect(run_dir, scenario),
    }


def _fault_log(run_dir: Optional[Path]) -> Optional[dict]:
    """What the run's fault did (fault.json), if it had one."""
    if run_dir is None or not (Path(run_dir) / FAULT_FILE).is_file():
        return None
    return fault_record(run_dir) or {"note": "fault.json unreadable"}


def save(report: dict, run_dir: Path) -> None:
    try:
        (run_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    except OSError as exc:  # a full disk: the report is still returned and printed
        raise DumpbedError(f"cannot write {run_dir / 'report.json'}: {exc.strerror or exc}") from None


def render(report: dict, console: Optional[Console] = None) -> None:
    console = console or Console()
    scenario = report.get("scenario") or {}
    if scenario:
        tables.print_line(console, (
            f"[bold]scenario[/] disk={scenario.get('disk')} crash={scenario.get('crash')} "
            f"memory={scenario.get('memory_bytes', 0) // MiB} MiB accel={scenario.get('accel')} "
            f"firmware={scenario.get('firmware')} block={scenario.get('block_size')}"))
    dump = report.get("dump") or {}
    _render_dump(dump, console)
    _render_devices(report.get("devices") or [], console)
    fault = report.get("fault")
    if fault:
        tables.print_line(console, f"[bold]fault[/] {fault.get('fault')}: " + (fault.get("action") or "")
                          + (f" ({fault['note']})" if fault.get("note") else ""))
    if report.get("outcome"):
        tables.print_line(console, f"[bold]outcome[/] {report['outcome']} (expected {report.get('expected_outcome')}"
                          + (f", {report['expectation_why']}" if report.get("expectation_why") else "") + ")"
                          + (f": {report['outcome_why']}" if report.get("outcome_why") else ""))
    content = report.get("content") or {}
    if content.get("ram_bytes"):
        tables.print_line(console, (
            f"[bold]content[/] checked {content.get('bytes_checked', 0) / MiB:.1f} MiB "
            f"({100 * content.get('checked_fraction', 0):.2f}% of RAM), "
            f"volatile {content.get('bytes_volatile', 0) / MiB:.2f} MiB"))
    table = Table(show_header=True, header_style="bold")
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in report["checks"]:
        table.add_row(check["name"], "[green]ok[/]" if check["ok"] else "[red]FAILED[/]", check.get("detail", ""))
    tables.print_table(console, table)
    timings = report.get("timings") or {}
    if timings:
        shown = [f"{k} {v:.2f}s" + (f" (QEMU's start {timings['qemu_start']:.2f}s)"
                                    if k == "boot" and "qemu_start" in timings else "")
                 for k, v in timings.items() if k != "qemu_start"]
        tables.print_line(console, "[bold]timings[/] " + ", ".join(shown)
                          + (f"; dump throughput {report['throughput_mib_s']} MiB/s"
                             if report.get("throughput_mib_s") else ""))
    if report.get("problem"):
        tables.print_line(console, f"[bold red]problem[/] {report['problem']}")
    if report["verdict"] == "pass":
        tables.print_line(console, "[bold green]PASS[/]")
    else:
        failed = [c for c in report["checks"] if not c["ok"]]
        # The root first: the failing check earliest in the data flow, with its detail; the
        # others after it are often its echoes.
        why = f"{failed[0]['name']} first: {failed[0].get('detail', '')}" if failed else ""
        if len(failed) > 1:
            why += f"; then {', '.join(c['name'] for c in failed[1:])}"
        if report.get("outcome") != report.get("expected_outcome", "complete"):
            why = ", ".join(filter(None, [why, f"outcome {report.get('outcome')}, expected "
                                                f"{report.get('expected_outcome')}"]))
        why = why or f"dump status {dump.get('status')}"
        tables.print_line(console, f"[bold red]FAIL[/] ({why})")


def _render_devices(devices: list[dict], console: Console) -> None:
    """With a secondary dump device: each device's dump status and generation."""
    if len(devices) < 2:
        return
    for d in devices:
        line = (f"[bold]device[/] {d['role']} ({d['kind']}): {d['status']}"
                + (f", generation {d['generation']}, header {d['header_status']}" if d.get("generation") else ""))
        if d.get("failure"):
            line += f", failed with errno {d['failure']}"
        tables.print_line(console, line)


def _render_dump(dump: dict, console: Console) -> None:
    """The dump summary: classification, generation and device, level and estimate, each
    component (status, flags, level, estimate vs dumped, calls), the pinning violations."""
    line = f"[bold]dump[/] status={dump.get('status')} bytes={dump.get('bytes')}"
    if dump.get("kind") == "vmcore":  # a Linux guest's (docs/linux-kdump.md)
        line += (f" vmcore={dump.get('format')} compression={dump.get('compression')} level={dump.get('dump_level')} "
                 f"pages={dump.get('dumped_pages')} osrelease={dump.get('osrelease')}")
    if dump.get("generation") is not None:
        line += (f" generation={dump['generation']} device={dump.get('device_role')} level={dump.get('level')} "
                 f"estimate={dump.get('estimate_bytes')}")
    if dump.get("restart_error"):
        line += f" restart: errno {dump['restart_error']} at primary offset 0x{dump.get('restart_offset') or 0:x}"
    if dump.get("first_inconsistency"):
        line += f" first inconsistency: {dump['first_inconsistency']}"
    tables.print_line(console, line)
    components = dump.get("components") or []
    if components:
        table = Table(show_header=True, header_style="bold", title="components")
        # Names and numbers whole (no_wrap); a status wraps at its space, flags are one word
        for col in ("component", "status", "flags", "level", "estimate", "dumped", "areas", "calls"):
            number = col not in ("component", "status", "flags")
            table.add_column(col, overflow="fold", no_wrap=col not in ("status", "flags"),
                             justify="right" if number else "left")
        for c in components:
            status = c.get("status", "?") + (f" ({c['reason']})" if c.get("reason") else "")
            table.add_row(str(c.get("name")), status, "|".join(c.get("flags") or []) or "-", str(c.get("level", "")),
                          str(c.get("estimate_bytes", "")), str(c.get("dumped_bytes", c.get("bytes", ""))),
                          str(c.get("areas", "")), str(c.get("calls", "")))
        tables.print_table(console, table)
    for v in dump.get("violations") or []:
        who = "the facility or a driver" if v.get("component") is None else f"component {v['component']}"
        tables.print_line(console, f"[bold red]pinning violation[/] at 0x{v.get('address', 0):x} "
                          f"(rip 0x{v.get('rip', 0):x}, error code 0x{v.get('error_code', 0):x}) by {who}, "
                          f"op {v.get('op')}, generation {v.get('generation')}")
