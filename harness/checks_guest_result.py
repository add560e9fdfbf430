"""The `guest-result` oracle: what the guest said about its dump agrees with what the scenario
expects, with how QEMU ended, and with the disk.

The guest's last word is its DONE line (docs/guest-interface.md): `status=complete`, or
`status=failed error=E stage=S offset=O`. It must be the status the run expects (none at all when
QEMU was killed or reset first), QEMU's exit status must match it (67 complete, 69 failed), and a
failure must be the one the disk records: the FAILED header's `failure` and `failure_offset`
(when a FAILED header reached the disk), and, when a write failed on the device (`eio-at`), the
offset of that write as the device's own logs show it. A guest that reports the wrong errno,
stage or offset fails here even when its status word is right.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from harness import dumpfmt, resultchan
from harness.checks_base import Check, make_check

EXIT_OF = {"complete": 67, "failed": 69}
# The stages a write failure is reported under (the writer's own stages): the others (start,
# query, pinning, plan, collect, end, nested) concern no single write on the disk.
WRITE_STAGES = {"crc-table", "directory", "progress-leader", "body", "end-marker", "final-leader", "trailer",
                "flush", "failed-leader", "failed-trailer"}


def check_guest_result(run_dir: Path, expect: Optional[str], exit_status: Optional[int], dump: dumpfmt.Dump,
                       lost_write_offset: Optional[int]) -> Check:
    """expect: "complete", "failed", or None (no DONE: QEMU ends first). lost_write_offset: the
    partition offset at which the device first failed a dump write (from its logs), or None."""
    done = [line for line in resultchan.read_lines(Path(run_dir) / "result.log") if line.word == "DONE"]
    if expect is None:
        if done:
            return Check("guest-result", False, f"the guest reported {done[-1].raw.removeprefix('DUMPBED ')}, but the "
                                                f"fault ends QEMU before it can")
        return Check("guest-result", True, f"no DONE, as expected: QEMU ended mid-dump (exit status {exit_status})")
    if not done:
        return Check("guest-result", False, "the guest never reported DONE")
    line = done[-1]
    said = line.raw.removeprefix("DUMPBED ")
    status = line.fields.get("status")
    problems: list[str] = []
    if status != expect:
        problems.append(f"the guest reported {said}, the run expects status={expect}")
    if exit_status is not None and exit_status != EXIT_OF.get(status):
        problems.append(f"QEMU exit status {exit_status}, but DONE status={status} means {EXIT_OF.get(status)}")
    if status == "failed":
        problems += _failure_problems(line.fields, dump, lost_write_offset)
    exit_note = f"; QEMU exit status {exit_status}" if exit_status is not None else ""
    agree = " (errno and offset as the disk records them)" if status == "failed" else ""
    return make_check("guest-result", problems, f"{said}{exit_note}{agree}")


def _failure_problems(fields: dict, dump: dumpfmt.Dump, lost_write_offset: Optional[int]) -> list[str]:
    problems = []
    try:
        error, offset = int(fields["error"]), int(fields["offset"])
    except (KeyError, ValueError):
        return [f"DONE status=failed without a numeric error= and offset= ({fields})"]
    stage = fields.get("stage", "")
    h = dump.header
    if h is not None and h.status == dumpfmt.HeaderStatus.FAILED and h.generation == int(fields.get("generation", 0)):
        if h.failure != error:
            problems.append(f"DONE says error={error}, the FAILED header's failure is {h.failure}")
        if h.failure_offset != offset:
            problems.append(f"DONE says offset={offset}, the FAILED header's failure_offset is {h.failure_offset}")
    if lost_write_offset is not None and stage in WRITE_STAGES:
        # The write the device failed: the guest's offset is the start of its DUMPWRITE, which
        # holds that byte.
        if not offset <= lost_write_offset < offset + max(h.max_transfer if h else 0, 1):
            problems.append(f"DONE says the failure was at offset {offset} (stage {stage}), but the device failed "
                            f"the write at partition offset {lost_write_offset}")
    elif lost_write_offset is not None and stage not in WRITE_STAGES:
        problems.append(f"the device failed the dump's write at partition offset {lost_write_offset}, but DONE "
                        f"reports stage {stage!r}, not a write")
    return problems
