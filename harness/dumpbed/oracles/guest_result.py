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

from dumpbed.machine import resultchan
from dumpbed.oracles.base import Check, make_check
from dumpbed.reader import dumpfmt

EXIT_OF = {"complete": 67, "failed": 69}
# The stages a write failure is reported under (the writer's own stages): the others (start,
# query, pinning, plan, collect, end, nested) concern no single write on the disk.
WRITE_STAGES = {"crc-table", "directory", "progress-leader", "body", "end-marker", "final-leader", "trailer",
                "flush"}


def check_guest_result(run_dir: Path, expect: Optional[str], exit_status: Optional[int], dump: dumpfmt.Dump,
                       lost_write_offset: Optional[int], primary: Optional[dumpfmt.Dump] = None,
                       primary_lost_offset: Optional[int] = None) -> Check:
    """expect: "complete", "failed", or None (no DONE: QEMU ends first). lost_write_offset: the
    partition offset at which the device of record first failed a dump write (from its logs),
    or None. After a restart, `dump` is the secondary's, `primary` the primary's dump and
    `primary_lost_offset` where the primary's device failed: the RESTART line must name that
    failure, as must the primary's FAILED header and the secondary's restart fields."""
    lines = resultchan.read_lines(Path(run_dir) / "result.log")
    restart_problems = []
    for line in (l for l in lines if l.word == "RESTART"):
        restart_problems += [f"RESTART: {p}" for p in _failure_problems(line.fields, primary, primary_lost_offset,
                                                                         generation=1)]
        h = dump.header
        if h is not None and h.generation == 2:
            for field, value in (("error", h.restart_error), ("offset", h.restart_offset)):
                if str(value) != line.fields.get(field):
                    restart_problems.append(f"RESTART says {field}={line.fields.get(field)}, the secondary's "
                                            f"header says restart_{'error' if field == 'error' else 'offset'} {value}")
    done = [line for line in lines if line.word == "DONE"]
    line = done[-1] if done else None
    settled = done_settled(line, expect, exit_status)
    if settled is not None:
        return settled
    said = line.raw.removeprefix("DUMPBED ")
    status = line.fields.get("status")
    problems = status_problems(line, expect, exit_status)
    if status == "failed":
        problems += _failure_problems(line.fields, dump, lost_write_offset)
    problems += restart_problems
    exit_note = f"; QEMU exit status {exit_status}" if exit_status is not None else ""
    agree = " (errno and offset as the disk records them)" if status == "failed" else ""
    return make_check("guest-result", problems, f"{said}{exit_note}{agree}")


def done_settled(done: Optional[resultchan.ResultLine], expect: Optional[str],
                 exit_status: Optional[int]) -> Optional[Check]:
    """The verdict when the DONE line alone settles it, whatever the guest: none expected (QEMU
    ends first) and none or one said, or one expected and none said. None: judge the line."""
    if expect is None:
        if done is not None:
            return Check("guest-result", False, f"the guest reported {done.raw.removeprefix('DUMPBED ')}, but the "
                                                f"fault ends QEMU before it can")
        return Check("guest-result", True, f"no DONE, as expected: QEMU ended mid-dump (exit status {exit_status})")
    if done is None:
        return Check("guest-result", False, "the guest never reported DONE")
    return None


def status_problems(done: resultchan.ResultLine, expect: str, exit_status: Optional[int]) -> list[str]:
    """DONE's status against the run's expectation, and QEMU's exit status against DONE's."""
    said = done.raw.removeprefix("DUMPBED ")
    status = done.fields.get("status")
    problems = []
    if status != expect:
        problems.append(f"the guest reported {said}, the run expects status={expect}")
    if exit_status is not None and exit_status != EXIT_OF.get(status):
        problems.append(f"QEMU exit status {exit_status}, but DONE status={status} means {EXIT_OF.get(status)}")
    return problems


def _failure_problems(fields: dict, dump: Optional[dumpfmt.Dump], lost_write_offset: Optional[int],
                      generation: Optional[int] = None) -> list[str]:
    problems = []
    try:
        error, offset = int(fields["error"]), int(fields["offset"])
        generation = generation or int(fields.get("generation", 0))
    except (KeyError, ValueError):
        return [f"a failure without a numeric error= and offset= ({fields})"]
    stage = fields.get("stage", "")
    h = dump.header if dump is not None else None
    if h is not None and h.status == dumpfmt.HeaderStatus.FAILED and h.generation == generation:
        if h.failure != error:
            problems.append(f"error={error}, but the FAILED header's failure is {h.failure}")
        if h.failure_offset != offset:
            problems.append(f"offset={offset}, but the FAILED header's failure_offset is {h.failure_offset}")
    if lost_write_offset is not None and stage in WRITE_STAGES:
        # The write the device failed: the guest's offset is the start of its DUMPWRITE, which
        # holds that byte.
        if not offset <= lost_write_offset < offset + max(h.max_transfer if h else 0, 1):
            problems.append(f"the failure is said to be at offset {offset} (stage {stage}), but the device failed "
                            f"the write at partition offset {lost_write_offset}")
    elif lost_write_offset is not None and stage not in WRITE_STAGES:
        problems.append(f"the device failed the dump's write at partition offset {lost_write_offset}, but the "
                        f"failure is reported at stage {stage!r}, not a write")
    return problems
