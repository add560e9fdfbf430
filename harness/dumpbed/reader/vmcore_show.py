"""`dumpbed show` of a dump partition that holds what Linux's makedumpfile wrote (a
kdump-compressed or ELF vmcore: docs/vmcore-formats.md), not dumpbed's format: its
classification, header, the RAM it holds and the end of the kernel log."""
from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table
from rich.text import Text

from dumpbed.reader import vmcore
from dumpbed.reader.vmcore.dmesg import read_dmesg

SIGNATURES = (vmcore.SIGNATURE, vmcore.OLD_SIGNATURE, vmcore.ELF_MAGIC, vmcore.FLATTENED_SIGNATURE)
DMESG_LINES = 12  # the end of the kernel log: the panic and what led to it


def holds_vmcore(image_path: str | Path, offset: int) -> bool:
    """Whether the partition at `offset` starts with a vmcore's signature (makedumpfile -f writes
    the partition from its first byte; dumpbed's own dump starts with zeros before its leader)."""
    with open(image_path, "rb") as image:
        image.seek(offset)
        head = image.read(16)
    return any(head.startswith(s) for s in SIGNATURES)


def summary(image_path: str | Path, offset: int, size: int) -> dict:
    """What `dumpbed show --json` prints for a vmcore: the reader's summary, its dumped RAM as
    ranges, the header's fields and the end of the kernel log."""
    with vmcore.open(image_path, offset, size) as core:
        ranges = [[int(lo), int(hi)] for lo, hi in core.dumped_ranges()]
        log = read_dmesg(core) if core.status in ("complete", "partial") else None
        return {
            "image": str(Path(image_path).resolve()),
            "partition": {"offset": offset, "bytes": size},
            "vmcore": core.summary(),
            "header": _jsonable(vars(core.header)) if core.header is not None and hasattr(core.header, "__dict__")
            else None,
            "dumped_pfn_ranges": ranges,
            "dmesg_tail": log.last_lines(DMESG_LINES) if log is not None and log.records else [],
            "dmesg_problem": None if log is None else log.problem,
        }


def renderables(found: dict) -> list:
    core = found["vmcore"]
    status = Text(f"vmcore: {core['status']}", style={"complete": "bold green", "partial": "bold yellow"}
                  .get(core["status"], "bold red"))
    status.append(f"  {core['reason']}", style="")
    parts = [status, Text(f"format {core['format']}, partition at disk offset 0x{found['partition']['offset']:x}, "
                          f"{found['partition']['bytes']} bytes")]
    table = Table(title="vmcore", show_header=False, box=None, pad_edge=False)
    table.add_column("field", style="cyan", no_wrap=True)
    table.add_column("value")
    pages = core["dumped_pages"]
    table.add_row("kernel", str(core.get("osrelease")))
    table.add_row("page size", str(core["page_size"]))
    table.add_row("pages dumped", f"{pages} ({pages * core['page_size']} bytes) in {len(found['dumped_pfn_ranges'])} ranges")
    table.add_row("cpus (NT_PRSTATUS)", str(core["cpus"]))
    for finding in core["findings"][:5]:
        table.add_row("finding", finding)
    parts.append(table)
    if found["dmesg_tail"]:
        parts.append(Text("kernel log, last lines:", style="cyan"))
        parts += [Text("  " + line) for line in found["dmesg_tail"]]
    elif found["dmesg_problem"]:
        parts.append(Text(f"kernel log: not read ({found['dmesg_problem']})"))
    return parts


def as_json(found: dict) -> str:
    return json.dumps(found, indent=1) + "\n"


def _jsonable(fields: dict) -> dict:
    out = {}
    for key, value in fields.items():
        if key.startswith("_"):
            continue
        if isinstance(value, bytes):
            value = value.rstrip(b"\0").decode("ascii", "replace")
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
    return out
