"""The component directory of dump format version 4, and 3 (docs/dump-format.md, "Component directory").

Records, their codes, and the rules that tie them together. parse_header()/parse_records()
turn the bytes of the directory slot the leader names into a Directory, and check() reports
every rule broken through a `note(message, offset)` callback; nothing here raises on what the
bytes say. The reader (harness/dumpbed/reader/dumpfmt.py) picks the slot, bounds its size first, and turns the
notes into findings.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Callable

from dumpbed.guest_interface import Errno
from dumpbed.units import PAGE

DIR_HEADER_SIZE = 64
COMPONENT_ENTRY_SIZE = 128
AREA_ENTRY_SIZE = 64
CALL_ENTRY_SIZE = 24
VIOLATION_ENTRY_SIZE = 32
CRASH_RECORD_BYTES = 1024
DIR_MAGIC = b"DBEDDIR\0"
NO_COMPONENT = 0xFFFFFFFF
MAX_LEVEL = 9
MAX_STAGING_BYTES = 32 << 20
# Reader limit on the records of one directory (the writer's limits total 2096).
MAX_DIRECTORY_ENTRIES = 65536

# errno values the format names
EIO, EFAULT, EINVAL, ENODATA = Errno.EIO, Errno.EFAULT, Errno.EINVAL, Errno.ENODATA


class ComponentKind(IntEnum):
    CRASH_RECORD = 1
    KERNEL = 2
    RAM = 3
    OTHER = 4


class ComponentStatus(IntEnum):
    DUMPED = 1
    EXCLUDED = 2
    FAILED = 3
    DISABLED = 4
    PENDING = 5
    PARTIAL = 6  # being collected when the directory was written: its areas so far


class ComponentFlag(IntFlag):
    CALL_ON_RESTART = 1 << 0
    GLOBAL_BUFFER = 1 << 1
    RAS = 1 << 2
    UNLIMITED = 1 << 3
    PRIVATE_STAGING = 1 << 4
    SHARED_STAGING = 1 << 5
    SERIALIO = 1 << 6
    RTNFAILURE = 1 << 7
    PIN_VIOLATION = 1 << 8
    ENDED_EARLY = 1 << 9
    TABLE_REUSED = 1 << 10


class AreaFlag(IntFlag):
    VOLATILE = 1 << 0
    STAGED = 1 << 1


class CallOp(IntEnum):
    START = 1
    AGAIN = 2
    DONE = 3  # RAS: FINISHED
    ESTIMATE = 4


class CallOutcome(IntEnum):
    TABLE = 1
    NONE = 2
    NEGATIVE = 3
    FAULT = 4
    VALUE = 5
    ACK = 6
    BAD = 7


COMPONENT_FLAGS_DEFINED = sum(ComponentFlag)
AREA_FLAGS_DEFINED = sum(AreaFlag)
_STAGING = ComponentFlag.PRIVATE_STAGING | ComponentFlag.SHARED_STAGING
_RAS_ONLY = _STAGING | ComponentFlag.SERIALIO
_STAGED_SOURCES = ComponentFlag.GLOBAL_BUFFER | _STAGING
# Outcomes each op may have (a pinning violation can end any call).
_OUTCOMES = {
    CallOp.START: {CallOutcome.TABLE, CallOutcome.NONE, CallOutcome.NEGATIVE, CallOutcome.FAULT, CallOutcome.BAD},
    CallOp.AGAIN: {CallOutcome.TABLE, CallOutcome.NONE, CallOutcome.NEGATIVE, CallOutcome.FAULT, CallOutcome.BAD},
    CallOp.DONE: {CallOutcome.ACK, CallOutcome.FAULT},
    CallOp.ESTIMATE: {CallOutcome.VALUE, CallOutcome.NONE, CallOutcome.NEGATIVE, CallOutcome.FAULT},
}


def enum_name(enum: type[IntEnum], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return f"unknown({value})"


def flag_names(enum: type[IntFlag], value: int) -> list[str]:
    names = [f.name for f in enum if value & f]
    unknown = value & ~sum(enum)
    return names + ([f"0x{unknown:x}"] if unknown else [])


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryHeader:
    magic: bytes
    component_count: int
    area_count: int
    component_entry_size: int
    area_entry_size: int
    call_count: int
    call_entry_size: int
    violation_count: int
    violation_entry_size: int
    level: int
    generation: int
    estimate_bytes: int
    zero: int

    @property
    def used_bytes(self) -> int:
        """Bytes of the slot its records occupy (when the entry sizes are the spec's)."""
        return (DIR_HEADER_SIZE + COMPONENT_ENTRY_SIZE * self.component_count + AREA_ENTRY_SIZE * self.area_count
                + CALL_ENTRY_SIZE * self.call_count + VIOLATION_ENTRY_SIZE * self.violation_count)

    @property
    def entries(self) -> int:
        return self.component_count + self.area_count + self.call_count + self.violation_count


_DIR_HEADER = struct.Struct("<8sIIIIIIIIIIQQ")
_COMPONENT = struct.Struct("<32sIIIIIIIIQQiIQQQ16s")
_AREA = struct.Struct("<24sQQQIIQ")
_CALL = struct.Struct("<IBBBBIIq")
_VIOLATION = struct.Struct("<QQIIII")
assert (_DIR_HEADER.size, _COMPONENT.size, _AREA.size, _CALL.size, _VIOLATION.size) == (
    DIR_HEADER_SIZE, COMPONENT_ENTRY_SIZE, AREA_ENTRY_SIZE, CALL_ENTRY_SIZE, VIOLATION_ENTRY_SIZE)


@dataclass(frozen=True)
class Component:
    index: int
    name: str
    kind: int
    status: int
    reason: int
    first_area: int
    area_count: int
    flags: int
    level: int
    table_generation: int
    estimate_bytes: int
    dumped_bytes: int
    failure_rv: int  # signed
    staging_bytes: int
    failure_vaddr: int
    failure_handle: int
    global_buffer_bytes: int

    @property
    def kind_name(self) -> str:
        return enum_name(ComponentKind, self.kind)

    @property
    def status_name(self) -> str:
        return enum_name(ComponentStatus, self.status)

    @property
    def flag_names(self) -> list[str]:
        return flag_names(ComponentFlag, self.flags)

    def has(self, flag: ComponentFlag) -> bool:
        return bool(self.flags & flag)

    @property
    def area_range(self) -> range:
        return range(self.first_area, self.first_area + self.area_count)


@dataclass(frozen=True)
class Area:
    index: int
    name: str
    phys_addr: int
    length: int
    disk_offset: int
    component: int
    flags: int
    stored_bytes: int  # the bytes it takes in the body before its padding (version 3: its length)

    @property
    def staged(self) -> bool:
        return bool(self.flags & AreaFlag.STAGED)

    @property
    def volatile(self) -> bool:
        """Not comparable with the crash-instant snapshot: VOLATILE, or STAGED (volatile too)."""
        return bool(self.flags & (AreaFlag.VOLATILE | AreaFlag.STAGED))

    @property
    def flag_names(self) -> list[str]:
        return flag_names(AreaFlag, self.flags)

    @property
    def padded_length(self) -> int:
        """The bytes it takes in the body: its stored bytes rounded up to a page."""
        return round_up(self.stored_bytes, PAGE)


@dataclass(frozen=True)
class CallRecord:
    index: int
    component: int
    op: int
    generation: int
    outcome: int
    entries: int
    level: int
    value: int  # signed

    @property
    def op_name(self) -> str:
        return enum_name(CallOp, self.op)

    @property
    def outcome_name(self) -> str:
        return enum_name(CallOutcome, self.outcome)


@dataclass(frozen=True)
class Violation:
    index: int
    address: int
    rip: int
    error_code: int
    component: int  # NO_COMPONENT: the facility or a driver
    op: int
    generation: int

    @property
    def op_name(self) -> str:
        return enum_name(CallOp, self.op) if self.op else "none"


@dataclass
class Directory:
    header: DirectoryHeader | None = None
    components: list[Component] = field(default_factory=list)
    areas: list[Area] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)


@dataclass(frozen=True)
class Context:
    """What the dump header says that the directory must agree with."""

    offset: int  # partition offset of the directory slot
    dir_bytes: int
    component_count: int
    area_count: int
    level: int
    generation: int
    estimate_bytes: int
    body_offset: int
    body_end: int  # body_offset + body_written: the listed areas end exactly here
    complete: bool
    version: int = 4  # 3: the area entries' bytes 56..63 are reserved (zero), stored_bytes = length
    compression: int = 0  # 1: areas hold LZ4 frames (stored_bytes their size)


Note = Callable[[str, "int | None"], None]


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def parse_header(raw: bytes) -> DirectoryHeader:
    return DirectoryHeader(*_DIR_HEADER.unpack_from(raw))


def check_header(dh: DirectoryHeader, ctx: Context, note: Note) -> bool:
    """The directory header against the dump header and the slot. False when the records
    cannot be located (then they are not parsed)."""
    at = ctx.offset
    if dh.magic != DIR_MAGIC:
        note(f"directory: magic {dh.magic!r}, expected {DIR_MAGIC!r}", at)
    if (dh.component_count, dh.area_count) != (ctx.component_count, ctx.area_count):
        note(f"directory: counts {dh.component_count} components / {dh.area_count} areas, header says "
             f"{ctx.component_count} / {ctx.area_count}", at + 8)
    sizes = (dh.component_entry_size, dh.area_entry_size, dh.call_entry_size, dh.violation_entry_size)
    expected = (COMPONENT_ENTRY_SIZE, AREA_ENTRY_SIZE, CALL_ENTRY_SIZE, VIOLATION_ENTRY_SIZE)
    sizes_ok = sizes == expected
    if not sizes_ok:
        note("directory: entry sizes {} / {} / {} / {} (component / area / call / violation), expected "
             "128 / 64 / 24 / 32".format(*sizes), at + 16)
    for name, value, header_value, off in (
        ("level", dh.level, ctx.level, 40),
        ("generation", dh.generation, ctx.generation, 44),
        ("estimate_bytes", dh.estimate_bytes, ctx.estimate_bytes, 48),
    ):
        if value != header_value:
            note(f"directory: {name} {value}, header says {header_value}", at + off)
    if dh.zero:
        note("directory: header bytes 56..63 not zero", at + 56)
    if dh.entries > MAX_DIRECTORY_ENTRIES:
        note(f"directory: {dh.component_count} components, {dh.area_count} areas, {dh.call_count} calls and "
             f"{dh.violation_count} violations exceed the reader's limit of {MAX_DIRECTORY_ENTRIES} records", at + 8)
        return False
    if dh.used_bytes > ctx.dir_bytes:
        note(f"directory: {dh.component_count} components, {dh.area_count} areas, {dh.call_count} calls and "
             f"{dh.violation_count} violations need {dh.used_bytes} bytes, the slot has dir_bytes "
             f"{ctx.dir_bytes}", at + 24)
        return False
    return sizes_ok and (dh.component_count, dh.area_count) == (ctx.component_count, ctx.area_count)


def parse_records(raw: bytes, dh: DirectoryHeader, ctx: Context, note: Note) -> Directory:
    """Records from raw (the first dh.used_bytes of the slot), with the rules of each single
    record (names, zero fields); rules across records are check()'s."""
    d = Directory(header=dh)
    pos = DIR_HEADER_SIZE
    for i in range(dh.component_count):
        v = _COMPONENT.unpack_from(raw, pos)
        at = ctx.offset + pos
        name = _name(v[0], f"component {i}", at, note)
        if v[-1] != bytes(16):
            note(f"component {i} ({name}): bytes 112..127 not zero", at + 112)
        d.components.append(Component(i, name, *v[1:-1]))
        pos += COMPONENT_ENTRY_SIZE
    for i in range(dh.area_count):
        name_raw, phys, length, disk_offset, comp, flags, stored = _AREA.unpack_from(raw, pos)
        at = ctx.offset + pos
        name = _name(name_raw, f"area {i}", at, note)
        if ctx.version == 3:  # stored_bytes is version 4's: the bytes are reserved, the data stored as it is
            if stored:
                note(f"area {i} ({name}): bytes 56..63 not zero (reserved in version 3)", at + 56)
            stored = length
        d.areas.append(Area(i, name, phys, length, disk_offset, comp, flags, stored))
        pos += AREA_ENTRY_SIZE
    for i in range(dh.call_count):
        comp, op, gen, outcome, zero, entries, level, value = _CALL.unpack_from(raw, pos)
        if zero:
            note(f"call {i}: byte 7 not zero", ctx.offset + pos + 7)
        d.calls.append(CallRecord(i, comp, op, gen, outcome, entries, level, value))
        pos += CALL_ENTRY_SIZE
    for i in range(dh.violation_count):
        d.violations.append(Violation(i, *_VIOLATION.unpack_from(raw, pos)))
        pos += VIOLATION_ENTRY_SIZE
    return d


def _name(raw: bytes, what: str, at: int, note: Note) -> str:
    text = raw.split(b"\0", 1)[0]
    if any(c >= 0x80 for c in raw) or raw[len(text):] != bytes(len(raw) - len(text)):
        note(f"directory: {what} name {raw!r} is not NUL-padded ASCII", at)
    return text.decode("ascii", "replace")


# --------------------------------------------------------------------------------------------
# Rules across records
# --------------------------------------------------------------------------------------------


def partial_area(d: Directory, complete: bool) -> int | None:
    """The area that may be listed only as far as it was written (a partial area): the last
    area of the PARTIAL component, in a dump not COMPLETE; None when there is none."""
    if complete:
        return None
    for c in d.components:
        if c.status == ComponentStatus.PARTIAL and c.area_count and c.first_area + c.area_count <= len(d.areas):
            return c.first_area + c.area_count - 1
    return None


def check(d: Directory, ctx: Context, note: Note) -> None:
    """Every rule of the page that ties records to each other and to the header."""
    ranges_ok = _check_area_ranges(d, note)
    for c in d.components:
        _check_component(c, d, ctx, ranges_ok, note)
    _check_crash_record(d, ranges_ok, note)
    _check_areas(d, ctx, note)
    _check_calls(d, ctx, note)
    _check_violations(d, ctx, note)


def _check_area_ranges(d: Directory, note: Note) -> bool:
    """Components list their areas contiguously, in component order (first_area is a
    component's position when it has none). True when every range is where it should be."""
    ac = len(d.areas)
    claimed = sum(c.area_count for c in d.components)
    if claimed > ac:
        note(f"directory: components claim {claimed} area entries, there are {ac}", None)
        return False
    ok = True
    position = 0
    for c in d.components:
        if c.first_area != position:
            note(f"component {c.index} ({c.name}): first_area {c.first_area}, expected {position} "
                 f"(areas are listed in component order)", None)
            ok = False
        position += c.area_count
    if claimed != ac:
        note(f"directory: components claim {claimed} area entries, there are {ac}", None)
        ok = False
    return ok


def _component_note(c: Component, note: Note):
    return lambda msg: note(f"component {c.index} ({c.name}): {msg}", None)


def _check_component(c: Component, d: Directory, ctx: Context, ranges_ok: bool, note: Note) -> None:
    bad = _component_note(c, note)
    S, F = ComponentStatus, ComponentFlag
    if c.kind not in ComponentKind._value2member_map_:
        bad(f"kind {c.kind} unknown")
    if c.status not in S._value2member_map_:
        bad(f"status {c.status} unknown")
    elif c.status in (S.FAILED, S.EXCLUDED):
        if c.reason == 0:
            bad(f"{c.status_name} with reason 0 (an errno is required)")
    elif c.reason:
        bad(f"{c.status_name} with reason {c.reason} (only FAILED and EXCLUDED have one)")
    if c.status in (S.EXCLUDED, S.DISABLED, S.PENDING) and c.area_count:
        bad(f"{c.status_name} but has {c.area_count} areas (a component being collected is listed PARTIAL "
            f"with its areas so far)" if c.status == S.PENDING else
            f"{c.status_name} but has {c.area_count} areas")
    if c.status == S.PENDING and ctx.complete:
        bad("PENDING in a COMPLETE dump (every component is reached)")
    if c.status == S.PARTIAL and ctx.complete:
        bad("PARTIAL in a COMPLETE dump (every component's collection ended)")
    if c.status == S.DISABLED and not c.has(F.RAS):
        bad("DISABLED but not a RAS component (only RAS components are switched off)")
    _check_component_flags(c, ctx, bad)
    _check_component_values(c, ctx, bad)
    if ranges_ok:
        areas = d.areas[c.first_area:c.first_area + c.area_count]
        for a in areas:
            if a.component != c.index:
                bad(f"its area {a.index} ({a.name}) names component {a.component}")
        dumped = sum(a.length for a in areas)
        if c.dumped_bytes != dumped:
            bad(f"dumped_bytes {c.dumped_bytes}, its areas hold {dumped}")


def _check_component_flags(c: Component, ctx: Context, bad) -> None:
    F, S = ComponentFlag, ComponentStatus
    if c.flags & ~COMPONENT_FLAGS_DEFINED:
        bad(f"flags 0x{c.flags:x}: bits 0x{c.flags & ~COMPONENT_FLAGS_DEFINED:x} undefined")
    if c.flags & _RAS_ONLY and not c.has(F.RAS):
        bad(f"flags {'|'.join(flag_names(F, c.flags & _RAS_ONLY))} on a dmp_ctl component (RAS only)")
    if c.has(F.GLOBAL_BUFFER) and c.has(F.RAS):
        bad("GLOBAL_BUFFER on a RAS component (a DMPCTL_ADD request)")
    if c.has(F.PRIVATE_STAGING) and c.has(F.SHARED_STAGING):
        bad("both PRIVATE_STAGING and SHARED_STAGING")
    if c.has(F.GLOBAL_BUFFER) != (c.global_buffer_bytes != 0):
        bad(f"GLOBAL_BUFFER flag and global_buffer_bytes {c.global_buffer_bytes} disagree")
    if bool(c.flags & _STAGING) != (c.staging_bytes != 0):
        bad(f"staging flags and staging_bytes {c.staging_bytes} disagree")
    if c.staging_bytes > MAX_STAGING_BYTES:
        bad(f"staging_bytes {c.staging_bytes} over 32 MB")
    if c.has(F.RTNFAILURE) and c.status != S.FAILED:
        bad(f"RTNFAILURE but {c.status_name} (a DMPCTL_RTNFAILURE report makes it FAILED)")
    if not c.has(F.RTNFAILURE) and (c.failure_rv or c.failure_vaddr or c.failure_handle):
        bad("failure_rv / failure_vaddr / failure_handle set without RTNFAILURE")
    if c.has(F.PIN_VIOLATION) and c.status != S.FAILED:
        bad(f"PIN_VIOLATION but {c.status_name} (a pinning violation makes it FAILED)")
    if c.has(F.ENDED_EARLY) and not c.has(F.UNLIMITED):
        bad("ENDED_EARLY without UNLIMITED (only an AGAIN can end its data)")
    if c.has(F.UNLIMITED) and not c.has(F.CALL_ON_RESTART):
        bad("UNLIMITED without CALL_ON_RESTART (assumed for an unlimited table)")
    if c.flags & _STAGING and not c.has(F.CALL_ON_RESTART):
        bad("staging space without CALL_ON_RESTART (assumed for staging)")
    if c.has(F.TABLE_REUSED):
        if ctx.generation < 2:
            bad("TABLE_REUSED in a generation 1 dump (only a restart reuses tables)")
        if c.has(F.CALL_ON_RESTART):
            bad("TABLE_REUSED with CALL_ON_RESTART (it would have been called again)")
        if c.table_generation != 1:
            bad(f"TABLE_REUSED with table_generation {c.table_generation} (the table is generation 1's)")


def _check_component_values(c: Component, ctx: Context, bad) -> None:
    S = ComponentStatus
    # level: a RAS component's detail level (0..9) in every status but DISABLED, where it was
    # never called and has none (0); a dmp_ctl routine has no level (0).
    if c.level > MAX_LEVEL:
        bad(f"level {c.level} (0..9)")
    if c.level and not c.has(ComponentFlag.RAS):
        bad(f"level {c.level} on a dmp_ctl component (0 unless RAS)")
    if c.status == S.DISABLED and (c.estimate_bytes or c.level):
        bad("DISABLED but has an estimate or a level (it is never called)")
    # table_generation: the generation whose calls produced its areas; 0 exactly when it has none.
    if c.table_generation > ctx.generation:
        bad(f"table_generation {c.table_generation}, the dump is generation {ctx.generation}")
    if c.area_count and not c.table_generation:
        bad(f"{c.area_count} areas but table_generation 0")
    elif not c.area_count and c.table_generation:
        bad(f"no areas but table_generation {c.table_generation} (0 when it lists no areas)")


def _check_crash_record(d: Directory, ranges_ok: bool, note: Note) -> None:
    records = [c for c in d.components if c.kind == ComponentKind.CRASH_RECORD]
    if len(records) > 1:
        note(f"directory: {len(records)} CRASH_RECORD components", None)
    for c in records:
        if c.status != ComponentStatus.DUMPED or not ranges_ok:
            continue
        bad = _component_note(c, note)
        if c.area_count != 1 or d.areas[c.first_area].length != CRASH_RECORD_BYTES:
            bad(f"a crash record is one area of {CRASH_RECORD_BYTES} bytes")
        elif not d.areas[c.first_area].flags & AreaFlag.VOLATILE:
            bad("the crash record area is not marked VOLATILE")


def _check_areas(d: Directory, ctx: Context, note: Note) -> None:
    """Areas back to back from body_offset, in directory order, each taking its stored bytes
    rounded up to a page, ending at body_written."""
    comps = d.components
    expected = ctx.body_offset
    cut = partial_area(d, ctx.complete)
    for a in d.areas:
        bad = lambda msg: note(f"area {a.index} ({a.name}): {msg}", a.disk_offset)
        if a.component >= len(comps):
            bad(f"component {a.component} does not exist")
        elif a.index not in comps[a.component].area_range:
            c = comps[a.component]
            bad(f"outside the area range of its component {c.index} ({c.name})")
        elif a.staged and not comps[a.component].flags & _STAGED_SOURCES:
            c = comps[a.component]
            bad(f"STAGED, but component {c.index} ({c.name}) has no global buffer or staging space")
        if a.flags & ~AREA_FLAGS_DEFINED:
            bad(f"flags 0x{a.flags:x} (bits 0 VOLATILE and 1 STAGED are defined)")
        elif a.flags & AreaFlag.STAGED and not a.flags & AreaFlag.VOLATILE:
            bad("STAGED without VOLATILE (staged data was not in memory at the crash)")
        _check_stored(a, ctx, a.index == cut, bad)
        if a.phys_addr + a.length > 1 << 64:
            bad("phys_addr + length overflows 64 bits")
        if a.disk_offset != expected:
            bad(f"disk_offset 0x{a.disk_offset:x}, expected 0x{expected:x} (areas are back to back)")
            return
        expected = a.disk_offset + a.padded_length
        if expected > ctx.body_end:
            bad(f"ends at 0x{expected:x}, beyond the body written (to 0x{ctx.body_end:x})")
            return
    if expected != ctx.body_end:
        what = "body_bytes" if ctx.complete else "body_written"
        note(f"areas fill {expected - ctx.body_offset} body bytes, header says {what} "
             f"{ctx.body_end - ctx.body_offset}", expected)


def _check_stored(a: Area, ctx: Context, may_be_cut: bool, bad) -> None:
    """length and stored_bytes: equal without compression; a compressed area's frames are
    checked against them when the body is read (harness/dumpbed/reader/frames.py). Only a
    compressed partial area may list no data yet (none of its frames whole), never no bytes."""
    if ctx.compression == 0 and a.stored_bytes != a.length:
        bad(f"stored_bytes {a.stored_bytes} != length {a.length} (the data is stored as it is)")
    if a.length == 0 and not (ctx.compression == 1 and may_be_cut and a.stored_bytes):
        bad("length 0 (an entry of length 0 is a bad table)")


def _check_calls(d: Directory, ctx: Context, note: Note) -> None:
    comps = d.components
    last_generation = 1
    for r in d.calls:
        bad = lambda msg: note(f"call {r.index} ({r.op_name} of component {r.component}): {msg}", None)
        if r.component >= len(comps):
            bad(f"component {r.component} does not exist")
        _check_call_codes(r, bad)
        if not 1 <= r.generation <= ctx.generation:
            bad(f"generation {r.generation}, the dump is generation {ctx.generation}")
        elif r.generation < last_generation:
            bad(f"generation {r.generation} after a call of generation {last_generation} (calls are in order)")
        last_generation = max(last_generation, r.generation)


def _check_call_codes(r: CallRecord, bad) -> None:
    O = CallOutcome
    if r.op not in CallOp._value2member_map_:
        bad(f"op {r.op} unknown")
    if r.outcome not in O._value2member_map_:
        bad(f"outcome {r.outcome} unknown")
    elif r.op in CallOp._value2member_map_ and r.outcome not in _OUTCOMES[CallOp(r.op)]:
        bad(f"outcome {r.outcome_name} for a {r.op_name} call")
    if r.outcome != O.TABLE and r.entries:
        bad(f"entries {r.entries} with outcome {r.outcome_name} (only TABLE returns entries)")
    if r.outcome == O.NEGATIVE and r.value >= 0:
        bad(f"NEGATIVE with value {r.value}")
    elif r.outcome == O.VALUE and r.value < 0:
        bad(f"estimate {r.value} is negative")
    elif r.outcome not in (O.NEGATIVE, O.VALUE) and r.value:
        bad(f"value {r.value} with outcome {r.outcome_name} (0 unless VALUE or NEGATIVE)")
    if r.level > MAX_LEVEL:
        bad(f"level {r.level} (0..9)")


def _check_violations(d: Directory, ctx: Context, note: Note) -> None:
    comps = d.components
    for v in d.violations:
        bad = lambda msg: note(f"violation {v.index} (address 0x{v.address:x}): {msg}", None)
        if not 1 <= v.generation <= ctx.generation:
            bad(f"generation {v.generation}, the dump is generation {ctx.generation}")
        if v.component == NO_COMPONENT:
            if v.op:
                bad(f"op {v.op} without a component (0 for the facility or a driver)")
            continue
        if v.component >= len(comps):
            bad(f"component {v.component} does not exist")
            continue
        if v.op == 0 and v.generation != 2:
            bad(f"op 0 against component {v.component} in generation {v.generation} (only a fault while "
                f"a saved table is replayed on restart has no call)")
        elif v.op and v.op not in CallOp._value2member_map_:
            bad(f"op {v.op} unknown")
