"""report.html of a nightly matrix (docs/nightly.md): one self-contained page (styles inline,
plots inline SVG, no URL but relative links to the cells' run directories) with the regressions
first (with a history), then per disk kind the crash x fault grid coloured by outcome, the
throughput per disk kind, each cell's trend per host (with a history) and every cell's row.

The page is always written: a part that cannot be drawn (odd data, an unreadable history) is
left out and the page says why. matplotlib draws through its SVG canvas on bare Figures, as
pictures.py does: no pyplot, so no GUI backend is ever chosen."""
from __future__ import annotations

import html
import math
import os
import re
import urllib.parse
from pathlib import Path
from typing import Callable, Optional

from dumpbed.errors import DumpbedError
from dumpbed.nightly import history as history_mod
from dumpbed.nightly import results
from dumpbed.nightly.atomic import write_atomically
from dumpbed.pictures import RUN_HTML, _inline, svg_of

REPORT = "report.html"
OUTCOMES = ("pass", "fail", "error")
COLOURS = {"pass": "#2da44e", "fail": "#cf222e", "error": "#bf8700", "not-run": "#d0d7de"}
TREND_NIGHTS = 14
e = html.escape


def write(out_dir: Path, doc: dict, history: Optional[Path] = None, night: Optional[int] = None) -> Path:
    """Write out_dir/report.html; DumpbedError only when the file itself cannot be written."""
    out_dir = Path(out_dir)
    notes: list[str] = []
    parts = [_part(notes, "summary", lambda: _summary(doc))]
    if history is not None:
        night = _part(notes, "history", lambda: night if night is not None else
                      history_mod.latest_night(history, doc["matrix"], doc["started"]))
        parts.append(_part(notes, "regressions", lambda: _regressions(history, night)))
    parts.append(_part(notes, "grid", lambda: _grids(out_dir, doc)))
    parts.append(_part(notes, "throughput", lambda: _throughput(doc, notes)))
    if history is not None:
        parts.append(_part(notes, "trends", lambda: _trends(doc, history, night, notes)))
    parts.append(_part(notes, "cells", lambda: _cell_table(out_dir, doc)))
    noted = "".join(f"<li>{e(n)}</li>" for n in notes)
    page = _page(doc, "".join(p or "" for p in parts) + (f'<h2>not shown</h2><ul id="notes">{noted}</ul>\n'
                                                          if noted else ""))
    target = out_dir / REPORT
    try:
        write_atomically(target, page, private=False)
    except OSError as exc:
        raise DumpbedError(f"{target}: cannot be written ({exc.strerror or exc})") from exc
    return target


def _part(notes: list[str], name: str, make: Callable):
    try:
        return make()
    except Exception as exc:  # odd data must not cost the page: say what is missing
        notes.append(f"{name}: {type(exc).__name__}: {exc}")
        return None


# -- links --------------------------------------------------------------------------------------

def cell_href(out_dir: Path, cell: dict) -> Optional[str]:
    """The cell's run.html when it exists, else its run directory, relative to the page."""
    run_dir = cell.get("run_dir")
    if not run_dir:
        return None
    if os.path.isabs(run_dir):
        run_dir = os.path.relpath(run_dir, out_dir)
    run_dir = run_dir.rstrip("/")
    target = f"{run_dir}/{RUN_HTML}" if (out_dir / run_dir / RUN_HTML).is_file() else run_dir + "/"
    return urllib.parse.quote(target)


def _link(out_dir: Path, cell: dict, text: str, cls: str = "", title: str = "") -> str:
    href = cell_href(out_dir, cell)
    attrs = (f' class="{e(cls)}"' if cls else "") + (f' title="{e(title)}"' if title else "")
    return f'<a href="{e(href)}"{attrs}>{e(text)}</a>' if href else f"<span{attrs}>{e(text)}</span>"


def _why(cell: dict) -> str:
    if cell["outcome"] == "error":
        return cell.get("error") or "infrastructure error"
    if cell["outcome"] == "fail":
        checks = ", ".join(cell["failed_checks"]) or "no check"
        return f"{checks} failed; dump {cell['dump_status']} (expected {cell['expect']})"
    return f"dump {cell['dump_status']}" + (f", {cell['mib_s']:.1f} MiB/s" if cell.get("mib_s") is not None else "")


# -- sections -----------------------------------------------------------------------------------

def _summary(doc: dict) -> str:
    n = results.counts(doc)
    status = results.exit_status(doc)
    shard = f"shard {doc['shard'][0]}/{doc['shard'][1]}" if doc.get("shard") else "whole matrix"
    commit = f"commit {doc['commit'][:12]}" if doc.get("commit") else "no commit"
    return (f'<p id="summary">{len(doc["cells"])} cells: <span class="pass">{n["pass"]} pass</span>, '
            f'<span class="fail">{n["fail"]} fail</span>, <span class="error">{n["error"]} error</span> '
            f"(exit status {status})</p>\n<p>{e(doc['matrix'])}, {e(shard)}, {e(doc['started'])} to "
            f"{e(doc['finished'])}, {e(commit)}{', --require-kvm' if doc.get('require_kvm') else ''}</p>\n")


def _regressions(history: Path, night: Optional[int]) -> str:
    if night is None:
        return "<h2>regressions</h2><p>this night is not in the history.</p>\n"
    found = history_mod.regressions(history, night)
    if not found:
        return f'<h2>regressions</h2><p id="regressions">none (night {night})</p>\n'
    rows = "".join(f'<tr class="{"fail" if r["kind"] == "newly-failing" else "slower"}"><td>{e(r["kind"])}</td>'
                   f'<td>{e(r["cell"])}</td><td>{e(str(r["host"]))}</td><td>{e(r["detail"])}</td></tr>\n'
                   for r in found)
    return (f"<h2>regressions ({len(found)})</h2>\n<table id=\"regressions\"><tr><th>kind</th><th>cell</th>"
            f"<th>host</th><th>detail</th></tr>\n{rows}</table>\n")


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def _grids(out_dir: Path, doc: dict) -> str:
    cells = doc["cells"]
    if not cells:
        return "<h2>grid</h2><p>no cells.</p>\n"
    out = ["<h2>grid</h2>\n<p class=\"legend\">" + " ".join(
        f'<span class="mark {k}">{k.replace("-", " ")}</span>' for k in COLOURS) + "</p>\n"]
    for disk in _ordered(c["disk"] for c in cells):
        mine = [c for c in cells if c["disk"] == disk]
        crashes = _ordered(c["crash"] for c in mine)
        faults = _ordered(c["fault"] or "none" for c in mine)
        # what tells apart the cells of one square: only the keys that vary on this disk
        varying = [k for k in ("group", "memory", "accel_requested") if len({c[k] for c in mine}) > 1]
        head = "".join(f"<th>{e(f)}</th>" for f in faults)
        rows = []
        for crash in crashes:
            squares = []
            for fault in faults:
                here = [c for c in mine if c["crash"] == crash and (c["fault"] or "none") == fault]
                if not here:
                    squares.append('<td class="square"><span class="mark not-run">not run</span></td>')
                    continue
                marks = " ".join(_link(out_dir, c, "/".join(c[k] for k in varying) or c["outcome"],
                                       f"mark {c['outcome']}", f"{c['id']}: {c['outcome']}: {_why(c)}") for c in here)
                squares.append(f'<td class="square">{marks}</td>')
            rows.append(f"<tr><th>{e(crash)}</th>{''.join(squares)}</tr>")
        out.append(f'<h3>{e(disk)}</h3>\n<table class="grid" data-disk="{e(disk)}"><tr><th>crash \\ fault</th>'
                   f"{head}</tr>\n" + "\n".join(rows) + "</table>\n")
    return "".join(out)


def _cell_table(out_dir: Path, doc: dict) -> str:
    rows = []
    for c in doc["cells"]:
        rate = f"{c['mib_s']:.1f}" if c.get("mib_s") is not None else ""
        took = f"{c['duration_s']:.1f}" if c.get("duration_s") is not None else ""
        attempts = "; ".join(f"{a['host'] or 'no host'}: {a['error']}" for a in c.get("attempts") or [])
        rows.append(f'<tr class="{e(c["outcome"])}"><td>{_link(out_dir, c, c["id"])}</td><td>{e(c["outcome"])}</td>'
                    f"<td>{e(str(c['verdict']))}</td><td>{e(str(c['dump_status']))}</td><td>{e(c['expect'])}</td>"
                    f"<td>{e(', '.join(c['failed_checks']))}</td><td class=\"num\">{rate}</td>"
                    f"<td>{e(str(c['host']))}</td><td>{e(str(c['accel']))}</td><td class=\"num\">{took}</td>"
                    f"<td>{e(attempts)}</td></tr>")
    return ("<h2>cells</h2>\n<table id=\"cells\"><tr><th>cell</th><th>outcome</th><th>verdict</th><th>dump</th>"
            "<th>expected</th><th>failed checks</th><th>MiB/s</th><th>host</th><th>accel</th><th>s</th>"
            "<th>infrastructure errors</th></tr>\n" + "\n".join(rows) + "</table>\n")


# -- plots --------------------------------------------------------------------------------------

def _svg(fig, name: str) -> str:
    """The figure as an element to inline, cropped to what is drawn (pictures.svg_of). matplotlib
    numbers its ids per figure (figure_1, axes_1): each figure's get its name as a prefix,
    references with them, so that one SVG's clip path is never another's on the page."""
    prefix = re.sub(r"[^A-Za-z0-9_-]", "_", name) + "-"
    return _ID_REF.sub(lambda m: m[1] + prefix + m[2], _inline(svg_of(fig, tight=True)))


_ID_REF = re.compile(r"""(\sid="|url\(#|href="#)([^")]+)""")


def _throughput(doc: dict, notes: list[str]) -> str:
    from matplotlib.figure import Figure

    rated = [c for c in doc["cells"] if isinstance(c.get("mib_s"), (int, float)) and math.isfinite(c["mib_s"])]
    if not rated:
        return "<h2>throughput</h2><p>no dump rate was measured.</p>\n"
    disks = _ordered(c["disk"] for c in rated)
    fig = Figure(figsize=(max(4.0, 1.2 * len(disks) + 2), 3))
    ax = fig.subplots()
    data = [[c["mib_s"] for c in rated if c["disk"] == d] for d in disks]
    ax.boxplot(data, positions=range(1, len(disks) + 1), widths=0.5, showfliers=False)
    for pos, disk in enumerate(disks, 1):
        for k, c in enumerate(c for c in rated if c["disk"] == disk):
            jitter = ((k * 0.618) % 1 - 0.5) * 0.3  # spread the points without randomness
            ax.plot(pos + jitter, c["mib_s"], "o", markersize=4, color=COLOURS[c["outcome"]], alpha=0.8)
    ax.set_xticks(range(1, len(disks) + 1), disks, fontsize=8)
    ax.set_ylabel("MiB/s", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.tick_params(labelsize=7)
    ax.set_title("dump rate per disk kind (points: cells, coloured by outcome)", fontsize=8)
    return f'<h2>throughput</h2>\n<figure id="throughput">{_svg(fig, "throughput")}</figure>\n'


def _trends(doc: dict, history: Path, night: Optional[int], notes: list[str]) -> str:
    if night is None:
        return ""
    out = ["<h2>trends</h2>\n"]
    for disk in _ordered(c["disk"] for c in doc["cells"]):
        lines = {}
        for c in doc["cells"]:
            if c["disk"] == disk and c["host"] is not None:
                lines[(c["id"], c["host"])] = history_mod.trend(history, c["id"], c["host"], TREND_NIGHTS, until=night)
        if not any(r["mib_s"] is not None for rows in lines.values() for r in rows):
            out.append(f"<h3>{e(disk)}</h3><p>no dump rate in the history.</p>\n")
            continue
        out.append(f'<h3>{e(disk)}</h3>\n<figure class="trend" data-disk="{e(disk)}">'
                   f"{_svg(_trend_figure(disk, lines), 'trend-' + disk)}</figure>\n")
    return "".join(out)


def _trend_figure(disk: str, lines: dict):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    nights = sorted({(r["time"], r["night"], r["label"]) for rows in lines.values() for r in rows})
    at = {n[1]: i for i, n in enumerate(nights)}
    shown = [(key, rows) for key, rows in lines.items() if any(r["mib_s"] is not None for r in rows)]
    fig = Figure(figsize=(9, 2.6 + 0.14 * math.ceil(len(shown) / 2)))
    ax = fig.subplots()
    for (cell, host), rows in shown:
        xs = [at[r["night"]] for r in rows]
        ys = [r["mib_s"] if r["mib_s"] is not None else float("nan") for r in rows]
        group, _, rest = cell.partition("/")
        ax.plot(xs, ys, "-o", markersize=3, linewidth=1, label=f"{rest.partition('/')[2]} ({group}) @{host}")
        bad = [(x, y) for x, y, r in zip(xs, ys, rows) if r["outcome"] == "fail" and not math.isnan(y)]
        if bad:
            ax.plot(*zip(*bad), "x", color=COLOURS["fail"], markersize=7)
    ax.xaxis.set_major_locator(MaxNLocator(8, integer=True))
    ax.set_xlim(-0.5, len(nights) - 0.5)
    ax.set_xticks([i for i in ax.get_xticks() if 0 <= i < len(nights)],
                  [nights[int(i)][2] or nights[int(i)][0][:10] for i in ax.get_xticks() if 0 <= i < len(nights)])
    ax.set_ylabel("MiB/s", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.tick_params(labelsize=7)
    ax.set_title(f"{disk}: MiB/s per night, one line per cell and host (x: a failing night)", fontsize=8)
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    return fig


# -- the page -----------------------------------------------------------------------------------

def _page(doc: dict, body: str) -> str:
    status = results.exit_status(doc) if isinstance(doc.get("cells"), list) else None
    word = {0: "PASS", 1: "FAIL", 3: "ERROR"}.get(status, "?")
    marks = "\n".join(f".mark.{k} {{ background: {v}; }} tr.{k} td:nth-child(2) {{ color: {v}; }}"
                      for k, v in COLOURS.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dumpbed matrix: {word}</title>
<style>
body {{ font-family: sans-serif; margin: 1em 2em; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; font-size: 90%; }}
td.num {{ text-align: right; }}
.mark {{ display: inline-block; color: white; padding: 1px 5px; margin: 1px; border-radius: 3px;
         font-size: 85%; text-decoration: none; }}
.mark.not-run {{ color: #57606a; }}
{marks}
.pass {{ color: #1a7f37; }} .fail {{ color: #cf222e; }} .error {{ color: #9a6700; }}
.legend .mark, .square .mark {{ color: white; }} .legend .mark.not-run, .square .mark.not-run {{ color: #57606a; }}
tr.slower td {{ background: #fff8c5; }} tr.fail td {{ background: #ffebe9; }}
figure {{ margin: 1em 0; }} figure svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>dumpbed matrix: <span class="{word.lower()}" id="status">{word}</span></h1>
{body}</body></html>
"""
