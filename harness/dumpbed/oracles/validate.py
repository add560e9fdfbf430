"""The oracles: prove, from the artifacts of a run, that the dump is right and nothing else moved.

    validate_run(run_dir)      every check, against scenario.json, layout.json and snapshot/
    validate_image(image_path) what the image alone carries (partition found through its GPT)

The component oracles (protocol, sample-data, the components' part of completeness) are
harness/dumpbed/oracles/components.py's; this module wires them in with the scenario's expectation.

Each check is a Check {name, ok, detail}. Every byte of the dump disk a check can judge is
covered by one: GPT regions (canary: byte-for-byte against the regenerated GPT), sectors
outside the dump extent (canary), leader and trailer (format: header CRC, zero padding,
identical), the directory and CRC table slot the leader names and the end marker (format: their
CRCs), the body (chunk-crc; content for the data). The other slot holds an earlier checkpoint
that no leader on disk vouches for: nothing can judge it (docs/dump-format.md, "Durability").

A dump of another format version is "unsupported": every check says so, none calls it corrupt.
"""

from __future__ import annotations

import functools
import json
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from dumpbed import progress
from dumpbed.capture import cmdlog
from dumpbed.capture.writelog import crash_time
from dumpbed.errors import DumpbedError
from dumpbed.guest_interface import COMPRESSIONS, Errno
from dumpbed.guests import profiles
from dumpbed.images import canary, gpt, layout as layout_mod
from dumpbed.net import evidence as netevidence
from dumpbed.oracles import components as checks_components, dumpio, fxsave, memmap, netlink, ranges, vmcore_run
from dumpbed.oracles.base import Check, load_json, make_check, require_int
from dumpbed.oracles.beside import Beside
from dumpbed.oracles.canary import check_canary, check_unchanged_since
from dumpbed.oracles.consistency import check_consistency
from dumpbed.oracles.content import ContentStats, Snapshot, check_content
from dumpbed.oracles.devices import check_devices, dump_devices, dump_of_record, summary as device_summary
from dumpbed.oracles.dumpio import first_lost_write
from dumpbed.oracles.guest_result import check_guest_result
from dumpbed.oracles.no_interrupts import check_no_interrupts
from dumpbed.oracles.runtime_io import check_runtime_io
from dumpbed.oracles.write_order import check_write_order
from dumpbed.oracles.write_sizes import check_write_sizes
from dumpbed.reader import dumpfmt, vmcore_show
from dumpbed.reader.dumpfmt import ComponentKind, ComponentStatus, CrashReason, HeaderStatus
from dumpbed.reader.frames import DecodedStore
from dumpbed.scenario import crash as crash_mod, disks as disks_mod, faults as faults_mod

# The checks of a dump's contents: with no dump of the run expected (a fault before its first
# leader landed), there is nothing for them to judge.
NOTHING_TO_JUDGE_WITHOUT_A_DUMP = ("format", "chunk-crc", "completeness", "content", "sample-data", "crash-record",
                                   "protocol")
# In the order of the data flow: what the device was told (write-sizes, write-order), what else it
# touched (canary), whether every state it passed through reads (consistency), then the dump as
# read (format, chunk-crc, completeness) and its contents against the ground truth, and last what
# the guest said. A report names the first failing check in this order: the cause, not its echoes.
CHECK_ORDER = ("write-sizes", "runtime-io", "write-order", "canary", "consistency", "format", "chunk-crc", "completeness",
               "content", "sample-data", "crash-record", "protocol", "no-interrupts", "guest-result")
# Every check in data-flow order, with those only some runs have: acks (a network dump's link),
# devices (a secondary dump device)
DATA_FLOW = (CHECK_ORDER[0], "acks", *CHECK_ORDER[1:], "devices")
MAX_FINDINGS_IN_DICT = 100
SWEEP_SECONDS = 60.0
SWEEP_SECONDS_PER_GIB = 30.0


@dataclass
class Validation:
    checks: list[Check]
    dump: dumpfmt.Dump
    content: ContentStats | None = None
    image: str = ""
    devices: list[dict] = field(default_factory=list)  # each dump device's status and generation
    # What the run must end with: {"outcome", "guest", "why"} (run_expectation), None for an image
    expected: Optional[dict] = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and self.dump.status == "complete"

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def dump_summary(self) -> dict:
        return dump_summary(self.dump)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "image": self.image,
            "checks": [c.to_dict() for c in self.checks],
            "dump": self.dump_summary(),
            "content": self.content.to_dict() if self.content else None,
            "devices": self.devices,
            "expected": self.expected,
        }


def dump_summary(d: dumpfmt.Dump) -> dict:
    h = d.header
    return {
        "status": d.status,
        "reason": d.reason,
        "first_inconsistency": d.first_inconsistency,
        "version": d.version,
        "compression": dumpfmt.COMPRESSION_NAMES.get(h.compression) if h else None,
        "slot": d.slot,
        "bytes": d.extent_bytes,
        "generation": d.generation,
        "dump_id": d.dump_id.hex() if d.dump_id is not None else None,
        "header_status": h.status_name if h else None,
        "crash_reason": h.reason_name if h else None,
        "device_role": h.device_role_name if h else None,
        "restart_error": h.restart_error if h else None,
        "restart_offset": h.restart_offset if h else None,
        "level": h.level if h else None,
        "estimate_bytes": h.estimate_bytes if h else None,
        "block_size": d.block_size,
        "partition_offset": d.partition_offset,
        "partition_bytes": d.partition_bytes,
        "body_bytes": h.body_bytes if h else None,
        "body_written": h.body_written if h else None,
        "chunk_size": h.chunk_size if h else None,
        "chunks": h.nchunks if h else None,
        "chunks_sealed": h.chunks_sealed if h else None,
        "bad_chunks": d.bad_chunk_count,
        "components": [_component_summary(d, c) for c in d.components],
        "areas": [
            {
                "index": a.index, "name": a.name, "component": a.component, "phys_addr": a.phys_addr,
                "length": a.length, "stored_bytes": a.stored_bytes, "disk_offset": a.disk_offset,
                "volatile": a.volatile, "staged": a.staged,
            }
            for a in d.areas
        ],
        "calls": len(d.calls),
        "violations": [
            {"index": v.index, "address": v.address, "rip": v.rip, "error_code": v.error_code,
             "component": v.component if v.component != dumpfmt.NO_COMPONENT else None, "op": v.op_name,
             "generation": v.generation}
            for v in d.violations
        ],
        "findings": [
            {"check": f.check, "message": f.message, "offset": f.offset} for f in d.findings[:MAX_FINDINGS_IN_DICT]
        ],
    }


def _component_summary(d: dumpfmt.Dump, c: dumpfmt.Component) -> dict:
    areas = d.component_areas(c)
    out = {
        "index": c.index, "name": c.name, "kind": c.kind_name, "status": c.status_name,
        "reason": c.reason, "areas": len(areas), "bytes": sum(a.length for a in areas),
        "flags": c.flag_names, "level": c.level, "table_generation": c.table_generation,
        "estimate_bytes": c.estimate_bytes, "dumped_bytes": c.dumped_bytes,
        "calls": len(d.component_calls(c)),
    }
    if c.staging_bytes or c.global_buffer_bytes:
        out.update(staging_bytes=c.staging_bytes, global_buffer_bytes=c.global_buffer_bytes)
    if c.has(dumpfmt.ComponentFlag.RTNFAILURE):
        out.update(failure_rv=c.failure_rv, failure_vaddr=c.failure_vaddr, failure_handle=c.failure_handle)
    return out


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def validate_run(run_dir: str | Path) -> Validation:
    """Run every oracle on the artifacts directory of a run (docs/artifacts.md).

    With a secondary dump device, each device's dump is read; the content oracles judge the
    dump of record (the secondary's once the dump restarted there), the canary and write-size
    oracles cover both disks, and the `devices` oracle says whether each holds what it should."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DumpbedError(f"{run_dir}: not a directory")
    scenario = load_scenario(run_dir / "scenario.json")
    profile = profiles.get((scenario.get("guest") or {}).get("profile", profiles.DEFAULT))
    if profile.judge != "dumpbed":  # another format's oracles (JUDGES)
        validation = JUDGES[profile.judge](run_dir, scenario, qemu_exit_status(run_dir))
        validation.checks += [not_applicable(profile, name) for name in profile.not_applicable]
        return validation
    registers = load_registers(run_dir / "snapshot" / "registers.json")
    targets = dump_devices(run_dir, scenario)
    for target in targets:
        if not target.image.is_file():
            raise DumpbedError(f"{target.image}: {target.role} dump image missing")

    expect = expectation(scenario)
    crashed = crash_time(run_dir)
    cmds = cmdlog.read(run_dir, targets[0].layout.block_size)
    ios = {t.role: _device_io(t, scenario, cmds, crashed, targets) for t in targets}
    expected = run_expectation(run_dir, scenario, ios)
    partial = expected["outcome"] == "partial"
    compression = _compression(scenario)  # a bad scenario.json is refused before any check runs
    with ExitStack() as stack:
        bar = stack.enter_context(progress.task("validate: reading the dump", total=len(CHECK_ORDER)))
        snapshot = stack.enter_context(Snapshot.load(run_dir / "snapshot"))
        images = {t.role: stack.enter_context(_open(t.image)) for t in targets}
        # The consistency sweep, the longest check, runs beside the others in a process of its
        # own (oracles/beside.py: in a thread, the two took turns at the GIL), so a big dump's
        # verdict comes sooner where a core is free. It starts before the dumps are read (the
        # log's replay compared with the images meanwhile) and is sent them once read, unless
        # it may be settled by what they hold. With them go the frames those reads decoded
        # (`decoded`): its reads of the same compressed bytes take them. It is stopped, if it
        # still runs, when the validation ends.
        decoded = DecodedStore()
        early = "consistency" not in profile.not_applicable and expected["outcome"] != "none"
        sweep = stack.enter_context(Beside("the consistency sweep", _consistency, targets, ios, scenario,
                                           run_dir)) if early else None
        dumps = {t.role: dumpfmt.read(images[t.role], t.layout.dump_offset, t.layout.dump_size,
                                      t.layout.block_size, dump_id=scenario["dump_id"], keep_decoded=decoded)
                 for t in targets}
        record = dump_of_record(dumps)
        by_role = {t.role: t for t in targets}
        dump, image, layout = dumps[record], images[record], by_role[record].layout
        # Checks decided without running them: the dump's own when there is, as expected, no dump
        # (the device-side ones and the guest's word still apply), those the guest profile says
        # do not apply to it (e.g. no-interrupts for a capture kernel).
        settled: dict[str, Check] = {name: not_applicable(profile, name) for name in profile.not_applicable}
        if expected["outcome"] == "none" and dump.status == "none":
            settled.update({name: Check(name, True, f"no dump of this run, as expected ({expected['why']}): nothing "
                                                    "to judge") for name in NOTHING_TO_JUDGE_WITHOUT_A_DUMP})
        if sweep is None and "consistency" not in settled:
            sweep = stack.enter_context(Beside("the consistency sweep", _consistency, targets, ios, scenario,
                                               run_dir))
        if sweep is not None:
            sweep.send((dumps, decoded))
        bar.update(description="validate: content")
        content, stats = check_content(dump, image, snapshot, scenario["memory_bytes"])
        secondary = (by_role["secondary"].layout, dumps["secondary"]) if "secondary" in dumps else None
        done = cmds.result("DONE")
        quiesced = next((r.time for r in cmds.result("QUIESCED")), None)
        order = [ios[t.role] for t in targets if ios[t.role] is not None]
        lost = first_lost_write(ios[record]) if ios[record] is not None else None
        network = disks_mod.get(by_role["primary"].kind).network
        frames = netevidence.frames(run_dir) if network else []
        judges = {
            # a network dump's writes are the frames the guest sent (oracles/netlink.py)
            "write-sizes": lambda: (netlink.check_frames(frames, crashed, scenario["dump_id"])
                                    if network else
                                    check_write_sizes(run_dir, dumps["primary"], by_role["primary"].layout, scenario,
                                                      secondary, quiesced)),
            "runtime-io": lambda: check_runtime_io(cmds, crashed, ios["primary"].disk if ios["primary"] else None,
                                                   (by_role["primary"].layout.dump_offset,
                                                    by_role["primary"].layout.dump_offset + by_role["primary"].layout.dump_size)),
            "write-order": lambda: (check_write_order(order, done[0].time if done else None, expected["guest"] is not None,
                                                      bool(done) and done[0].fields.get("status") == "failed",
                                                      _outstanding(cmds), _io_timeout(scenario))
                                    if order else Check("write-order", False, "no command log: QEMU's trace is missing")),
            "canary": lambda: (_canary_since_before(run_dir, dump, image, layout) if scenario.get("stale_previous")
                               else _canary_of_devices(targets, dumps, images, ios)),
            "consistency": lambda: sweep.result(_sweep_deadline(targets)),
            "format": lambda: check_format(dump, scenario["dump_id"], partial, compression),
            "chunk-crc": lambda: check_chunks(dump, partial),
            "completeness": lambda: (check_partial_completeness(dump) if partial else
                                     check_completeness(dump, expect, *_loader_map(snapshot))),
            "content": lambda: content,
            "sample-data": lambda: check_sample_data(dump, image, expect),
            "crash-record": lambda: check_crash_record(dump, registers, scenario["crash"], run_dir, partial),
            "protocol": lambda: check_protocol(dump, expect),
            "no-interrupts": lambda: check_no_interrupts(run_dir, crashed, quiesced,
                                                         cmds.rebooted_after(crashed) if crashed else float("inf"),
                                                         next((r.time for r in cmds.result("CRASH")), None)),
            "guest-result": lambda: check_guest_result(run_dir, expected["guest"], qemu_exit_status(run_dir), dump,
                                                       lost[1] if lost else None, dumps["primary"],
                                                       _lost_offset(ios.get("primary"))),
        }
        if network:
            judges["acks"] = lambda: netlink.check_acks(
                frames, crashed, scenario["dump_id"], done[0].time if done else None,
                # a complete DONE of the network dump (not of a disk it restarted on)
                bool(done) and done[0].fields.get("status") == "complete"
                and done[0].fields.get("device", "primary") == "primary",
                sum(1 for e in netevidence.server_events(run_dir) if e.get("event") == "duplicate"),
                _io_timeout(scenario))
        if secondary is not None:
            judges["devices"] = lambda: check_devices(dumps, bool(scenario.get("restart_expected")),
                                                      _restart_errno(scenario))
        bar.update(total=len(judges) - len(settled.keys() & judges.keys()))
        checks = {}
        for name, judge in judges.items():  # a check at a time, each named on the bar as it runs
            if name in settled:
                checks[name] = settled[name]
                continue
            bar.update(description=f"validate: {name}")
            checks[name] = judge()
            bar.advance()
    if "canary" not in settled:
        checks["canary"] = _with_other_disks(checks["canary"], run_dir)
    order_names = [name for name in DATA_FLOW if name in checks]
    summaries = [device_summary(t.role, t.kind, dumps[t.role]) for t in targets]
    return Validation([checks[n] for n in order_names], dump, stats, str(by_role[record].image), summaries,
                      expected)


# The oracles of the guest profiles whose dumps are not dumpbed's format (GuestProfile.judge):
# (run_dir, scenario, QEMU's exit status) -> a validation; validate_run adds the profile's
# not-applicable checks, reported skipped.
JUDGES = {"vmcore": vmcore_run.validate}


def not_applicable(profile: profiles.GuestProfile, name: str) -> Check:
    """A check the guest profile says does not apply: ok, never computed, with the profile's why."""
    return Check(name, True, f"skipped: not applicable to guest profile {profile.name} "
                             f"({profile.not_applicable[name]})")


def _lost_offset(io: Optional[dumpio.DeviceIO]) -> Optional[int]:
    lost = first_lost_write(io) if io is not None else None
    return lost[1] if lost else None


def _loader_map(snapshot: Snapshot) -> tuple[list, str]:
    """The guest's memory map as QEMU's multiboot loader left it in the snapshot."""
    def read(phys: int, length: int) -> Optional[bytes]:
        pieces = list(snapshot.pieces(phys, length))
        if any(i is None for _, _, i in pieces):
            return None
        return b"".join(snapshot.read(i, p, n) for p, n, i in pieces)

    regions, why = memmap.from_multiboot(read)
    return (regions, "the loader's memory map") if regions else (None, why)


def _device_io(target, scenario: dict, cmds, crashed: Optional[float], targets) -> Optional[dumpio.DeviceIO]:
    """A dump device's I/O after the crash (harness/dumpbed/oracles/dumpio.py), or None without a crash time."""
    if crashed is None:
        return None
    topology = scenario.get("topology") or {}
    disk = (topology.get("secondary") if target.role == "secondary" else topology.get("dump_disk")) or {}
    # Disks not addressed by target and LUN are told apart by the order they are written in: the
    # primary first.
    bus = disks_mod.get(target.kind).bus
    before = sum(1 for t in targets if disks_mod.get(t.kind).bus == bus and t.role == "primary"
                 and target.role == "secondary")
    return dumpio.load(target.role, target.image, target.kind, disk.get("target", 0), disk.get("lun", 0), before,
                       target.layout.dump_offset, target.layout.dump_size, crashed, cmds)


def _restart_errno(scenario: dict) -> int:
    """The errno the primary's failure must have had: its failing fault's (EIO without one)."""
    failing = [faults_mod.parse(f) for f in scenario.get("faults") or []]
    return next((f.kind.device_errno for f in failing if f.kind.fails_device), Errno.EIO)


def _outstanding(cmds) -> dict[str, int]:
    """Each device role's DUMPQUERY max_outstanding, from its QUIESCED line (1 without the word:
    docs/guest-interface.md); the last line of a role counts."""
    found: dict[str, int] = {}
    for line in cmds.result("QUIESCED"):
        word = line.fields.get("outstanding", "1")
        found[line.fields.get("device", "primary")] = int(word) if word.isdigit() and int(word) >= 1 else 1
    return found


def _io_timeout(scenario: dict) -> Optional[float]:
    """The guest's iotimeout= in seconds, from the command line the run gave it."""
    m = re.search(r"\biotimeout=(\d+)\b", scenario.get("cmdline") or "")
    return int(m.group(1)) / 1000 if m else None


def run_expectation(run_dir: Path, scenario: dict, ios: dict) -> dict:
    """What the run must end with (docs/faults.md, "Outcomes"): the scenario's declaration, or,
    when its fault cut the dump short, what the disk holds by where the fault hit (the last
    leader of the dump that reached the disk of record, from its write log)."""
    faults = [faults_mod.parse(f) for f in scenario.get("faults") or []]
    declared = {"outcome": scenario.get("expect") or "complete",
                "guest": scenario.get("expect_guest_result", "complete"), "why": "as the scenario declares"}
    if not faults:
        return declared
    fault_log = faults_mod.fault_record(run_dir)
    fired = bool(fault_log.get("fired"))
    secondary = ios.get("secondary")
    io = secondary if secondary is not None and secondary.writes else ios.get("primary")
    leader = dumpio.last_leader(io, scenario["dump_id"]) if io is not None else None
    outcome, guest, why = faults_mod.expected_where_fired(faults, scenario.get("secondary"), fired,
                                                          leader.status_name if leader else None)
    return {"outcome": outcome, "guest": guest, "why": why}


def qemu_exit_status(run_dir: Path) -> Optional[int]:
    try:
        status = json.loads((run_dir / "timeline.json").read_text()).get("qemu_exit_status")
    except (OSError, ValueError, AttributeError):
        return None
    return status if isinstance(status, int) else None


def _consistency(inbox: Callable[[], tuple[dict, DecodedStore]], targets, ios: dict, scenario: dict,
                 run_dir: Path) -> Check:
    """The sweep of every dump device (oracles/consistency.py). `inbox` gives the devices' dumps,
    {role: Dump}, once read (the sweep may start before), and the frames those reads decoded,
    which the sweep's reads of the same bytes take."""
    decoded = DecodedStore()

    @functools.cache  # asked for once per device, sent once
    def dumps() -> dict:
        read, frames_decoded = inbox()
        decoded.take(frames_decoded)
        return read

    devices = []
    for t in targets:
        io = ios[t.role]
        if io is None:
            return Check("consistency", False, "timeline.json missing: the crash instant is unknown")
        devices.append((io, t.image, t.layout.block_size, lambda role=t.role: dumps()[role],
                        _initial_content(t, run_dir, scenario)))
    return check_consistency(devices, scenario["dump_id"], decoded)


def _sweep_deadline(targets) -> float:
    """How long the sweep may take: it reads each device's log about once (a GiB in about a
    second on a 2-core box), and its states are bounded (consistency.MAX_*_STATES)."""
    return SWEEP_SECONDS + SWEEP_SECONDS_PER_GIB * sum(t.layout.dump_size for t in targets) / (1 << 30)


def _initial_content(target, run_dir: Path, scenario: dict):
    """What the disk held before the run: its canary, or the earlier run's disk (`stale`)."""
    before = run_dir / "before.img"
    if target.role == "primary" and scenario.get("stale_previous") and before.is_file():
        def read_before(offset: int, length: int) -> bytes:
            with open(before, "rb") as f:
                return os.pread(f.fileno(), length, offset)
        return read_before
    return canary.Canary(target.layout.canary_seed)


def _canary_since_before(run_dir: Path, dump: dumpfmt.Dump, image: dumpfmt.Image, layout) -> Check:
    before = run_dir / "before.img"
    if not before.is_file():
        return Check("canary", False, "before.img missing: what the disk held before the run is unknown")
    with _open(before) as was:
        return check_unchanged_since(dump, image, was, layout)


def _canary_of_devices(targets, dumps: dict, images: dict, ios: dict) -> Check:
    """The canary of every dump device: nothing outside its own dump extent changed (runtime
    I/O before the dump held to what its write log says it wrote)."""
    results = {t.role: check_canary(dumps[t.role], images[t.role], t.layout,
                                    ios[t.role].log if ios.get(t.role) is not None else None) for t in targets}
    if len(results) == 1:
        return results["primary"]
    problems = [f"{role}: {p}" for role, r in results.items() for p in r.problems]
    return make_check("canary", problems, "; ".join(f"{role}: {r.detail}" for role, r in results.items()))


def _with_other_disks(dump_disk: Check, run_dir: Path) -> Check:
    """The canary of every other disk of the run (diskN.layout.json): no dump may touch them."""
    problems = list(dump_disk.problems) if not dump_disk.ok else []
    layouts = sorted(run_dir.glob("disk*.layout.json"))
    for path in layouts:
        other = layout_mod.load(path)
        image_path = run_dir / other.image
        if not image_path.is_file():
            problems.append(f"{other.image}: image missing")
            continue
        with _open(image_path) as image:
            none = dumpfmt.read(image, other.dump_offset, other.dump_size, other.block_size)
            if none.status != "none":
                problems.append(f"{other.image}: holds a dump ({none.status}); only the dump disk may")
            result = check_canary(none, image, other)
        problems += [f"{other.image}: {p}" for p in result.problems]
    if not layouts:
        return dump_disk
    detail = dump_disk.detail + f"; {len(layouts)} other disk(s) untouched"
    return make_check("canary", problems, detail)


def validate_image(image_path: str | Path) -> Validation:
    """The checks an image carries by itself: format (no dump id to look for), chunk-crc,
    sample-data, protocol and the components' completeness (the sample components the dump
    lists, judged against the model at the header's level), crash-record (header against the
    record; no snapshot), completeness (RAM against the header's ram_bytes). The dump
    partition is found through the image's GPT."""
    image_path = Path(image_path)
    if not image_path.is_file():
        raise DumpbedError(f"{image_path}: no such image")
    info = gpt.parse(image_path)
    offset, size = info.dump_span()
    if vmcore_show.holds_vmcore(image_path, offset):  # a Linux guest's disk (docs/linux-kdump.md)
        return vmcore_run.validate_image(image_path, offset, size, info.block_size)
    with _open(image_path) as image:
        dump = dumpfmt.read(image, offset, size, info.block_size)
        expect = checks_components.expectation_from_dump(dump)
        checks = [
            check_format(dump, None),
            check_chunks(dump),
            check_sample_data(dump, image, expect),
            check_crash_record(dump, None, None),
            check_protocol(dump, expect),
            check_completeness(dump, expect),
        ]
    return Validation(checks, dump, None, str(image_path))


def _open(path: Path) -> dumpfmt.Image:
    try:
        return dumpfmt.open_image(path)
    except OSError as e:
        raise DumpbedError(f"{path}: cannot read: {e.strerror or e}") from None


# --------------------------------------------------------------------------------------------
# Artifacts
# --------------------------------------------------------------------------------------------


def load_scenario(path: Path) -> dict:
    data = load_json(path, "scenario")
    if not isinstance(data, dict):
        raise DumpbedError(f"{path}: expected a JSON object")
    dump_id = data.get("dump_id")
    try:
        if not isinstance(dump_id, str) or len(dump_id) != 32:
            raise ValueError
        dump_id_bytes = bytes.fromhex(dump_id)
    except ValueError:
        raise DumpbedError(f"{path}: dump_id must be 32 hex digits, not {dump_id!r}") from None
    memory = require_int(data.get("memory_bytes"), f"{path}: memory_bytes", 1)
    crash = data.get("crash")
    if not isinstance(crash, str):
        raise DumpbedError(f"{path}: crash must be a string, not {crash!r}")
    return {**data, "dump_id": dump_id_bytes, "memory_bytes": memory, "crash": crash}


def load_registers(path: Path) -> dict[str, int]:
    data = load_json(path, "snapshot registers")
    if not isinstance(data, dict):
        raise DumpbedError(f"{path}: expected a JSON object of register name to integer")
    out = {}
    for name, value in data.items():
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                raise DumpbedError(f"{path}: register {name} = {value!r} is not an integer") from None
        out[str(name).lower()] = require_int(value, f"{path}: register {name}")
    return out


# --------------------------------------------------------------------------------------------
# The component oracles (harness/dumpbed/oracles/components.py)
# --------------------------------------------------------------------------------------------


def expectation(scenario: dict):
    """The scenario's samples, level and restart; None for a scenario that predates them."""
    return checks_components.expectation_from_scenario(scenario)


def check_protocol(dump: dumpfmt.Dump, expect) -> Check:
    if dump.status == "none":
        return Check("protocol", False, "no dump: no call records")
    return checks_components.check_protocol(dump, expect)


def check_sample_data(dump: dumpfmt.Dump, image: dumpfmt.Image, expect) -> Check:
    if dump.status == "none":
        return Check("sample-data", False, "no dump: no sample data")
    return checks_components.check_sample_data(dump, image, expect)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _compression(scenario: dict) -> int | None:
    """The header's compression the run asked for (scenario.json's `compress`), None if unsaid."""
    word = scenario.get("compress")
    if word is None:
        return None
    if word not in COMPRESSIONS:
        raise DumpbedError(f"scenario compress must be one of {', '.join(COMPRESSIONS)}, not {word!r}")
    return COMPRESSIONS[word]


def check_format(dump: dumpfmt.Dump, dump_id: bytes | None, partial_expected: bool = False,
                 compression: int | None = None) -> Check:
    """Headers, CRCs, leader and trailer, geometry, the slot the leader names, zero regions,
    end marker, dump id, and the compression the run asked for (None: any). When the scenario
    expects a partial dump (docs/faults.md), a consistent partial dump passes. A dump of another
    version fails as unsupported, never as corrupt."""
    problems = [str(f) for f in dump.findings_for("format")]
    if dump.status == "none":
        return make_check("format", [f"no dump: {dump.reason}", *problems], "")
    if dump.status == "unsupported":
        return make_check("format", [f"unsupported dump: {dump.reason}", *problems], "")
    h = dump.header
    if h is not None and h.status != HeaderStatus.COMPLETE and not (partial_expected and dump.status == "partial"):
        problems.insert(0, f"leader status {h.status_name}: {dump.reason}")
    other = dumpfmt.another_dump(h.dump_id, dump_id) if h is not None else None
    if other:  # a dump read without the id looked for
        problems.append(other)
    if h is not None and compression is not None and h.compression != compression:
        problems.append(f"compression {h.compression_name}, the run asked for "
                        f"{dumpfmt.COMPRESSION_NAMES.get(compression, compression)}")
    id_note = ", dump id matches the scenario" if dump_id is not None else ""
    where = f", {h.device_role_name.lower()} device" if h else ""
    if dump.status == "partial" and h.slot == 0:
        return make_check("format", problems, (
            f"a consistent partial dump: leader {h.status_name} with slot 0 (the dump has begun, no directory yet), "
            f"generation {h.generation}{where}{id_note}"))
    if dump.status == "partial":
        return make_check("format", problems, (
            f"a consistent partial dump: leader {h.status_name}, generation {h.generation}{where}{id_note}; "
            f"directory and CRC table slot {h.slot} as the leader says; body_written {h.body_written} bytes, "
            f"{h.chunks_sealed} chunks sealed; {len(dump.components)} components, {len(dump.areas)} areas listed"))
    ok_detail = (
        f"leader and trailer valid and identical, status COMPLETE, generation {h.generation if h else '?'}"
        f"{where}{id_note}; directory and CRC table slot {h.slot if h else '?'}, end marker valid; "
        f"{len(dump.components)} components, {len(dump.areas)} areas, {len(dump.calls)} calls, "
        f"{len(dump.violations)} violations, extent {dump.extent_bytes} bytes"
    )
    return make_check("format", problems, ok_detail)


def check_chunks(dump: dumpfmt.Dump, partial_expected: bool = False) -> Check:
    """Every chunk of a COMPLETE body against the CRC table. A partial dump fails it unless a
    partial dump is expected: its sealed chunks are checked (a bad one is named), but no table
    vouches for a whole body."""
    h = dump.header
    if dump.status == "unsupported":
        return Check("chunk-crc", False, f"chunk CRCs not verified: unsupported dump ({dump.reason})")
    if not dump.chunks_verified:
        own = dump.findings_for("chunk-crc")
        if own:
            why = str(own[0])
        elif dump.status == "none":
            why = "no dump"
        elif h is None or not dump.geometry_ok:
            why = "no valid header"
        elif not dump.crc_table_ok:
            why = "the CRC table is invalid"
        else:
            why = "the reader was told not to"
        return Check("chunk-crc", False, f"chunk CRCs not verified: {why}")
    problems = [bc.describe() for bc in dump.bad_chunks]
    if dump.bad_chunk_count > len(dump.bad_chunks):
        problems.append(f"{dump.bad_chunk_count - len(dump.bad_chunks)} more bad chunks")
    sealed = (f"the {h.chunks_sealed} sealed chunks of {h.chunk_size} bytes match the CRC table" if h.slot
              else "no chunk sealed yet (slot 0)")
    if problems:
        problems[0] = f"{dump.bad_chunk_count} of {dump.chunk_count} chunks bad, first: {problems[0]}"
    elif not h.complete and partial_expected:
        return make_check("chunk-crc", [], f"partial dump: {sealed}")
    elif not h.complete:
        problems.append(f"dump is {h.status_name}: {sealed}, but no table vouches for a finished body")
    return make_check("chunk-crc", problems, f"{dump.chunk_count} chunks of {h.chunk_size} bytes match the CRC table")


def check_crash_record(dump: dumpfmt.Dump, registers: dict[str, int] | None, crash,
                       run_dir: Path | None = None, partial_expected: bool = False) -> Check:
    """The header says what the harness injected, and its registers are the CPU state QEMU
    reported; the crash record equals the header.

    `crash` is a recipe name (harness/dumpbed/scenario/crash.py) or a Crash: its reason, vector, error code and
    faulting address must be the header's; the registers it names (all of the snapshot for an
    NMI at the idle guest) must equal the ground truth; the recorded rip must lie in the guest
    function that raised the crash and CR2 where the recipe says (symbols saved in the run
    directory from the kernel that ran); the nested recipe's second NMI must have been injected
    and noted by the guest as ignored."""
    h = dump.header
    if h is None:
        return Check("crash-record", False, "no valid header")
    recipe = _crash_recipe(crash)
    problems: list[str] = []
    compared = 0
    if registers is not None:
        names = recipe.same_registers if recipe is not None and recipe.same_registers is not None else None
        for name, value in h.register_dict().items():
            if name in registers and (names is None or name in names):
                compared += 1
                if registers[name] != value:
                    problems.append(f"register {name}: dump 0x{value:x}, snapshot 0x{registers[name]:x}")
        if compared == 0:
            problems.append("no register of the header is in the snapshot's registers.json")
    if recipe is not None:
        problems += _cause_problems(h, recipe, run_dir)
    # A dump cut short before its first area has no record yet; its header still says it all.
    unwritten = partial_expected and dump.status == "partial" and not dump.areas
    if dump.crash_record is None and not unwritten:
        problems.append("no crash record (no written CRASH_RECORD area of 1024 bytes)")
    problems += [str(f) for f in dump.findings_for("crash-record")]
    fpu_note = ""
    if registers is not None and dump.crash_record is not None:
        fpu = _snapshot_fpu(run_dir)
        if fpu is None:
            problems.append(f"no x87/SSE state in the snapshot ({groundtruth_fpu_file()}): the FXSAVE image "
                            f"cannot be compared")
        else:
            problems += fxsave.problems(dump.crash_record.fxsave, fpu, stack_order=_accel(run_dir) == "kvm")
            fpu_note = "the FXSAVE image (FCW, FSW, FTW, MXCSR, ST0..7, XMM0..15) equals QEMU's, "
    what = f"{compared} registers equal the snapshot, {fpu_note}" if registers is not None else ""
    cause = ""
    if h.crash_reason == CrashReason.EXCEPTION:
        cause = f", error code 0x{h.crash_error_code:x}, fault address 0x{h.crash_fault_addr:x}"
    if recipe is not None and recipe.needed_symbols():
        placed = crash_mod.load_symbols(run_dir) is not None
        if recipe.rip_in:
            cause += f", rip 0x{h.register_dict()['rip']:x} {'in' if placed else 'not placed in'} {recipe.rip_in}"
        if not placed:
            cause += f" (no {crash_mod.SYMBOLS_FILE})"
    record = ("the dump was cut short before its crash record was written" if dump.crash_record is None
              else "crash record equals the header")
    ok_detail = (f"{what}crash reason {h.reason_name} (vector {h.crash_vector}{cause}) as the "
                 f"{recipe.name if recipe else 'unknown'} crash means, {record}")
    return make_check("crash-record", problems, ok_detail)


def _accel(run_dir: Path | None) -> Optional[str]:
    try:
        return json.loads((Path(run_dir) / "scenario.json").read_text()).get("accel")
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def groundtruth_fpu_file() -> str:
    return "snapshot/fpu.json"


def _snapshot_fpu(run_dir: Path | None) -> Optional[dict]:
    """The x87/SSE state QEMU reported at the crash instant, or None."""
    if run_dir is None:
        return None
    try:
        fpu = json.loads((Path(run_dir) / groundtruth_fpu_file()).read_text())
    except (OSError, ValueError):
        return None
    keys = {"fcw", "fsw", "ftw", "mxcsr", "fpr", "xmm"}
    if not isinstance(fpu, dict) or set(fpu) != keys or len(fpu["fpr"]) != 8 or len(fpu["xmm"]) != 16:
        return None
    return fpu


def _crash_recipe(crash):
    if crash is None or isinstance(crash, crash_mod.Crash):
        return crash
    return crash_mod.CRASHES.get(crash)


def _cause_problems(h, recipe, run_dir: Path | None) -> list[str]:
    """The header's crash fields against the recipe's expectation."""
    problems = []
    if h.crash_reason != recipe.reason:
        problems.append(f"crash reason {h.reason_name}, the scenario's crash {recipe.name!r} means "
                        f"{CrashReason(recipe.reason).name}")
    for field_name, label in (("vector", "crash_vector"), ("error_code", "crash_error_code"),
                              ("fault_addr", "crash_fault_addr")):
        want, got = getattr(recipe, field_name), getattr(h, label)
        if got != want:
            problems.append(f"{label} 0x{got:x}, the {recipe.name!r} crash means 0x{want:x}")
    regs = h.register_dict()
    needed = recipe.needed_symbols()
    symbols = crash_mod.load_symbols(run_dir) if needed else {}
    if symbols is None:  # a run made before recipes saved them (or a synthetic one)
        symbols = {}
    if recipe.rip_in and recipe.rip_in in symbols:
        start, size = symbols[recipe.rip_in]
        if recipe.rip_is_return:
            inside, shown = start < regs["rip"] <= start + size, f"(0x{start:x}, 0x{start + size:x}] (a return address)"
        else:
            inside, shown = start <= regs["rip"] < start + max(size, 1), f"[0x{start:x}, 0x{start + size:x})"
        if not inside:
            problems.append(f"rip 0x{regs['rip']:x} is not in {recipe.rip_in} {shown}")
    if recipe.cr2_in and all(n in symbols for n in recipe.cr2_in):
        lo, hi = symbols[recipe.cr2_in[0]][0], symbols[recipe.cr2_in[1]][0]
        if not lo <= regs["cr2"] < hi:
            problems.append(f"cr2 0x{regs['cr2']:x} is not in [{recipe.cr2_in[0]}, {recipe.cr2_in[1]}) "
                            f"= [0x{lo:x}, 0x{hi:x})")
    if recipe.rsp_is and recipe.rsp_is in symbols and regs["rsp"] != symbols[recipe.rsp_is][0]:
        problems.append(f"rsp 0x{regs['rsp']:x}, the {recipe.name!r} crash means {recipe.rsp_is} "
                        f"0x{symbols[recipe.rsp_is][0]:x}")
    if recipe.during_dump is not None:
        problems += _nested_problems(run_dir)
    return problems


def _nested_problems(run_dir: Path | None) -> list[str]:
    """The second NMI went in while the dump ran, and the guest noted it and ignored it."""
    if run_dir is None:
        return ["no run directory: cannot tell whether the second NMI was injected"]
    if not (Path(run_dir) / crash_mod.NESTED_FILE).is_file():
        return [f"no {crash_mod.NESTED_FILE}: the second NMI was never injected"]
    try:
        console = (Path(run_dir) / "console.log").read_bytes().decode("utf-8", "replace")
    except OSError:
        return ["no console.log: cannot see the guest's note of the second NMI"]
    crash_at = console.find("*** CRASH")
    note_at = console.find(crash_mod.NESTED_NOTE, max(crash_at, 0))
    if crash_at < 0 or note_at < 0:
        if _stopped_before_second_nmi(run_dir):  # QEMU's word: the guest never ran after it
            return []
        return [f"the console shows no {crash_mod.NESTED_NOTE!r} after the crash: the second NMI was not seen"]
    return []


def _stopped_before_second_nmi(run_dir: Path) -> bool:
    """Whether the guest never ran again after the nested recipe sent its second NMI: QEMU had
    stopped the VM (on a live fault's trigger write) before it went in, and never resumed it
    (QMP's STOP and RESUME events against nested.json's time; the RFLAGS sampler's pauses under
    TCG each end with a RESUME). Then the guest could not take the NMI, and owes no note. False
    when a record is missing."""
    try:
        sent = float(json.loads((Path(run_dir) / crash_mod.NESTED_FILE).read_text())["second_nmi_injected"])
        lines = (Path(run_dir) / "qmp.jsonl").read_text(encoding="utf-8", errors="replace").splitlines()
    except (OSError, ValueError, KeyError, TypeError):
        return False
    running_at_send, resumed_after = True, False
    for line in lines:
        try:
            msg = json.loads(line).get("msg") or {}
            when = msg["timestamp"]["seconds"] + msg["timestamp"]["microseconds"] / 1e6
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if msg.get("event") in ("STOP", "RESUME"):
            if when < sent:
                running_at_send = msg["event"] == "RESUME"
            elif msg["event"] == "RESUME":
                resumed_after = True
    return not running_at_send and not resumed_after


def usable_parts(dump: dumpfmt.Dump) -> tuple[list[str], list[str], int, int]:
    """Of a partial dump (docs/dump-format.md, "Status"): the usable components, DUMPED ones
    every area of which lies in the chunks the leader seals (their CRCs vouch for them); the
    PARTIAL ones, usable in part only (their areas are as good as the chunks that hold them);
    and how many listed areas lie in sealed chunks, of how many listed."""
    sealed = [a for a in dump.areas if dump.area_sealed(a)]
    usable = [c.name for c in dump.components
              if c.status == ComponentStatus.DUMPED and dump.component_areas(c)
              and all(dump.area_sealed(a) for a in dump.component_areas(c))]
    in_part = [c.name for c in dump.components if c.status == ComponentStatus.PARTIAL]
    return usable, in_part, len(sealed), len(dump.areas)


def check_partial_completeness(dump: dumpfmt.Dump) -> Check:
    """For a scenario that expects a partial dump: what is usable (docs/faults.md, "Outcomes")."""
    h = dump.header
    if h is None or not dump.geometry_ok or dump.status != "partial":
        return Check("completeness", False, f"a partial dump was expected, the disk holds: {dump.status}")
    if h.slot == 0:
        return Check("completeness", True, "partial, as expected: the dump has begun (slot 0), nothing usable yet")
    usable, in_part, sealed, listed = usable_parts(dump)
    part = f"; in part only (PARTIAL): {', '.join(in_part)}" if in_part else ""
    return make_check("completeness", [], (
        f"partial, as expected: {sealed} of {listed} listed areas within the {h.chunks_sealed} sealed "
        f"chunks; usable components: {', '.join(usable) or 'none'}{part}"))


def check_completeness(dump: dumpfmt.Dump, expect=None, memory_map: Optional[list] = None,
                       map_source: str = "") -> Check:
    """Every component DUMPED with areas, areas as the spec lays them out, the whole body
    written, one crash record, estimates that cover what was dumped, and the RAM and KERNEL
    areas covering exactly the usable RAM (docs/dump-format.md, "Completeness"): each usable byte
    of the loader's memory map once (`memory_map`, read from the snapshot: harness/dumpbed/oracles/memmap.py),
    nothing else; without a map (a bare image), as many bytes as the header's ram_bytes, once.
    With a scenario that names sample components, the components are also held against the
    samples' model (harness/dumpbed/oracles/components.py): there, a sample's expected status (FAILED,
    EXCLUDED, DISABLED) is no problem."""
    h = dump.header
    if h is None or not dump.geometry_ok:
        return Check("completeness", False, "no valid header")
    problems: list[str] = []
    if not dump.directory_ok:
        problems.append("the directory is invalid (see format): components and areas not trusted")
    if not dump.components:
        problems.append("no components")
    problems += _status_problems(dump, expect)
    if not h.complete:
        problems.append(f"the dump is {h.status_name}: body_written {h.body_written}, no end marker")
    if expect is None:  # else component_problems checks the estimates, for every component
        problems += _estimate_problems(dump)
    elif checks_components is not None:
        problems += checks_components.component_problems(dump, expect)
    dumped = [c for c in dump.components if c.status == ComponentStatus.DUMPED]
    crash_records = [c for c in dumped if c.kind == ComponentKind.CRASH_RECORD]
    if len(crash_records) != 1:
        problems.append(f"{len(crash_records)} dumped CRASH_RECORD components, expected 1")
    if not any(c.kind == ComponentKind.RAM for c in dumped):
        problems.append("no RAM component")
    ram_problems, ram_detail = _ram_coverage(dump, dumped, memory_map, map_source)
    problems += ram_problems
    model = f"; {len(expect.samples)} samples as the model says" if expect is not None else ""
    ok_detail = (
        f"{len(dump.components)} components as expected, {len(dump.areas)} areas in order, body fully written, "
        f"estimates {h.estimate_bytes} bytes cover them; {ram_detail}{model}"
    )
    return make_check("completeness", problems, ok_detail)


def _ram_coverage(dump: dumpfmt.Dump, dumped: list, memory_map: Optional[list], map_source: str) -> tuple[list[str], str]:
    """The RAM and KERNEL areas against the usable RAM: each byte once, nothing else."""
    h = dump.header
    kinds = {c.index for c in dumped if c.kind in (ComponentKind.RAM, ComponentKind.KERNEL)}
    areas = sorted((a.phys_addr, a.phys_addr + a.length, a.name) for a in dump.areas if a.component in kinds)
    problems = [f"RAM areas {a[2]} and {b[2]} overlap at 0x{b[0]:x}" for a, b in zip(areas, areas[1:]) if b[0] < a[1]]
    covered = ranges.merged((start, end) for start, end, _ in areas)
    total = sum(end - start for start, end in covered)
    if memory_map is None:
        if map_source:  # a run, whose snapshot should hold the map: why it does not
            problems.append(f"{map_source}: the usable RAM the dump must cover is unknown")
        if total != h.ram_bytes:
            problems.append(f"RAM and KERNEL areas hold {total} bytes, the header's ram_bytes is {h.ram_bytes}")
        return problems, f"RAM+KERNEL areas {total} bytes, each once, = the header's ram_bytes (no memory map)"
    usable = memmap.usable(memory_map)
    usable_bytes = sum(end - start for start, end in usable)
    for start, end in ranges.minus(usable, covered)[:4]:
        problems.append(f"usable RAM [0x{start:x}, 0x{end:x}) ({end - start} bytes, {map_source}) is in no RAM or "
                        f"KERNEL area: the dump left it out")
    for start, end in ranges.minus(covered, usable)[:4]:
        problems.append(f"RAM or KERNEL areas cover [0x{start:x}, 0x{end:x}), which {map_source} does not call usable")
    if h.ram_bytes != usable_bytes:
        problems.append(f"the header's ram_bytes is {h.ram_bytes}, the usable RAM of {map_source} is {usable_bytes}")
    return problems, (f"RAM+KERNEL areas cover the {len(usable)} usable regions of {map_source} exactly "
                      f"({usable_bytes} bytes, each once)")


def _status_problems(dump: dumpfmt.Dump, expect) -> list[str]:
    """Components not DUMPED, or DUMPED without areas. The samples the scenario names are
    judged by the model instead (their expected status may be FAILED, EXCLUDED, DISABLED)."""
    modelled = set(expect.samples) if expect is not None else set()
    problems = []
    for c in dump.components:
        if c.name in modelled and c.status != ComponentStatus.PENDING:
            continue
        if c.status != ComponentStatus.DUMPED:
            problems.append(f"component {c.name}: {c.status_name} (reason {c.reason})")
        elif c.area_count == 0:
            problems.append(f"component {c.name}: DUMPED without areas")
    return problems


def _estimate_problems(dump: dumpfmt.Dump) -> list[str]:
    """Every DUMPED component's estimate covers what it dumped; the header's estimate is the
    sum of the components'."""
    problems = [
        f"component {c.name}: estimate_bytes {c.estimate_bytes} below dumped_bytes {c.dumped_bytes}"
        for c in dump.components
        if c.status == ComponentStatus.DUMPED and c.estimate_bytes < c.dumped_bytes
    ]
    total = sum(c.estimate_bytes for c in dump.components)
    if dump.header.estimate_bytes != total:
        problems.append(f"header estimate_bytes {dump.header.estimate_bytes}, the components' estimates sum to {total}")
    return problems
