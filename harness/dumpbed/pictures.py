"""Pictures of a run, written beside report.json (docs/artifacts.md):

    disk-map.svg        the disk's GPT and partitions, holes, the dump partition with the dump's
                        leader, directory and CRC table slots, body, end marker and trailer as
                        the leader on disk describes them, and any canary damage the report names
    write-timeline.svg  every write the devices took as disk offset over time (issue to
                        completion, from qemu-trace.log), flushes as ticks, the crash instant
                        (timeline.json) and the fault's moment (fault.json) as vertical lines
    run.html            one self-contained page: the verdict, the checks table, both SVGs inlined

`write(run_dir, report)` never raises: a picture that cannot be drawn (a missing trace, an
unreadable layout) is left out and the page says why. matplotlib is imported here only, when a
run's pictures are drawn, so the CLI starts without it.
"""
from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path
from typing import Optional

DISK_MAP = "disk-map.svg"
WRITE_TIMELINE = "write-timeline.svg"
RUN_HTML = "run.html"
# Writes and flushes drawn at most: more are thinned evenly (failed ones always kept)
MAX_WRITES = 3000
MAX_FLUSHES = 1000
# Commands taken this long before the crash are still drawn (runtime I/O the dump met)
BEFORE_CRASH_S = 0.5
MiB = 1 << 20

# SVG element ids (matplotlib gids) a reader or a test can look for
GID_CANARY = "canary-damage"
GID_CRASH = "crash-line"
GID_FAULT = "fault-line"
GID_WRITES = "writes"
GID_FAILED = "failed-writes"
GID_FLUSHES = "flushes"


def write(run_dir: Path, report: dict) -> dict:
    """Draw the run's pictures and its page into run_dir. Returns {"html", "disk_map",
    "write_timeline": path or None, "notes": [what could not be drawn and why]}."""
    run_dir = Path(run_dir)
    notes: list[str] = []
    svgs: dict[str, Optional[str]] = {DISK_MAP: None, WRITE_TIMELINE: None}
    for name, draw in ((DISK_MAP, _disk_map), (WRITE_TIMELINE, _write_timeline)):
        try:
            svg = draw(run_dir, report, notes)
        except Exception as exc:  # a picture must never fail a run
            svg = None
            notes.append(f"{name}: not drawn ({type(exc).__name__}: {exc})")
        if svg is None:
            _unlink(run_dir / name)
            continue
        try:
            (run_dir / name).write_text(svg)
            svgs[name] = svg
        except OSError as exc:
            notes.append(f"{name}: cannot be written ({exc.strerror or exc})")
    page = None
    try:
        (run_dir / RUN_HTML).write_text(page_html(report, svgs, notes))
        page = str((run_dir / RUN_HTML).resolve())
    except Exception as exc:
        notes.append(f"{RUN_HTML}: cannot be written ({exc})")
    return {"html": page,
            "disk_map": str((run_dir / DISK_MAP).resolve()) if svgs[DISK_MAP] else None,
            "write_timeline": str((run_dir / WRITE_TIMELINE).resolve()) if svgs[WRITE_TIMELINE] else None,
            "notes": notes}


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


# -- matplotlib ---------------------------------------------------------------------------------

def _figure(height: float, rows: int = 1):
    from matplotlib.figure import Figure

    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, height))
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    for ax in axes:  # few ticks: their layout is most of the drawing's time
        ax.xaxis.set_major_locator(MaxNLocator(6))
        ax.yaxis.set_major_locator(MaxNLocator(5))
    return fig, list(axes)


def svg_of(fig, *, tight: bool = False) -> str:
    """A bare Figure (no pyplot) as an SVG document: text as <text> (no embedded glyphs), fixed
    ids and no date, so small and reproducible, and every vertex drawn (no path simplification).
    tight: cropped to what is drawn (bbox_inches="tight"), as the nightly report's plots are;
    else the figure's own size, as the run's pictures are."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "dumpbed", "path.simplify": False}):
        FigureCanvasSVG(fig).print_figure(buffer, format="svg", bbox_inches="tight" if tight else None,
                                          metadata=dict.fromkeys(("Date", "Creator", "Format", "Type")))
    return buffer.getvalue()


# -- the disk map -------------------------------------------------------------------------------

def _disk_map(run_dir: Path, report: dict, notes: list[str]) -> Optional[str]:
    from dumpbed.images import layout as layout_mod

    try:
        lay = layout_mod.load(run_dir / "layout.json")
    except Exception as exc:
        notes.append(f"{DISK_MAP}: no disk map (layout.json: {exc})")
        return None
    fig, (ax_disk, ax_part) = _figure(3.6, 2)
    size, bs = lay.size_bytes, lay.block_size
    fig.suptitle(f"{lay.image}: {size / MiB:.1f} MiB, block size {bs}", fontsize=10)

    def bar(ax, start, end, color, label, scale_base=0, **kw):
        ax.broken_barh([((start - scale_base) / MiB, max(end - start, 1) / MiB)], (0, 1), facecolors=color,
                       edgecolors=kw.pop("edge", "none"), label=label, **kw)

    bar(ax_disk, 0, lay.first_usable_lba * bs, "#555555", "GPT")
    bar(ax_disk, (lay.last_usable_lba + 1) * bs, size, "#555555", None)
    dump_part = None
    for p in lay.partitions:
        start, end = lay.partition_span(p)
        is_dump = p.type_guid == layout_mod.DUMP_PARTITION_TYPE
        if is_dump:
            dump_part = (start, end)
        bar(ax_disk, start, end, "#4a90d9" if is_dump else "#b8d8b0", f"{p.name} partition", edge="black")
    for i, (start, end) in enumerate(lay.holes):
        bar(ax_disk, start, end, "white", "hole (never written)" if i == 0 else None, edge="grey", hatch="//")
    ax_disk.set_xlim(0, size / MiB)
    ax_disk.set_xlabel("disk offset (MiB)", fontsize=8)

    damage = canary_damage(report)
    if dump_part is None:
        notes.append(f"{DISK_MAP}: layout.json has no dump partition")
        ax_part.set_axis_off()
    else:
        _dump_extent(ax_part, run_dir, lay, dump_part, report, notes, bar)
    _mark_damage(ax_disk, ax_part, damage, dump_part, report)
    for ax in (ax_disk, ax_part):
        ax.set_ylim(0, 1.6)
        ax.set_yticks([])
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper center", ncol=6, fontsize=6.5, frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.subplots_adjust(hspace=0.7, top=0.88, bottom=0.14, left=0.04, right=0.98)
    return svg_of(fig)


def _dump_extent(ax, run_dir, lay, dump_part, report, notes, bar) -> None:
    """The dump partition, zoomed: what its leader says the dump holds."""
    from dumpbed.reader import dumpfmt
    from dumpbed.units import PAGE

    start, end = dump_part
    part_bytes = end - start
    ax.set_xlim(0, part_bytes / MiB)
    ax.set_xlabel("dump partition offset (MiB)", fontsize=8)
    header = None
    try:
        with open(run_dir / lay.image, "rb") as f:
            f.seek(start + dumpfmt.LEADER_OFFSET)
            raw = f.read(dumpfmt.HEADER_SIZE)
        if len(raw) == dumpfmt.HEADER_SIZE:
            h = dumpfmt.Header.parse(raw)
            header = h if h.valid else None
    except (OSError, ValueError, TypeError) as exc:
        notes.append(f"{DISK_MAP}: the leader cannot be read ({exc})")
    dump = report.get("dump") or {}
    status = dump.get("status") or "unknown"
    if header is None:
        extent = dump.get("bytes") or 0
        if extent:
            bar(ax, dumpfmt.LEADER_OFFSET, dumpfmt.LEADER_OFFSET + extent, "#f5a623", "dump extent (no valid leader)")
        ax.set_title(f"dump partition: no valid leader, dump {status}", fontsize=8)
        return
    h = header
    bar(ax, dumpfmt.LEADER_OFFSET, dumpfmt.LEADER_OFFSET + PAGE, "#d0021b", "leader")
    if h.slot and h.body_offset > dumpfmt.DIR_OFFSET:
        bar(ax, dumpfmt.DIR_OFFSET, min(h.body_offset, part_bytes), "#9013fe", "directory + CRC table slots")
    body_end = min(h.body_offset + h.body_written, part_bytes)
    if h.body_written:
        bar(ax, h.body_offset, body_end, "#7ed321", "body (written)")
    if h.body_bytes > h.body_written:
        bar(ax, body_end, min(h.body_offset + h.body_bytes, part_bytes), "#e8f5d0", "body (not written)", edge="grey")
    if h.complete and h.end_offset:
        bar(ax, h.end_offset, min(h.end_offset + PAGE, part_bytes), "#000000", "end marker")
    if h.status_name in ("COMPLETE", "FAILED"):
        bar(ax, part_bytes - lay.block_size, part_bytes, "#f5a623", "trailer")
    ax.set_title(f"dump partition: leader {h.status_name} slot {h.slot}, body {h.body_written} of "
                 f"{h.body_bytes or '?'} bytes written; dump {status}", fontsize=8)


_SECTORS = re.compile(r"\bsectors? (\d+)(?:\.\.(\d+))?")
_OFFSET = re.compile(r"disk offset 0x([0-9a-fA-F]+)")


def canary_damage(report: dict) -> Optional[list[tuple[int, int]]]:
    """Where the canary check found damage, as disk byte ranges: None when it did not fail,
    [] when it failed without saying where."""
    check = next((c for c in report.get("checks") or [] if c.get("name") == "canary"), None)
    if check is None or check.get("ok", True):
        return None
    found: set[tuple[int, int]] = set()
    for text in [check.get("detail") or ""] + list(check.get("problems") or []):
        for m in _SECTORS.finditer(text):
            first = int(m[1])
            last = int(m[2]) if m[2] else first
            found.add((first * 512, (last + 1) * 512))
        if not _SECTORS.search(text):
            for m in _OFFSET.finditer(text):
                at = int(m[1], 16)
                found.add((at, at + 1))
    return sorted(found)


def _mark_damage(ax_disk, ax_part, damage, dump_part, report) -> None:
    if damage is None:
        return
    label = "canary damage"
    if not damage:
        ax_disk.text(0.5, 1.25, "canary damaged (place not named)", transform=ax_disk.get_xaxis_transform(),
                     ha="center", color="red", fontsize=8, gid=GID_CANARY)
        return
    xs = [(s + e) / 2 / MiB for s, e in damage]
    ax_disk.plot(xs, [1.2] * len(xs), "v", color="red", markersize=6, label=label, gid=GID_CANARY)
    if dump_part is not None:
        inside = [((s + e) / 2 - dump_part[0]) / MiB for s, e in damage if dump_part[0] <= s < dump_part[1]]
        if inside:
            ax_part.plot(inside, [1.2] * len(inside), "v", color="red", markersize=6, label=label,
                         gid=GID_CANARY + "-partition")


# -- the write timeline -------------------------------------------------------------------------

def fault_moment(run_dir: Path) -> Optional[float]:
    """Seconds after the crash at which the fault hit (fault.json), or None."""
    try:
        fault = json.loads((Path(run_dir) / "fault.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(fault, dict):
        return None
    seconds = fault.get("seconds_after_crash")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        return float(seconds)
    m = re.search(r"taken at \+([0-9.]+) ms", str(fault.get("stopped_write") or ""))
    return float(m[1]) / 1000 if m else None


def _thin(items: list, limit: int) -> list:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _write_timeline(run_dir: Path, report: dict, notes: list[str]) -> Optional[str]:
    from dumpbed.capture import cmdlog
    from dumpbed.capture.writelog import crash_time

    crashed = crash_time(run_dir)
    fault_at = fault_moment(run_dir)
    block = (report.get("dump") or {}).get("block_size") or 512
    if not (run_dir / cmdlog.TRACE_FILE).is_file():
        notes.append(f"{WRITE_TIMELINE}: no {cmdlog.TRACE_FILE}: no device commands to draw")
        commands = []
    else:
        commands = cmdlog.read(run_dir, block).commands
    if crashed is None:
        notes.append(f"{WRITE_TIMELINE}: no crash instant in timeline.json: times from the first command")
    if not commands and crashed is None:
        return None
    t0 = crashed if crashed is not None else min(c.issued for c in commands)
    since = t0 - BEFORE_CRASH_S if crashed is not None else float("-inf")
    writes = [c for c in commands if c.kind == "write" and c.offset is not None and c.issued >= since]
    flushes = [c for c in commands if c.kind == "flush" and c.issued >= since]
    earlier = sum(1 for c in commands if c.issued < since)
    bad = [c for c in writes if c.completed is None or c.status]
    good = _thin([c for c in writes if not (c.completed is None or c.status)], MAX_WRITES)
    flushes_drawn = _thin(flushes, MAX_FLUSHES)

    fig, (ax,) = _figure(3.4)
    title = f"{len(writes)} writes, {len(flushes)} flushes"
    if len(good) + len(bad) < len(writes):
        title += f" ({len(good) + len(bad)} writes drawn)"
    if earlier:
        title += f"; {earlier} commands more than {BEFORE_CRASH_S} s before the crash not drawn"
    ax.set_title(title, fontsize=8)

    def path(cmds):
        xs, ys = [], []
        for c in cmds:
            end = c.end if c.end is not None else c.issued
            xs += [c.issued - t0, end - t0, float("nan")]
            ys += [c.offset / MiB, c.offset / MiB, float("nan")]
        return xs, ys

    if good:
        ax.plot(*path(good), "-", color="#1f5fa8", linewidth=2.5, solid_capstyle="round", label="write",
                gid=GID_WRITES)
    if bad:
        ax.plot(*path(bad), "-", color="red", linewidth=3, solid_capstyle="round",
                label="write failed or not completed", gid=GID_FAILED)
    if flushes_drawn:
        xs, ys = [], []
        for c in flushes_drawn:
            at = (c.end if c.end is not None else c.issued) - t0
            xs += [at, at, float("nan")]
            ys += [0, 0.06, float("nan")]
        ax.plot(xs, ys, "-", color="#444444", linewidth=0.8, transform=ax.get_xaxis_transform(),
                label="flush", gid=GID_FLUSHES)
    dump = report.get("dump") or {}
    if dump.get("partition_offset") is not None and dump.get("partition_bytes"):
        lo = dump["partition_offset"] / MiB
        ax.axhspan(lo, lo + dump["partition_bytes"] / MiB, color="#4a90d9", alpha=0.08, label="dump partition")
    if crashed is not None:
        ax.axvline(0, color="black", linestyle="--", linewidth=1, label="crash", gid=GID_CRASH)
        if fault_at is not None:
            ax.axvline(fault_at, color="red", linestyle=":", linewidth=1.2, label=f"fault (+{fault_at * 1000:.1f} ms)",
                       gid=GID_FAULT)
    elif fault_at is not None:
        notes.append(f"{WRITE_TIMELINE}: the fault's moment is relative to the crash, whose instant is unknown")
    ax.set_xlabel("seconds after the crash" if crashed is not None else "seconds after the first command",
                  fontsize=8)
    ax.set_ylabel("disk offset (MiB)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6.5, loc="upper left", frameon=False)
    fig.subplots_adjust(top=0.9, bottom=0.15, left=0.08, right=0.98)
    return svg_of(fig)


# -- the page -----------------------------------------------------------------------------------

def _inline(svg: str) -> str:
    """An SVG document as an element to inline: without its XML declaration, DOCTYPE and namespace
    declarations (HTML puts <svg> and xlink:href in their namespaces by itself), so the page names
    no URL at all."""
    if "<svg" not in svg:
        return ""
    element = svg[svg.find("<svg"):]
    tag_end = element.find(">")
    return re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", element[:tag_end]) + element[tag_end:]


def page_html(report: dict, svgs: dict, notes: list[str]) -> str:
    e = html.escape
    verdict = report.get("verdict") or "unknown"
    scenario = report.get("scenario") or {}
    what = " ".join(f"{k}={scenario[k]}" for k in ("disk", "crash", "accel", "firmware") if scenario.get(k))
    rows = "".join(
        f"<tr class=\"{'ok' if c.get('ok') else 'failed'}\"><td>{e(str(c.get('name')))}</td>"
        f"<td>{'ok' if c.get('ok') else 'FAILED'}</td><td>{e(str(c.get('detail') or ''))}</td></tr>\n"
        for c in report.get("checks") or [])
    outcome = (f"<p>outcome <b>{e(str(report.get('outcome')))}</b> (expected {e(str(report.get('expected_outcome')))})"
               + (f": {e(str(report['outcome_why']))}" if report.get("outcome_why") else "") + "</p>")
    first = f"<p>first failed check: <b>{e(str(report['first_failed']))}</b></p>" if report.get("first_failed") else ""
    problem = f"<p class=\"failed\">problem: {e(str(report['problem']))}</p>" if report.get("problem") else ""
    figures = ""
    for name, caption in ((DISK_MAP, "disk map"), (WRITE_TIMELINE, "write timeline")):
        if svgs.get(name):
            figures += f"<figure id=\"{name[:-4]}\">{_inline(svgs[name])}<figcaption>{caption} ({name})" \
                       f"</figcaption></figure>\n"
    noted = "".join(f"<li>{e(n)}</li>" for n in notes)
    noted = f"<h2>not drawn</h2><ul class=\"notes\">{noted}</ul>\n" if noted else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dumpbed run: {e(verdict)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em 2em; }}
.verdict-pass {{ color: #1a7f37; }} .verdict-fail {{ color: #c00; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; font-size: 90%; }}
tr.failed td {{ background: #fde8e8; }} .failed {{ color: #c00; }}
figure {{ margin: 1em 0; }} figure svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>dumpbed run: <span class="verdict-{e(verdict)}" id="verdict">{e(verdict.upper())}</span></h1>
<p>{e(what)}</p>
{outcome}{first}{problem}{figures}<h2>checks</h2>
<table id="checks"><tr><th>check</th><th>result</th><th>detail</th></tr>
{rows}</table>
{noted}</body></html>
"""
