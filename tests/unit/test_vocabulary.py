"""One vocabulary: the format's constants and enums, the guest's error numbers and the record
sizes exist once on the host, and each is held here to the guest's own header
(guest/dump/format.h, guest/lib/errno.h). A doctored header shows each comparison failing."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dumpbed.guest_interface import Errno
from dumpbed.reader import dumpdir, dumpfmt, frames

GUEST = Path(__file__).resolve().parents[2] / "guest"
FORMAT_H = GUEST / "dump" / "format.h"
ERRNO_H = GUEST / "lib" / "errno.h"

# A #define prefix of format.h and the host enum whose members it must spell, one for one.
ENUMS = {
    "DUMP_STATUS_": dumpfmt.HeaderStatus,
    "DUMP_ROLE_": dumpfmt.DeviceRole,
    "CRASH_REASON_": dumpfmt.CrashReason,
    "COMPONENT_KIND_": dumpdir.ComponentKind,
    "COMPONENT_FLAG_": dumpdir.ComponentFlag,
    "AREA_FLAG_": dumpdir.AreaFlag,
    "CALL_OP_": dumpdir.CallOp,
    "CALL_OUTCOME_": dumpdir.CallOutcome,
}
# The component statuses are COMPONENT_<STATUS> (no infix): those of its prefix that are no kind or flag.
STATUS_PREFIX = "COMPONENT_"
CONSTANTS = {
    "DUMP_PAGE": dumpfmt.PAGE,
    "DUMP_VERSION": dumpfmt.VERSION,
    "DUMP_HEADER_SIZE": dumpfmt.HEADER_SIZE,
    "DUMP_LEADER_OFFSET": dumpfmt.LEADER_OFFSET,
    "DUMP_DIR_OFFSET": dumpfmt.DIR_OFFSET,
    "DUMP_NREGS": len(dumpfmt.REGISTER_NAMES),
    "DUMP_CHUNK_SIZE_MIN": dumpfmt.WRITER_CHUNK_SIZE,
    "DUMP_CRC_TABLE_MAX": dumpfmt.WRITER_TABLE_LIMIT,
    "DUMP_PROGRESS_STEP": dumpfmt.CHECKPOINT_BYTES,
    "DUMP_SLOTS": len(dumpfmt.SLOTS),
    "CRASH_VECTOR_NONE": dumpfmt.NO_VECTOR,
    "VIOLATION_NO_COMPONENT": dumpdir.NO_COMPONENT,
    **{f"DUMP_COMPRESSION_{name.upper()}": value for value, name in dumpfmt.COMPRESSION_NAMES.items()},
    "DUMP_FRAME_DATA": frames.FRAME_DATA,
    "DUMP_FRAME_LZ4": frames.KIND_LZ4,
    "DUMP_FRAME_RAW": frames.KIND_RAW,
}
# sizeof(struct X) as format.h asserts it, and the host's size of the same record
SIZES = {
    "dump_header": dumpfmt.HEADER_SIZE,
    "dump_dir_header": dumpdir.DIR_HEADER_SIZE,
    "dump_component_entry": dumpdir.COMPONENT_ENTRY_SIZE,
    "dump_area_entry": dumpdir.AREA_ENTRY_SIZE,
    "dump_frame_header": frames.FRAME_HEADER,
    "dump_call_record": dumpdir.CALL_ENTRY_SIZE,
    "dump_violation_record": dumpdir.VIOLATION_ENTRY_SIZE,
    "dump_end_marker": dumpfmt.PAGE,
    "crash_record": dumpdir.CRASH_RECORD_BYTES,
}


def c_value(text: str) -> int:
    """A #define's value: integers with u/ull suffixes, parentheses, shifts and products."""
    expr = re.sub(r"/\*.*?\*/", "", text).strip()
    expr = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr)
    if not re.fullmatch(r"[\s0-9a-fA-Fx()<>*+-]+", expr):
        raise ValueError(f"not a constant expression: {text!r}")
    return int(eval(expr, {"__builtins__": {}}))  # digits and operators only, checked above


def defines(header: str) -> dict[str, int]:
    out = {}
    for name, value in re.findall(r"^#define[ \t]+(\w+)[ \t]+(.+?)[ \t]*$", header, re.M):
        try:
            out[name] = c_value(value)
        except (ValueError, SyntaxError, NameError):
            continue  # a macro with arguments or a continued line
    return out


def mismatches(format_h: str, errno_h: str) -> list[str]:
    found = defines(format_h)
    problems = []
    for name, host in CONSTANTS.items():
        if found.get(name) != host:
            problems.append(f"{name}: guest {found.get(name)}, host {host}")
    statuses = {n[len(STATUS_PREFIX):]: v for n, v in found.items() if n.startswith(STATUS_PREFIX)
                and not any(n.startswith(p) for p in ENUMS)}
    for prefix, enum in [*ENUMS.items(), (STATUS_PREFIX, dumpdir.ComponentStatus)]:
        guest = statuses if enum is dumpdir.ComponentStatus else \
            {n[len(prefix):]: v for n, v in found.items() if n.startswith(prefix)}
        host = {m.name: int(m.value) for m in enum}
        if guest != host:
            problems.append(f"{prefix}*: guest {guest}, host {enum.__name__} {host}")
    regs = re.search(r"enum dump_reg \{(.*?)\};", format_h, re.S)
    names = [r.strip()[4:].lower() for r in regs.group(1).split(",") if r.strip()] if regs else []
    host_regs = [r if r != "reserved" else "reserved31" for r in dumpfmt.REGISTER_NAMES]
    if names != host_regs:
        problems.append(f"enum dump_reg {names} against REGISTER_NAMES {host_regs}")
    m = re.search(r"_Static_assert\(DUMP_DIR_BYTES == (\d+)", format_h)
    if not m or int(m.group(1)) != dumpfmt.WRITER_DIR_BYTES:
        problems.append(f"DUMP_DIR_BYTES: guest {m and m.group(1)}, host {dumpfmt.WRITER_DIR_BYTES}")
    for struct_name, host in SIZES.items():
        m = re.search(rf"sizeof\(struct {struct_name}\) == (\d+)", format_h)
        if not m or int(m.group(1)) != host:
            problems.append(f"sizeof(struct {struct_name}): guest {m and m.group(1)}, host {host}")
    errnos = defines(errno_h)
    if errnos != {e.name: int(e) for e in Errno}:
        problems.append(f"errno.h {errnos} against Errno {dict((e.name, int(e)) for e in Errno)}")
    return problems


def test_the_host_speaks_the_guests_headers():
    assert mismatches(FORMAT_H.read_text(), ERRNO_H.read_text()) == []


@pytest.mark.parametrize("old,new,what", [
    (f"#define DUMP_VERSION\t\t{dumpfmt.VERSION}u", f"#define DUMP_VERSION\t\t{dumpfmt.VERSION + 1}u", "DUMP_VERSION"),
    ("#define DUMP_FRAME_RAW\t\t2u", "#define DUMP_FRAME_RAW\t\t3u", "DUMP_FRAME_RAW"),
    ("#define DUMP_COMPRESSION_LZ4\t1u", "#define DUMP_COMPRESSION_LZ4\t2u", "DUMP_COMPRESSION_LZ4"),
    ("#define COMPONENT_PARTIAL\t6u", "#define COMPONENT_PARTIAL\t7u", "COMPONENT_*"),
    ("#define CALL_OUTCOME_BAD\t7u", "#define CALL_OUTCOME_BAD\t7u\n#define CALL_OUTCOME_NEW\t8u", "CALL_OUTCOME_*"),
    ("REG_CR3, REG_CR4", "REG_CR4, REG_CR3", "enum dump_reg"),
    ("sizeof(struct dump_area_entry) == 64", "sizeof(struct dump_area_entry) == 72", "dump_area_entry"),
    ("#define ENOSPC\t\t28", "#define ENOSPC\t\t29", "errno.h"),
    ("DUMP_DIR_BYTES == 98304", "DUMP_DIR_BYTES == 102400", "DUMP_DIR_BYTES"),
])
def test_a_header_that_drifts_is_caught(old, new, what):
    format_h, errno_h = FORMAT_H.read_text(), ERRNO_H.read_text()
    assert old in format_h + errno_h, old
    format_h, errno_h = format_h.replace(old, new), errno_h.replace(old, new)
    problems = mismatches(format_h, errno_h)
    assert any(what in p for p in problems), problems
