"""The `runtime-io` oracle: runtime I/O in flight at the crash was ended by the dump driver, not
left in the device to finish mid-dump.

From the device's own command log (harness/dumpbed/capture/cmdlog.py) and the guest's QUIESCED line (its
DUMPSTART says the device holds nothing of the runtime any more; the line's time is the time its
first byte reached the result channel):

1. A runtime command the device still held at the crash (taken before it, not finished) ends
   before the guest's QUIESCED, and it ends by the driver's doing: the device cancelled it, or a
   reset or an abort of its device (virtio device reset, SCSI task management, an LSI chip reset
   or abort message) came between the crash and its end. One still held at QUIESCED, or one
   that finished after it, was neither aborted nor reset: the device would move its data into
   memory or onto the disk in the middle of the dump.
2. After QUIESCED the device takes no command outside the dump partition: runtime I/O is over.

Commands the device took between the crash and QUIESCED are allowed: a request the guest had
made available before the crash may be taken when the VM goes on (its doorbell was pending).
A driver that only masks interrupts passes this check when nothing is held at the crash; the
`hold-runtime` fault holds runtime requests in the device across the crash so that it cannot.
"""
from __future__ import annotations

from typing import Optional

from dumpbed.capture import cmdlog
from dumpbed.oracles.base import Check, make_check

MAX_SHOWN = 4


def check_runtime_io(cmds: cmdlog.CommandLog, crash_time: Optional[float], disk: Optional[str],
                     partition: tuple[int, int]) -> Check:
    """disk: the command log's name of the primary dump disk; partition: its [start, end) bytes."""
    if crash_time is None:
        return Check("runtime-io", False, "timeline.json missing: the crash instant is unknown")
    if disk is None:
        return Check("runtime-io", True, "no command reached the dump disk after the crash")
    quiesced = next((r.time for r in cmds.result("QUIESCED") if r.fields.get("device") in (None, "primary")), None)
    mine = [c for c in cmds.commands if c.disk == disk]
    runtime = [c for c in mine if c.issued < crash_time]
    held = [c for c in runtime if c.end is None or c.end >= crash_time]
    events = [e for e in cmds.events if e.time >= crash_time]
    problems: list[str] = []
    if quiesced is None and (held or not cmds.result_traced):
        problems.append("no QUIESCED line from the guest: when its DUMPSTART ended the runtime I/O is unknown")
    for c in held:
        what = f"runtime {c.describe()} taken {(crash_time - c.issued) * 1000:.2f} ms before the crash"
        if c.end is None:
            problems.append(f"{what} never ended: the device still held it when QEMU stopped")
            continue
        if quiesced is not None and c.end > quiesced:
            how = "finished" if c.completed is not None else "was cancelled"
            problems.append(f"{what} {how} {(c.end - quiesced) * 1000:.2f} ms after the guest's QUIESCED: the "
                            f"driver neither aborted nor reset it")
            continue
        if c.cancelled is None and not any(cmdlog.ends_commands_of(e, disk) and e.time <= c.end for e in events):
            problems.append(f"{what} finished after the crash with no abort or reset of its device before: the "
                            f"device completed it on its own")
    start, end = partition
    if quiesced is not None:
        rebooted = cmds.rebooted_after(quiesced)
        late = [c for c in mine if quiesced < c.issued < rebooted and c.kind in ("read", "write")
                and (c.offset is None or not (start <= c.offset and c.offset + c.length <= end))]
        for c in late[:MAX_SHOWN]:
            problems.append(f"{c.describe()} outside the dump partition was taken "
                            f"{(c.issued - quiesced) * 1000:.2f} ms after the guest's QUIESCED: runtime I/O "
                            f"went on during the dump")
    ended = [e.what for e in events if quiesced is None or e.time <= quiesced]
    evidence = f"; {ended[0]}" + (f" and {len(ended) - 1} more" if len(ended) > 1 else "") if ended else ""
    detail = (f"{len(runtime)} runtime commands before the crash, {len(held)} still held by the device at the "
              f"crash, all ended before the guest's QUIESCED{evidence}; none taken outside the dump partition after it")
    return make_check("runtime-io", problems, detail)
