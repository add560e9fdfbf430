"""Human view of a dump: header fields, components, areas, classification (rich tables)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from harness import dumpfmt, gpt

_STATUS_STYLE = {"complete": "bold green", "partial": "bold yellow", "corrupt": "bold red", "none": "bold"}


def render(dump: dumpfmt.Dump) -> Group:
    """Rich renderables for a parsed dump."""
    parts = []
    status = Text(f"dump: {dump.status}", style=_STATUS_STYLE.get(dump.status, ""))
    status.append(f"  {dump.reason}", style="")
    parts.append(status)
    parts.append(Text(
        f"partition at disk offset 0x{dump.partition_offset:x}, {dump.partition_bytes} bytes, "
        f"block size {dump.block_size}; image {dump.image_bytes} bytes"
    ))

    h = dump.header
    if h is not None:
        which = "leader" if h is dump.leader else "trailer (the leader is invalid)"
        table = Table(title=f"header ({which})", show_header=False, box=None, pad_edge=False)
        table.add_column("field", style="cyan")
        table.add_column("value")
        rows = [
            ("status", h.status_name),
            ("generation", h.generation),
            ("dump_id", h.dump_id.hex()),
            ("crash", f"{h.reason_name}, vector {_num(h.crash_vector)}, error code {_hex(h.crash_error_code)}, "
                      f"fault addr {_hex(h.crash_fault_addr)}"),
            ("failure", f"{h.failure} at offset {_hex(h.failure_offset)}" if h.failure or h.failure_offset else "none"),
            ("block_size", h.block_size),
            ("partition_bytes", h.partition_bytes),
            ("directory", f"offset {_hex(h.dir_offset)}, {h.dir_bytes} bytes, crc {h.dir_crc:08x}"),
            ("crc table", f"offset {_hex(h.crc_table_offset)}, {h.crc_table_bytes} bytes, crc {h.crc_table_crc:08x}"),
            ("body", f"offset {_hex(h.body_offset)}, {h.body_bytes} bytes, written {h.body_written}"),
            ("end_offset", _hex(h.end_offset)),
            ("chunks", f"{h.nchunks} of {h.chunk_size} bytes"),
            ("counts", f"{h.component_count} components, {h.area_count} areas"),
            ("transfer", f"min {h.min_transfer}, max {h.max_transfer}"),
            ("ram_bytes", h.ram_bytes),
            ("tsc", f"{h.tsc_hz} Hz, crash {h.tsc_crash}, done {h.tsc_done}" + _seconds(h)),
            ("trailer", "identical" if dump.trailer_matches else ("differs" if dump.trailer else "absent")),
            ("rip / rsp", f"{_hex(h.registers[16])} / {_hex(h.registers[7])}"),
        ]
        for name, value in rows:
            table.add_row(name, str(value))
        parts.append(table)

    if dump.components:
        table = Table(title="components")
        for col in ("#", "name", "kind", "status", "reason", "areas", "bytes"):
            table.add_column(col, justify="right" if col in ("#", "reason", "areas", "bytes") else "left")
        for c in dump.components:
            areas = dump.component_areas(c)
            table.add_row(
                str(c.index), c.name, c.kind_name, c.status_name, str(c.reason),
                f"{c.first_area}+{c.area_count}", str(sum(a.length for a in areas)),
            )
        parts.append(table)

    if dump.areas:
        table = Table(title="areas")
        columns = ["#", "name", "comp", "phys addr", "length", "disk offset", "volatile"]
        partial = h is not None and h.body_written != h.body_bytes
        if partial:
            columns.append("written")
        for col in columns:
            table.add_column(col, justify="right" if col in ("#", "comp", "length") else "left")
        for a in dump.areas:
            row = [
                str(a.index), a.name, str(a.component), _hex(a.phys_addr), str(a.length),
                _hex(a.disk_offset), "yes" if a.volatile else "",
            ]
            if partial:
                row.append("yes" if dump.area_written(a) else "no")
            table.add_row(*row)
        parts.append(table)

    if dump.findings:
        parts.append(Text(f"findings ({len(dump.findings)}):", style="bold"))
        for f in dump.findings[:40]:
            parts.append(Text(f"  [{f.check}] {f.message}"))
        if len(dump.findings) > 40:
            parts.append(Text(f"  ... {len(dump.findings) - 40} more"))
    return Group(*parts)


def show(image_path: str | Path, partition: tuple[int, int, int] | None = None, print_it: bool = False,
         width: int = 120) -> str:
    """Describe the dump in an image and return the text (also printed when print_it).

    partition is (byte offset, byte size, block size); without it the image's GPT is used
    (a missing GPT or dump partition raises GptError, a DumpbedError)."""
    offset, size, block = partition or gpt.find_dump_partition(image_path)
    dump = dumpfmt.read(image_path, offset, size, block)
    buffer = io.StringIO()
    Console(file=buffer, width=width, record=True, color_system=None).print(render(dump))
    text = buffer.getvalue()
    if print_it:
        Console().print(render(dump))
    return text


def _hex(value: int) -> str:
    return f"0x{value:x}"


def _num(value: int) -> str:
    return "none" if value == dumpfmt.NO_VECTOR else str(value)


def _seconds(h: dumpfmt.Header) -> str:
    if h.tsc_hz and h.tsc_done >= h.tsc_crash:
        return f" ({(h.tsc_done - h.tsc_crash) / h.tsc_hz:.3f} s)"
    return ""
