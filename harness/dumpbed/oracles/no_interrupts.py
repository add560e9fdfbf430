"""The `no-interrupts` oracle: the guest took no interrupts while it dumped, from the evidence
harness/dumpbed/capture/irqwatch.py gathers outside the guest (RFLAGS samples, the trace
events of interrupt sources).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from dumpbed.capture.irqwatch import RFLAGS_IF, SAMPLES_FILE, TRACE_EVENTS, InterruptSources
from dumpbed.oracles.base import Check, make_check

_EVENT = re.compile(r"^(?:\d+@(?P<time>\d+\.\d+):)?(?P<name>\w+) ?(?P<args>.*)$")


def _samples(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / SAMPLES_FILE
    if not path.exists():
        return []
    samples = []
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        try:
            sample = json.loads(line)
            samples.append({"t0": float(sample.get("t0", sample["t"])), "t": float(sample["t"]),
                            "rflags": int(sample["rflags"]), "rip": sample.get("rip")})
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line when QEMU exited mid-sample
    return samples


def _interrupt_events(run_dir: Path) -> list[tuple[Optional[float], str]]:
    path = Path(run_dir) / "qemu-trace.log"
    if not path.exists():
        return []
    events = []
    sources = InterruptSources()
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            m = _EVENT.match(line.strip())
            if not m or m["name"] not in TRACE_EVENTS or not sources.interrupt(m["name"], m["args"]):
                continue
            events.append((float(m["time"]) if m["time"] else None, f"{m['name']} {m['args']}".strip()))
    return events


def check_no_interrupts(run_dir: Path, crash_time: Optional[float], quiesced_at: Optional[float] = None,
                        until: float = float("inf"), taken_at: Optional[float] = None) -> Check:
    """RFLAGS.IF must be 0 in every sample from the moment the guest took the crash (`taken_at`,
    its CRASH line; the injection instant when unknown): an NMI injected while QEMU holds the VM
    stopped (hold-runtime parks requests across the crash) is taken only once the vCPU runs again,
    and the samples before that are the interrupted kernel's, not the dump's. Interrupt sources
    must stay silent from the guest's QUIESCED on (`quiesced_at`, the crash instant when
    unknown): until the driver's DUMPSTART has quiesced the device, a runtime command may still
    complete and its device raise an interrupt the crash handler never takes."""
    if crash_time is None:
        return Check("no-interrupts", False, "timeline.json missing: the crash instant is unknown")
    start = max(crash_time, taken_at) if taken_at is not None else crash_time
    # A sample's registers are of some moment between its asking (t0) and its answer (t): it
    # counts only when that whole span lies in the window (one asked just before the crash and
    # answered after it may show the interrupted kernel, halted with IF=1).
    samples = [s for s in _samples(run_dir) if start <= s["t0"] and s["t"] < until]
    events = _interrupt_events(run_dir)
    since = quiesced_at if quiesced_at is not None else crash_time
    before = [e for e in events if e[0] is not None and e[0] < since]
    after = [e for e in events if e[0] is None or since <= e[0] < until]  # until: a reset rebooted the guest

    problems = []
    if not samples:
        problems.append("no RFLAGS sample was taken during the dump: no evidence either way")
    with_if = [s for s in samples if s["rflags"] & RFLAGS_IF]
    if with_if:
        s = with_if[0]
        rip = f" at RIP 0x{s['rip']:x}" if s.get("rip") is not None else ""
        problems.append(f"RFLAGS.IF was 1 in {len(with_if)} of {len(samples)} samples during the dump "
                        f"(first: RFLAGS 0x{s['rflags']:x}{rip}, {s['t'] - start:.3f}s after the guest took the crash)")
    when = "the guest's QUIESCED" if quiesced_at is not None else "the crash"
    if after:
        problems.append(f"{len(after)} interrupt events after {when}, first: {after[0][1]}")
    detail = (f"IF=0 in all {len(samples)} RFLAGS samples during the dump; no interrupt source fired after "
              f"{when} ({len(before)} interrupt events before it)")
    return make_check("no-interrupts", problems, detail)
