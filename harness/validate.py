"""The oracles: prove, from the artifacts of a run, that the dump is right and nothing else moved.

    validate_run(run_dir)      every check, against scenario.json, layout.json and snapshot/
    validate_image(image_path) what the image alone carries (partition found through its GPT)

Each check is a Check {name, ok, detail}. Every byte of the dump disk is covered by one:
GPT regions (canary: byte-for-byte against the regenerated GPT), sectors outside the dump
extent (canary), leader and trailer (format: header CRC, zero padding, identical), directory,
CRC table and end marker (format: their CRCs), the body (chunk-crc; content for the data).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import dumpfmt, gpt, layout as layout_mod
from harness.checks_base import Check, load_json, make_check, require_int
from harness.checks_canary import check_canary
from harness.checks_content import ContentStats, Snapshot, check_content
from harness.dumpfmt import ComponentKind, ComponentStatus, CrashReason, HeaderStatus
from harness.errors import DumpbedError
from harness.irqwatch import check_no_interrupts
from harness.writelog import check_write_sizes, crash_time

CHECK_ORDER = ("format", "chunk-crc", "content", "crash-record", "canary", "completeness", "write-sizes",
               "no-interrupts")
# The RAM that must be dumped: 99% of the reference size, less 1 MiB for what no memory map
# offers as usable RAM (the legacy hole below 1 MiB, firmware-reserved ranges).
RAM_COVERAGE = 0.99
RAM_ALLOWANCE = 1 << 20
CRASH_REASONS = {"nmi": CrashReason.NMI, "panic": CrashReason.PANIC}
MAX_FINDINGS_IN_DICT = 100


@dataclass
class Validation:
    checks: list[Check]
    dump: dumpfmt.Dump
    content: ContentStats | None = None
    image: str = ""

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
        }


def dump_summary(d: dumpfmt.Dump) -> dict:
    h = d.header
    components = []
    for c in d.components:
        areas = d.component_areas(c)
        components.append({
            "index": c.index, "name": c.name, "kind": c.kind_name, "status": c.status_name,
            "reason": c.reason, "areas": len(areas), "bytes": sum(a.length for a in areas),
        })
    return {
        "status": d.status,
        "reason": d.reason,
        "first_inconsistency": d.first_inconsistency,
        "bytes": d.extent_bytes,
        "generation": d.generation,
        "dump_id": d.dump_id.hex() if d.dump_id is not None else None,
        "header_status": h.status_name if h else None,
        "crash_reason": h.reason_name if h else None,
        "block_size": d.block_size,
        "partition_offset": d.partition_offset,
        "partition_bytes": d.partition_bytes,
        "body_bytes": h.body_bytes if h else None,
        "body_written": h.body_written if h else None,
        "chunk_size": h.chunk_size if h else None,
        "chunks": h.nchunks if h else None,
        "bad_chunks": d.bad_chunk_count,
        "components": components,
        "areas": [
            {
                "index": a.index, "name": a.name, "component": a.component, "phys_addr": a.phys_addr,
                "length": a.length, "disk_offset": a.disk_offset, "volatile": a.volatile,
            }
            for a in d.areas
        ],
        "findings": [
            {"check": f.check, "message": f.message, "offset": f.offset} for f in d.findings[:MAX_FINDINGS_IN_DICT]
        ],
    }


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def validate_run(run_dir: str | Path) -> Validation:
    """Run every oracle on the artifacts directory of a run (docs/artifacts.md)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DumpbedError(f"{run_dir}: not a directory")
    scenario = load_scenario(run_dir / "scenario.json")
    layout = layout_mod.load(run_dir / "layout.json")
    registers = load_registers(run_dir / "snapshot" / "registers.json")
    image_path = run_dir / layout.image
    if not image_path.is_file():
        raise DumpbedError(f"{image_path}: dump image missing")

    with Snapshot.load(run_dir / "snapshot") as snapshot, _open(image_path) as image:
        dump = dumpfmt.read(image, layout.dump_offset, layout.dump_size, layout.block_size)
        content, stats = check_content(dump, image, snapshot, scenario["memory_bytes"])
        checks = {
            "format": check_format(dump, scenario["dump_id"]),
            "chunk-crc": check_chunks(dump),
            "content": content,
            "crash-record": check_crash_record(dump, registers, scenario["crash"]),
            "canary": check_canary(dump, image, layout),
            "completeness": check_completeness(dump, scenario["memory_bytes"], "memory_bytes"),
            "write-sizes": check_write_sizes(run_dir, dump, layout, scenario),
            "no-interrupts": check_no_interrupts(run_dir, crash_time(run_dir)),
        }
    checks["canary"] = _with_other_disks(checks["canary"], run_dir)
    return Validation([checks[n] for n in CHECK_ORDER], dump, stats, str(image_path))


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
    """The checks an image carries by itself: format (no dump id to compare), chunk-crc,
    crash-record (header against the record; no snapshot), completeness (against the
    header's ram_bytes). The dump partition is found through the image's GPT."""
    image_path = Path(image_path)
    if not image_path.is_file():
        raise DumpbedError(f"{image_path}: no such image")
    info = gpt.parse(image_path)
    offset, size = info.dump_span()
    with _open(image_path) as image:
        dump = dumpfmt.read(image, offset, size, info.block_size)
    ram = dump.header.ram_bytes if dump.header else 0
    checks = [
        check_format(dump, None),
        check_chunks(dump),
        check_crash_record(dump, None, None),
        check_completeness(dump, ram, "the header's ram_bytes"),
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
# Checks
# --------------------------------------------------------------------------------------------


def check_format(dump: dumpfmt.Dump, dump_id: bytes | None) -> Check:
    """Headers, CRCs, leader == trailer, geometry, zero regions, end marker, dump id."""
    problems = [str(f) for f in dump.findings_for("format")]
    h = dump.header
    if dump.status == "none":
        problems = ["no dump: no header magic in the leader slot"] + [
            p for p in problems if not p.startswith("no dump header magic")
        ]
    elif h is not None and h.status != HeaderStatus.COMPLETE:
        problems.insert(0, f"leader status {h.status_name}: {dump.reason}")
    if h is not None and dump_id is not None and h.dump_id != dump_id:
        problems.append(f"dump_id {h.dump_id.hex()}, the scenario gave {dump_id.hex()}")
    id_note = ", dump id matches the scenario" if dump_id is not None else ""
    ok_detail = (
        f"leader and trailer valid and identical, status COMPLETE, generation {h.generation if h else '?'}"
        f"{id_note}; directory, CRC table and end marker valid; {len(dump.components)} components, "
        f"{len(dump.areas)} areas, extent {dump.extent_bytes} bytes"
    )
    return make_check("format", problems, ok_detail)


def check_chunks(dump: dumpfmt.Dump) -> Check:
    if not dump.chunks_verified:
        own = dump.findings_for("chunk-crc")
        if own:
            why = str(own[0])
        elif dump.status == "none":
            why = "no dump"
        elif dump.header is None or not dump.geometry_ok:
            why = "no valid header"
        elif dump.header.status != HeaderStatus.COMPLETE:
            why = f"dump is {dump.header.status_name}: no CRC table vouches for the body"
        else:
            why = "the CRC table is invalid"
        return Check("chunk-crc", False, f"chunk CRCs not verified: {why}")
    problems = [bc.describe() for bc in dump.bad_chunks]
    if dump.bad_chunk_count > len(dump.bad_chunks):
        problems.append(f"{dump.bad_chunk_count - len(dump.bad_chunks)} more bad chunks")
    if problems:
        problems[0] = f"{dump.bad_chunk_count} of {dump.chunk_count} chunks bad, first: {problems[0]}"
    h = dump.header
    return make_check("chunk-crc", problems, f"{dump.chunk_count} chunks of {h.chunk_size} bytes match the CRC table")


def check_crash_record(dump: dumpfmt.Dump, registers: dict[str, int] | None, crash: str | None) -> Check:
    """Header registers = the host's registers at the crash instant; the crash reason fits the
    crash injected; the crash record equals the header."""
    h = dump.header
    if h is None:
        return Check("crash-record", False, "no valid header")
    problems: list[str] = []
    compared = 0
    if registers is not None:
        for name, value in h.register_dict().items():
            if name in registers:
                compared += 1
                if registers[name] != value:
                    problems.append(f"register {name}: dump 0x{value:x}, snapshot 0x{registers[name]:x}")
        if compared == 0:
            problems.append("no register of the header is in the snapshot's registers.json")
    expected_reason = CRASH_REASONS.get(crash) if crash else None
    if expected_reason is not None and h.crash_reason != expected_reason:
        problems.append(f"crash reason {h.reason_name}, the scenario's crash {crash!r} means {expected_reason.name}")
    if dump.crash_record is None:
        problems.append("no crash record (no written CRASH_RECORD area of 1024 bytes)")
    problems += [str(f) for f in dump.findings_for("crash-record")]
    what = f"{compared} registers equal the snapshot, " if registers is not None else ""
    ok_detail = f"{what}crash reason {h.reason_name} (vector {h.crash_vector}), crash record equals the header"
    return make_check("crash-record", problems, ok_detail)


def check_completeness(dump: dumpfmt.Dump, ram_reference: int, reference_name: str) -> Check:
    """Every component DUMPED with areas, areas as the spec lays them out, the whole body
    written, one crash record, and the RAM+KERNEL areas covering the RAM: at least 99% of the
    reference size less 1 MiB (the legacy hole and firmware-reserved ranges are not usable
    RAM). The kernel is counted with RAM because it is RAM the guest dumps separately."""
    h = dump.header
    if h is None or not dump.geometry_ok:
        return Check("completeness", False, "no valid header")
    problems: list[str] = []
    if not dump.directory_ok:
        problems.append("the directory is invalid (see format): components and areas not trusted")
    if not dump.components:
        problems.append("no components")
    for c in dump.components:
        if c.status != ComponentStatus.DUMPED:
            problems.append(f"component {c.name}: {c.status_name} (reason {c.reason})")
        elif c.area_count == 0:
            problems.append(f"component {c.name}: DUMPED without areas")
    if h.body_written != h.body_bytes:
        problems.append(f"body_written {h.body_written} of body_bytes {h.body_bytes}")
    dumped = [c for c in dump.components if c.status == ComponentStatus.DUMPED]
    crash_records = [c for c in dumped if c.kind == ComponentKind.CRASH_RECORD]
    if len(crash_records) != 1:
        problems.append(f"{len(crash_records)} dumped CRASH_RECORD components, expected 1")
    if not any(c.kind == ComponentKind.RAM for c in dumped):
        problems.append("no RAM component")
    ram_kinds = {c.index for c in dumped if c.kind in (ComponentKind.RAM, ComponentKind.KERNEL)}
    covered = sum(a.length for a in dump.areas if a.component in ram_kinds)
    needed = max(0, int(ram_reference * RAM_COVERAGE) - RAM_ALLOWANCE)
    if covered < needed:
        problems.append(
            f"RAM and KERNEL areas hold {covered} bytes, need {needed} "
            f"(99% of {reference_name} {ram_reference}, less 1 MiB)"
        )
    ok_detail = (
        f"{len(dump.components)} components all DUMPED, {len(dump.areas)} areas in order, body fully written; "
        f"RAM+KERNEL areas {covered} bytes >= {needed} (99% of {reference_name} {ram_reference} less 1 MiB)"
    )
    return make_check("completeness", problems, ok_detail)
