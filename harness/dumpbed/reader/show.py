"""Human view of a dump: header fields, components, calls, violations, areas, classification
(rich tables; plain lines when stdout is not a terminal: harness/dumpbed/tables.py), and the
same findings as JSON for `dumpbed show --json`."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from dumpbed import tables
from dumpbed.images import gpt
from dumpbed.reader import dumpfmt, vmcore_show

_STATUS_STYLE = {"complete": "bold green", "partial": "bold yellow", "corrupt": "bold red", "none": "bold",
                 "unsupported": "bold magenta"}


def render(dump: dumpfmt.Dump) -> Group:
    """Rich renderables for a parsed dump."""
    return Group(*renderables(dump))


def renderables(dump: dumpfmt.Dump) -> list:
    """The view's lines (Text) and tables, in order."""
    parts = []
    status = Text(f"dump: {dump.status}", style=_STATUS_STYLE.get(dump.status, ""))
    status.append(f"  {dump.reason}", style="")
    parts.append(status)
    parts.append(Text(
        f"partition at disk offset 0x{dump.partition_offset:x}, {dump.partition_bytes} bytes, "
        f"block size {dump.block_size}; image {dump.image_bytes} bytes"
    ))

    if dump.header is None and dump.leader is not None:
        # None (another dump's leader) or unsupported (another version): what the leader says of itself.
        parts.append(Text(f"leader: version {dump.leader.version}, dump_id {dump.leader.dump_id.hex()}"))
    h = dump.header
    if h is not None:
        which = "leader" if h is dump.leader else "trailer (the leader is invalid)"
        table = Table(title=f"header ({which})", show_header=False, box=None, pad_edge=False)
        table.add_column("field", style="cyan", no_wrap=True)
        table.add_column("value")
        rows = [
            ("status", h.status_name),
            ("generation", f"{h.generation} on the {h.device_role_name.lower()} device (device_role {h.device_role})"),
        ]
        if h.generation == 2 or h.restart_error or h.restart_offset:
            rows.append(("restart", f"generation 1 ended with errno {h.restart_error} at primary offset "
                                    f"{_hex(h.restart_offset)}"))
        rows += [
            ("dump_id", h.dump_id.hex()),
            ("crash", f"{h.reason_name}, vector {_num(h.crash_vector)}, error code {_hex(h.crash_error_code)}, "
                      f"fault addr {_hex(h.crash_fault_addr)}"),
            ("failure", f"{h.failure} at offset {_hex(h.failure_offset)}" if h.failure or h.failure_offset else "none"),
            ("level", h.level),
            ("estimate", f"{h.estimate_bytes} bytes"),
            ("block_size", h.block_size),
            ("partition_bytes", h.partition_bytes),
            ("slot", _slot(h)),
            ("directory", f"slots at {_hex(h.dir_offset)} and {_hex(h.dir_offset + h.dir_bytes)}, {h.dir_bytes} "
                          f"bytes each, crc {h.dir_crc:08x}"),
            ("crc table", f"slots at {_hex(h.crc_table_offset)} and {_hex(h.crc_table_offset + h.crc_table_bytes)}, "
                          f"{h.crc_table_bytes} bytes each, crc {h.crc_table_crc:08x}"),
            ("compression", f"{h.compression_name} (version {h.version})"),
            ("body", f"offset {_hex(h.body_offset)}, {h.body_bytes} bytes, written {h.body_written}"),
            ("end_offset", _hex(h.end_offset)),
            ("chunks", f"{h.nchunks} of {h.chunk_size} bytes, {h.chunks_sealed} sealed"),
            ("counts", f"{h.component_count} components, {h.area_count} areas, {len(dump.calls)} calls, "
                       f"{len(dump.violations)} violations"),
            ("transfer", f"min {h.min_transfer}, max {h.max_transfer}"),
            ("ram_bytes", h.ram_bytes),
            ("tsc", f"{h.tsc_hz} Hz, crash {h.tsc_crash}, done {h.tsc_done}" + _seconds(h)),
            ("trailer", _trailer(dump)),
            ("rip / rsp", f"{_hex(h.registers[16])} / {_hex(h.registers[7])}"),
        ]
        for name, value in rows:
            table.add_row(name, str(value))
        parts.append(table)

    if dump.components:
        parts += _component_tables(dump)
    if dump.violations:
        parts.append(_violation_table(dump))
    if dump.areas:
        parts.append(_area_table(dump))

    if dump.findings:
        parts.append(Text(f"findings ({len(dump.findings)}):", style="bold"))
        for f in dump.findings[:40]:
            parts.append(Text(f"  [{f.check}] {f.message}"))
        if len(dump.findings) > 40:
            parts.append(Text(f"  ... {len(dump.findings) - 40} more"))
    return parts


def _component_tables(dump: dumpfmt.Dump) -> list:
    table = Table(title="components")
    columns = ("#", "name", "kind", "status", "reason", "flags", "level", "table gen", "areas", "estimate",
               "dumped", "calls")
    for col in columns:  # names and numbers are never split (harness/dumpbed/tables.py)
        table.add_column(col, justify="left" if col in ("name", "kind", "status", "flags") else "right",
                         no_wrap=col not in ("kind", "status", "flags"))
    failures = []
    for c in dump.components:
        table.add_row(
            str(c.index), c.name, c.kind_name, c.status_name, str(c.reason), "|".join(c.flag_names) or "-",
            str(c.level), str(c.table_generation), f"{c.first_area}+{c.area_count}", str(c.estimate_bytes),
            str(c.dumped_bytes), str(len(dump.component_calls(c))),
        )
        if c.has(dumpfmt.ComponentFlag.RTNFAILURE):
            failures.append(f"  {c.name}: RTNFAILURE rv {c.failure_rv}, vaddr {_hex(c.failure_vaddr)}, "
                            f"handle {_hex(c.failure_handle)}")
        if c.staging_bytes or c.global_buffer_bytes:
            failures.append(f"  {c.name}: staging {c.staging_bytes} bytes, global buffer {c.global_buffer_bytes} bytes")
    out = [table] + [Text(line) for line in failures]
    if dump.calls:
        calls = Table(title="calls (in order; xN: N in a row)")
        calls.add_column("component", no_wrap=True)
        calls.add_column("calls", overflow="fold")
        for c in dump.components:
            mine = dump.component_calls(c)
            if mine:
                calls.add_row(c.name, _call_sequence(mine))
        out.append(calls)
    return out


def _call_sequence(calls: list[dumpfmt.CallRecord]) -> str:
    """START/TABLE(16) x19 ... : consecutive identical calls counted once."""
    words = []
    for r in calls:
        word = f"{r.op_name}/{r.outcome_name}"
        if r.outcome == dumpfmt.CallOutcome.TABLE:
            word += f"({r.entries})"
        elif r.outcome in (dumpfmt.CallOutcome.VALUE, dumpfmt.CallOutcome.NEGATIVE):
            word += f"={r.value}"
        word += f" g{r.generation}"
        if words and words[-1][0] == word:
            words[-1][1] += 1
        else:
            words.append([word, 1])
    return ", ".join(w if n == 1 else f"{w} x{n}" for w, n in words)


def _violation_table(dump: dumpfmt.Dump) -> Table:
    table = Table(title="pinning violations")
    for col in ("#", "address", "rip", "error code", "component", "op", "generation"):
        table.add_column(col, no_wrap=col != "error code")
    for v in dump.violations:
        if v.component == dumpfmt.NO_COMPONENT:
            who = "facility or driver"
        elif v.component < len(dump.components):
            who = dump.components[v.component].name
        else:
            who = f"#{v.component}"
        table.add_row(str(v.index), _hex(v.address), _hex(v.rip), _hex(v.error_code), who, v.op_name, str(v.generation))
    return table


def _area_table(dump: dumpfmt.Dump) -> Table:
    h = dump.header
    table = Table(title="areas")
    columns = ["#", "name", "comp", "phys addr", "length", "stored", "disk offset", "flags"]
    partial = h is not None and not h.complete
    if partial:
        columns.append("sealed")
    for col in columns:
        table.add_column(col, justify="right" if col in ("#", "comp", "length", "stored") else "left",
                         no_wrap=col != "flags")
    for a in dump.areas:
        row = [
            str(a.index), a.name, str(a.component), _hex(a.phys_addr), str(a.length), str(a.stored_bytes),
            _hex(a.disk_offset), "|".join(a.flag_names),
        ]
        if partial:
            row.append("yes" if dump.area_vouched(a) else "no")
        table.add_row(*row)
    return table


def show(image_path: str | Path, partition: tuple[int, int, int] | None = None, print_it: bool = False,
         width: int = 120, as_json: bool = False) -> str:
    """Describe the dump in an image and return the text: the rich view `width` wide, or with
    as_json the JSON of as_dict. print_it also prints it to stdout: the view as rich tables on
    a terminal, as plain lines elsewhere (harness/dumpbed/tables.py).

    partition is (byte offset, byte size, block size); without it the image's GPT is used
    (a missing GPT or dump partition raises GptError, a DumpbedError)."""
    offset, size, block = partition or gpt.find_dump_partition(image_path)
    if vmcore_show.holds_vmcore(image_path, offset):  # Linux's makedumpfile wrote it
        return _show_vmcore(vmcore_show.summary(image_path, offset, size), print_it, width, as_json)
    dump = dumpfmt.read(image_path, offset, size, block)
    if as_json:
        text = json.dumps(as_dict(dump, image_path), indent=1) + "\n"
        if print_it:
            print(text, end="")
        return text
    buffer = io.StringIO()
    Console(file=buffer, width=width, record=True, color_system=None).print(render(dump))
    text = buffer.getvalue()
    if print_it:
        tables.print_all(Console(), renderables(dump))
        page = Path(image_path).resolve().parent / "run.html"  # a run directory's (harness/dumpbed/pictures.py)
        if page.is_file():
            tables.print_line(Console(), f"pictures and checks of the run: {page}")
    return text


def _show_vmcore(found: dict, print_it: bool, width: int, as_json: bool) -> str:
    if as_json:
        text = vmcore_show.as_json(found)
        if print_it:
            print(text, end="")
        return text
    buffer = io.StringIO()
    Console(file=buffer, width=width, record=True, color_system=None).print(Group(*vmcore_show.renderables(found)))
    if print_it:
        tables.print_all(Console(), vmcore_show.renderables(found))
    return buffer.getvalue()


# Header fields as_dict leaves out: the raw bytes and the magic (the reader checked them), the
# padding; dump_id is hex, the registers by name.
_NOT_IN_JSON = {"raw", "magic", "reserved_500", "registers", "dump_id"}


def as_dict(dump: dumpfmt.Dump, image_path: str | Path | None = None) -> dict:
    """What the reader found, for machines (`dumpbed show --json`): `dump` is report.json's dump
    summary (docs/report.schema.json, $defs/dump: classification, components, areas,
    violations, the first findings), beside it the header field by field, which slot it came
    from, the trailer, every call record and the number of findings."""
    from dumpbed.oracles.validate import dump_summary  # the report's own serialisation

    h = dump.header
    header = None
    if h is not None:
        header = {f.name: getattr(h, f.name) for f in dataclasses.fields(h) if f.name not in _NOT_IN_JSON}
        header.update(dump_id=h.dump_id.hex(), status_name=h.status_name, crash_reason_name=h.reason_name,
                      device_role_name=h.device_role_name, crc_ok=h.crc_ok, registers=h.register_dict())
    return {
        "image": str(Path(image_path).resolve()) if image_path is not None else None,
        "partition": {"offset": dump.partition_offset, "bytes": dump.partition_bytes,
                      "block_size": dump.block_size},
        "dump": dump_summary(dump),
        "findings_total": len(dump.findings),
        "header_from": None if h is None else "leader" if h is dump.leader else "trailer",
        "header": header,
        "trailer": _trailer(dump),
        # an unfinished dump's areas whose every chunk the leader seals (show's "sealed" column)
        "areas_sealed": None if h is None or h.complete else [a.index for a in dump.areas if dump.area_vouched(a)],
        "call_records": [
            {"index": r.index, "component": r.component, "op": r.op_name, "outcome": r.outcome_name,
             "generation": r.generation, "entries": r.entries, "level": r.level, "value": r.value}
            for r in dump.calls
        ],
    }


def _slot(h: dumpfmt.Header) -> str:
    if h.slot == 0:
        return "0 (the first leader: no directory or table yet)"
    if h.slot in dumpfmt.SLOTS:
        return f"{h.slot} (directory at {_hex(h.dir_slot_offset)}, table at {_hex(h.table_slot_offset)})"
    return f"{h.slot} (no such slot)"


def _trailer(dump: dumpfmt.Dump) -> str:
    if dump.trailer is None:
        return "another dump's (ignored)" if dump.stale_trailer is not None else "absent"
    if dump.trailer_matches:
        return "identical"
    return f"differs ({dump.trailer.status_name})"


def _hex(value: int) -> str:
    return f"0x{value:x}"


def _num(value: int) -> str:
    return "none" if value == dumpfmt.NO_VECTOR else str(value)


def _seconds(h: dumpfmt.Header) -> str:
    if h.tsc_hz and h.tsc_done >= h.tsc_crash:
        return f" ({(h.tsc_done - h.tsc_crash) / h.tsc_hz:.3f} s)"
    return ""
