"""The oracles of a Linux guest's run (guest profile linux-kdump, docs/linux-kdump.md): the
vmcore makedumpfile left on the dump partition, judged against the snapshot of the machine at
the crash, the device's own logs and what the guest said.

    vmcore-io     every write after the crash is in the dump partition, landed, and (for a
                  complete DONE) was flushed before the guest said DONE       (the device's logs)
    canary        nothing outside the dump partition changed, but the page list the workload
                  wrote before the crash                                       (the disk)
    vmcore        the vmcore, every page decompressed, reads as the run must end (complete, or
                  partial/none where a fault cut it)                           (the disk)
    coverage      it describes every page of the first kernel's RAM but crashkernel's
    pattern       every page that held the workload's pattern in the snapshot is in it, at its
                  physical address, byte for byte                              (the snapshot)
    dmesg         its kernel log holds the panic, last, and the console's panic line
    guest-result  DONE's status as expected, and QEMU's exit status with it

The dumpbed-format checks (format, chunk-crc, completeness, content, sample-data, protocol,
write-sizes, write-order, runtime-io) are that format's; validate_run adds those of the
profile's not_applicable, reported skipped with the profile's reason.
"""
from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from dumpbed.capture import cmdlog
from dumpbed.capture.writelog import crash_time
from dumpbed.guests import profiles
from dumpbed.images import layout as layout_mod
from dumpbed.machine import resultchan
from dumpbed.oracles import dumpio, pattern_pages
from dumpbed.oracles.base import Check, make_check
from dumpbed.oracles.canary import check_canary
from dumpbed.oracles.content import Snapshot
from dumpbed.oracles.guest_result import done_settled, status_problems
from dumpbed.oracles.vmcore_checks import check_coverage, check_dmesg, check_vmcore
from dumpbed.reader import dumpfmt, vmcore
from dumpbed.scenario import faults as faults_mod
from dumpbed.units import SECTOR, MiB

USER_PAGES = 8  # makedumpfile's dump level bit that drops user pages (the pattern's)
# Below 1 MiB the firmware's memory map reserves parts of RAM (page 0, the EBDA, the BIOS): Linux
# does not count them as its RAM, so coverage holds the pages from 1 MiB up.
LOW_MEMORY = MiB
PANIC_LINE = re.compile(r"Kernel panic - not syncing: ?(.*)")
_SHOWN = 3


@dataclass
class VmcoreValidation:
    """validate.Validation's counterpart for a vmcore: the checks, the vmcore's summary, what the
    run had to end with."""
    checks: list[Check]
    dump: dict
    image: str
    expected: dict
    devices: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and self.dump["status"] == self.expected["outcome"]

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "image": self.image, "checks": [c.to_dict() for c in self.checks],
                "dump": self.dump, "content": None, "devices": self.devices, "expected": self.expected}


def validate(run_dir: Path, scenario: dict, exit_status: Optional[int]) -> VmcoreValidation:
    """Every check of a Linux guest's run directory (scenario: its loaded scenario.json)."""
    layout = layout_mod.load(run_dir / "layout.json")
    image_path = run_dir / layout.image
    lines = resultchan.read_lines(run_dir / "result.log")
    said = {line.word: line for line in lines}  # the last line of each word
    crashed = crash_time(run_dir)
    cmds = cmdlog.read(run_dir, layout.block_size)
    disk = (scenario.get("topology") or {}).get("dump_disk") or {}
    io = (dumpio.load("primary", image_path, scenario["disk"], disk.get("target", 0), disk.get("lun", 0), 0,
                      layout.dump_offset, layout.dump_size, crashed, cmds) if crashed is not None else None)
    expected = expectation(run_dir, scenario, io)
    traced = cmds.result("DONE")  # the DONE line on the host's clock (traced from the crash on)
    done_time = traced[0].time if traced else None
    level = int(scenario.get("level", 0))
    with ExitStack() as stack:
        snapshot = stack.enter_context(Snapshot.load(run_dir / "snapshot"))
        image = stack.enter_context(dumpfmt.open_image(image_path))
        core = stack.enter_context(vmcore.open(image_path, layout.dump_offset, layout.dump_size))
        want = expected["outcome"]
        checks = [
            check_vmcore_io(io, image, said.get("DONE"), done_time, expected["guest"]),
            check_canary(None, image, layout, io.log if io else None,
                         extent=([(layout.dump_offset, layout.dump_offset + layout.dump_size)],
                                 "the dump partition: makedumpfile may write anywhere in it")),
            check_vmcore(core, want, allowed=cut_readings(expected)),
            _only_whole("coverage", want) or check_coverage(
                core, [(r.phys, r.phys + r.length) for r in snapshot.regions], crashkernel(said.get("READY")),
                low=LOW_MEMORY),
            _pattern(core, snapshot, scenario, said.get("PATTERN"), level, want),
            _only_whole("dmesg", want) or check_dmesg(core, console_panic(run_dir)),
            check_linux_result(said.get("DONE"), expected["guest"], exit_status),
        ]
        summary = dump_summary(core, layout.block_size, layout.dump_offset, layout.dump_size, io,
                               cut_readings(expected))
    return VmcoreValidation(checks, summary, str(image_path), expected)


def validate_image(image_path: Path, offset: int, size: int, block_size: int) -> VmcoreValidation:
    """`dumpbed validate IMAGE` on a disk whose dump partition holds a vmcore: what the vmcore
    alone carries (no snapshot, no device log, no guest word): it reads complete, every page
    decompressed, and its kernel log holds the panic."""
    with vmcore.open(image_path, offset, size) as core:
        checks = [check_vmcore(core, "complete"), check_dmesg(core, None)]
        summary = dump_summary(core, block_size, offset, size, None)
    return VmcoreValidation(checks, summary, str(image_path), {"outcome": "complete", "guest": None, "why": None})


def expectation(run_dir: Path, scenario: dict, io: Optional[dumpio.DeviceIO]) -> dict:
    """What the run must end with (docs/linux-kdump.md, "Faults"): the scenario's declaration, or,
    when its fault cut the dump short (a failing or killed disk where it fired, a partition too
    small), what the disk then holds: a vmcore cut short (partial) once the first block of the
    partition, its header, had landed; else none."""
    faults = [faults_mod.parse(f) for f in scenario.get("faults") or []]
    declared = {"outcome": scenario.get("expect") or "complete",
                "guest": scenario.get("expect_guest_result", "complete"), "why": "as the scenario declares"}
    short = [f for f in faults if f.kind.cuts or f.kind.sizes_partition]
    if not short:
        return declared
    if short[0].kind.cuts and not faults_mod.fault_record(run_dir).get("fired"):
        kept = [f for f in faults if f not in short]
        return {"outcome": faults_mod.expected_outcome(kept, None), "guest": faults_mod.expected_guest_result(kept, None),
                "why": "the fault never fired"}
    header = io is not None and any(w.landed and w.offset == 0 for w in io.writes)
    return {"outcome": "partial" if header else "none", "guest": faults_mod.expected_guest_result(faults, None),
            "cut": True, "why": f"{short[0]} cut the dump short "
                                + ("after the vmcore's header reached the disk" if header
                                   else "before the vmcore's header reached the disk")}


def check_vmcore_io(io: Optional[dumpio.DeviceIO], image, done: Optional[resultchan.ResultLine],
                    done_time: Optional[float], expect_guest: Optional[str]) -> Check:
    """From the device's logs: after the crash the capture kernel wrote only inside the dump
    partition; with no fault every write landed; the partition holds what landed, byte for byte
    (the last write of each sector's); a complete DONE came after a flush that followed the
    dump's last write (the dump was on the disk, not in a cache, when the guest said so)."""
    if io is None:
        return Check("vmcore-io", False, "timeline.json missing: the crash instant is unknown")
    problems = [f"a write after the crash outside the dump partition: {c.describe()}" for c in io.outside[:_SHOWN]]
    if len(io.outside) > _SHOWN:
        problems.append(f"{len(io.outside) - _SHOWN} more writes outside the dump partition")
    writes = io.writes
    lost = [w for w in writes if not w.landed]
    if lost and expect_guest == "complete":
        problems.append(f"{len(lost)} of the dump's writes never reached the disk, first: {lost[0].describe(io.crash_time)}")
    complete = done is not None and done.fields.get("status") == "complete"
    if complete and not writes:
        problems.append("DONE status=complete, but the capture kernel wrote nothing to the dump partition")
    elif complete:
        last = max(writes, key=lambda w: w.finished or w.issued)
        if done_time is None:
            problems.append("DONE status=complete, but QEMU's trace has no DONE line: when it came is unknown")
        elif not io.durable(last, done_time):
            problems.append(f"DONE status=complete before the dump's last write ({last.describe(io.crash_time)}) "
                            "was flushed: no flush taken after it had finished by then")
    problems += replay_problems(io, image)
    end = max((w.end for w in writes if w.landed), default=0)
    return make_check("vmcore-io", problems,
                      f"{len(writes)} writes ({sum(w.length for w in writes)} bytes, to partition offset {end}) and "
                      f"{len(io.flushes)} flushes after the crash, all inside the dump partition"
                      + ("; the last write flushed before DONE" if complete else ""))


def replay_problems(io: dumpio.DeviceIO, image) -> list[str]:
    """Each sector the dump's landed writes put on the disk holds what the last of them wrote
    (a torn or lost write, or a write the log does not know of over one it does, shows here)."""
    entries = [e for w in io.writes for e in w.entries]
    if not entries or io.log is None:
        return []
    owner = np.full(io.partition_bytes // SECTOR, -1, dtype=np.int64)
    for i, e in enumerate(sorted(entries, key=lambda e: e.index)):  # the log's order: last writer wins
        first = (e.offset - io.partition_offset) // SECTOR
        owner[first:first + e.length // SECTOR] = i
    ordered = sorted(entries, key=lambda e: e.index)
    bad = 0
    first_bad = None
    with io.log.opener() as data:
        for i, e in enumerate(ordered):
            first = (e.offset - io.partition_offset) // SECTOR
            mine = owner[first:first + e.length // SECTOR] == i
            if not mine.any():
                continue
            want = np.frombuffer(data.read(e, 0, e.length), np.uint8).reshape(-1, SECTOR)
            got = np.frombuffer(image.read(e.offset, e.length).ljust(e.length, b"\0"), np.uint8).reshape(-1, SECTOR)
            differ = mine & (want != got).any(axis=1)
            if differ.any():
                bad += int(differ.sum())
                first_bad = first_bad if first_bad is not None else first + int(np.flatnonzero(differ)[0])
    if not bad:
        return []
    return [f"{bad} sectors of the partition do not hold what the dump's last write to them put there (the device's "
            f"write log), first: partition sector {first_bad}"]


def check_linux_result(done: Optional[resultchan.ResultLine], expect: Optional[str],
                       exit_status: Optional[int]) -> Check:
    """The guest's DONE (docs/linux-kdump.md, "Result channel") is the status the run expects
    (none at all when QEMU is killed first), QEMU's exit status goes with it (guest_result's
    rules), and a failure names its error."""
    settled = done_settled(done, expect, exit_status)
    if settled is not None:
        return settled
    said = done.raw.removeprefix("DUMPBED ")
    problems = status_problems(done, expect, exit_status)
    if done.fields.get("status") == "failed" and done.fields.get("error") in (None, "0") \
            and done.fields.get("stage") != "find":
        problems.append(f"a failure without its error: {said}")
    return make_check("guest-result", problems, said + (f"; QEMU exit status {exit_status}"
                                                        if exit_status is not None else ""))


def _only_whole(name: str, expected: str) -> Optional[Check]:
    """A check of the whole of memory has nothing to hold a cut dump to."""
    if expected == "complete":
        return None
    return Check(name, True, f"skipped: the run must end with a {expected} dump, which holds part of memory at most")


def _pattern(core, snapshot: Snapshot, scenario: dict, line: Optional[resultchan.ResultLine], level: int,
             expected: str) -> Check:
    if level & USER_PAGES:
        return Check("pattern", True, f"skipped: dump level {level} excludes user pages (bit {USER_PAGES}), the "
                                      "pattern's")
    runid = int(profiles.linux_runid(scenario["dump_id"].hex()), 16)  # what the harness told the guest
    listed = None
    if line is not None:
        try:
            listed = int(line.fields["pages"])
        except (KeyError, ValueError):
            return Check("pattern", False, f"a PATTERN line without its page count: {line.raw}")
    if expected == "none":
        return Check("pattern", True, "skipped: no dump of this run, as expected")
    return pattern_pages.check(core, snapshot, runid, listed, require_all=expected == "complete")


def crashkernel(ready: Optional[resultchan.ResultLine]) -> list[tuple[int, int]]:
    """The capture kernel's reservation as READY gave it (iomem's inclusive end), [start, end)."""
    text = ready.fields.get("crashkernel", "") if ready is not None else ""
    m = re.fullmatch(r"0x([0-9a-fA-F]+)-0x([0-9a-fA-F]+)", text)
    return [(int(m.group(1), 16), int(m.group(2), 16) + 1)] if m else []


def console_panic(run_dir: Path) -> Optional[str]:
    """The last panic line the first kernel's console showed, or None (after an NMI with kdump
    loaded, none reaches it)."""
    try:
        text = (run_dir / "console.log").read_text(errors="replace")
    except OSError:
        return None
    capture = text.find("DUMPBED CAPTURE") if "DUMPBED CAPTURE" in text else len(text)
    panics = PANIC_LINE.findall(text[:capture])
    return f"Kernel panic - not syncing: {panics[-1].strip()}" if panics else None


def cut_readings(expected: dict) -> tuple[str, ...]:
    """How the reader may see a vmcore a fault cut short (docs/linux-kdump.md, "Faults"):
    makedumpfile's formats mark no cut (its incomplete flag is for a full disk only) and its
    page descriptors and page data grow at two places at once, so past the cut the file holds
    what the partition held before (dumpbed's canary): the reader may call that partial or
    corrupt, and a header that never landed no vmcore or corrupt. What did land is held to the
    device's log byte for byte (vmcore-io); () when the dump was not cut."""
    if not expected.get("cut"):
        return ()
    return {"partial": ("partial", "corrupt"), "none": ("none", "corrupt")}.get(expected["outcome"], ())


def dump_summary(core, block_size: int, partition_offset: int, partition_bytes: int,
                 io: Optional[dumpio.DeviceIO], cut: tuple[str, ...] = ()) -> dict:
    """report.json's `dump` for a vmcore (docs/report.schema.json, vmcore_dump): its status is the
    reader's, or for a cut dump that reads as a cut may, the cut's classification (cut_readings)."""
    s = core.summary()
    status, reason = s["status"], s["reason"]
    if s["status"] in cut:
        status, reason = cut[0], f"cut short by the fault; the reader says {s['status']}: {s['reason']}"
    return {
        "kind": "vmcore", "status": status, "reason": reason,
        "first_inconsistency": s.get("first_inconsistency"), "format": s["format"],
        "compression": s.get("compression"), "dump_level": s.get("dump_level"),
        "osrelease": s.get("osrelease"), "page_size": s["page_size"], "dumped_pages": s["dumped_pages"],
        "cpus": s["cpus"], "incomplete": s.get("incomplete"),
        # what the capture kernel wrote, from the device's logs: the vmcore's extent on the disk
        "bytes": max((w.end for w in io.writes if w.landed), default=0) if io is not None else 0,
        "block_size": block_size, "partition_offset": partition_offset,
        "partition_bytes": partition_bytes, "findings": s["findings"][:100],
    }
