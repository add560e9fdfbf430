"""`dumpbed matrix-report` (docs/nightly.md): the shards of one matrix into one results.json,
junit.xml and report.html, the night kept in the history, its regressions printed."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dumpbed import tables
from dumpbed.errors import DumpbedError
from dumpbed.nightly import history as history_mod
from dumpbed.nightly import htmlreport, junit, results

JUNIT = "junit.xml"


def matrix_report(out_dir: Path, shard_dirs: list[Path], history: Optional[Path], label: Optional[str],
                  console: Optional[Console] = None) -> int:
    """Merge, write and record; returns the exit status (docs/nightly.md): results.exit_status,
    and 3 instead of 0 when shards of the split are missing (their cells were never judged). A
    throughput regression alone does not change it; a newly failing cell is already a fail."""
    console = console or Console()
    if not shard_dirs:
        raise DumpbedError("matrix-report: no shard directories given")
    out_dir = Path(out_dir)
    docs = [(Path(d), results.load(d)) for d in shard_dirs]
    doc = results.merge(docs, out_dir)
    # the history first: a bad one stops the command before any file is written (and recording
    # a night again only replaces it, so a rerun after a failed write counts it once)
    night = history_mod.record(history, doc, label) if history is not None else None
    found = history_mod.regressions(history, night) if night is not None else []
    results.save(out_dir, doc)
    junit.write(out_dir / JUNIT, doc)
    htmlreport.write(out_dir, doc, history, night)

    missing = results.missing_shards(docs)
    if missing:
        tables.print_line(console, f"[bold yellow]missing shards[/] {', '.join(missing)}: their cells are not "
                                   f"in the report")
    print_summary(out_dir, doc, history, night, console, found)
    status = results.exit_status(doc)
    return results.EXIT_ERROR if missing and status == results.EXIT_PASS else status


def print_summary(out_dir: Path, doc: dict, history: Optional[Path], night: Optional[int],
                  console: Optional[Console] = None, found: Optional[list[dict]] = None) -> list[dict]:
    """The night's regressions (a line each) and a summary line; `dumpbed matrix` prints it too.
    Returns the regressions (`found` when the caller has them already)."""
    console = console or Console()
    if found is None:
        found = history_mod.regressions(history, night) if history is not None and night is not None else []
    if found:
        table = Table(title="regressions", show_header=True, header_style="bold")
        for col in ("kind", "cell", "host", "detail"):
            table.add_column(col, no_wrap=col != "detail", overflow="fold")
        for r in found:
            table.add_row(*(Text(str(x)) for x in (r["kind"], r["cell"], r["host"], r["detail"])))
        tables.print_table(console, table)
    tables.print_line(console, Text(summary_line(doc, found, night, Path(out_dir) / htmlreport.REPORT)))
    return found


def summary_line(doc: dict, found: list[dict], night: Optional[int], page: Path) -> str:
    n = results.counts(doc)
    cells = len(doc["cells"])
    line = f"{cells} cell{'s' * (cells != 1)}: {n['pass']} pass, {n['fail']} fail, {n['error']} error"
    if night is not None:
        kinds = [r["kind"] for r in found]
        line += (f"; night {night}: {len(found)} regression{'s' * (len(found) != 1)}"
                 + (f" ({kinds.count('newly-failing')} newly failing, {kinds.count('throughput')} throughput)"
                    if found else ""))
    return line + f"; report {page}"
