"""The CLI's tables at 80 columns: plain lines off a terminal, rich tables on one, and neither
ever splits a number or a word (harness/dumpbed/tables.py)."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from dumpbed import cli, report, tables
from dumpbed.images import gpt
from dumpbed.oracles.validate import validate_run
from dumpbed.reader import dumpfmt, show

SAMPLES = sorted((Path(__file__).parent / "report_samples").glob("*.json"))
BOX = "│┃┆┇┊┋║"


def _console(terminal: bool, width: int = 80) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=terminal, color_system=None,
                   legacy_windows=False), buffer


def _rows(text: str) -> list[list[str]]:
    """Each line's words, table borders dropped."""
    return [[w for w in re.split(rf"[\s{BOX}]+", line) if w] for line in text.splitlines()]


def _assert_report_whole(text: str, rep: dict) -> None:
    """Every check name and every word of its detail whole; every component's numbers whole,
    on a line with its name (a row is not torn apart either)."""
    rows = _rows(text)
    words = {w for row in rows for w in row}
    for check in rep["checks"]:
        assert any(row[:1] == [check["name"]] for row in rows), f"check {check['name']} split or missing"
        for word in check["detail"].split():
            assert word in words, f"{word!r} of {check['name']}'s detail is split"
    for c in rep["dump"]["components"]:
        numbers = {str(c[k]) for k in ("level", "estimate_bytes", "dumped_bytes", "areas", "calls")}
        assert any(row[:1] == [c["name"]] and numbers <= set(row) for row in rows) or all(
            any(row[:1] == [c["name"]] and n in row for row in rows) for n in numbers), \
            f"component {c['name']}: a number is split or off its row"


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_a_report_off_a_terminal_is_plain_lines(path):
    rep = json.loads(path.read_text())
    console, buffer = _console(terminal=False)
    report.render(rep, console)
    text = buffer.getvalue()
    assert not any(c in text for c in BOX + "━┏┗"), "a table border off a terminal"
    _assert_report_whole(text, rep)
    lines = text.splitlines()
    for check in rep["checks"]:  # one line a check, its whole detail on it
        result = "ok" if check["ok"] else "FAILED"
        assert any(re.fullmatch(rf"{re.escape(check['name'])} +{result} +{re.escape(check['detail'])}", line)
                   for line in lines), check["name"]
    assert re.search(r"^component +status +flags +level +estimate +dumped +areas +calls$", text, re.M)
    for c in rep["dump"]["components"]:  # the numbers right-aligned in their columns
        row = next(line for line in lines if line.split()[:1] == [c["name"]])
        assert row.rstrip().endswith(f"{c['areas']:>5}  {c['calls']:>5}")
    assert lines[-1] in ("PASS",) or lines[-1].startswith("FAIL (")


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_a_report_on_an_80_column_terminal_splits_no_number_or_word(path):
    rep = json.loads(path.read_text())
    console, buffer = _console(terminal=True)
    report.render(rep, console)
    text = buffer.getvalue()
    assert "┃ check" in text  # rich tables, still
    assert max(len(line) for line in text.splitlines()) <= 80
    _assert_report_whole(text, rep)


def test_a_wide_terminal_keeps_one_components_table():
    rep = json.loads((Path(__file__).parent / "report_samples" / "virtio-blk-complete.json").read_text())
    console, buffer = _console(terminal=True, width=160)
    report.render(rep, console)
    text = buffer.getvalue()
    assert "components (1/" not in text and re.search(r"┃ component +┃ status", text)
    _assert_report_whole(text, rep)


def test_the_timings_line_gives_qemus_start_inside_the_boot():
    """QEMU's start (its RAM preallocated) is part of the boot: said beside it, not as a time of
    its own after it."""
    rep = json.loads((Path(__file__).parent / "report_samples" / "virtio-blk-complete.json").read_text())
    rep["timings"] = {"boot": 1.54, "qemu_start": 1.31, "crash_to_dump_done": 1.18, "validate": 0.43}
    console, buffer = _console(terminal=False, width=200)
    report.render(rep, console)
    line = next(line for line in buffer.getvalue().splitlines() if line.startswith("timings "))
    assert line.startswith("timings boot 1.54s (QEMU's start 1.31s), crash_to_dump_done 1.18s, validate 0.43s")


def _show_text(image: Path, terminal: bool, width: int = 80) -> tuple[str, dumpfmt.Dump]:
    dump = dumpfmt.read(image, *gpt.find_dump_partition(image))
    console, buffer = _console(terminal, width)
    tables.print_all(console, show.renderables(dump))
    return buffer.getvalue(), dump


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "terminal"])
def test_show_splits_no_number_or_name(make_run, terminal):
    run = make_run(samples="all", generation=2)
    text, dump = _show_text(run.image, terminal)
    rows = _rows(text)
    if terminal:
        assert max(len(line) for line in text.splitlines()) <= 80
    else:
        assert not any(c in text for c in BOX)
    for a in dump.areas:  # an area's row keeps its name, address, length and offset together
        want = {a.name, f"0x{a.phys_addr:x}", str(a.length)}
        assert any(want <= set(row) for row in rows) or all(
            any(row[:1] == [str(a.index)] and w in row for row in rows) for w in want), a.name
    for c in dump.components:
        assert any(c.name in row and str(c.estimate_bytes) in row for row in rows) or all(
            any(row[:1] == [str(c.index)] and w in row for row in rows) for w in (c.name, str(c.estimate_bytes)))
        assert "|".join(c.flag_names) in {w for row in rows for w in row} or not c.flag_names


def test_dumpbed_show_to_a_pipe_prints_plain_lines(good_run, capsys, monkeypatch):
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    assert cli.main(["show", str(good_run.image)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dump: complete") and not any(c in out for c in BOX)
    assert re.search(r"^ *# +name +kind +status +reason +flags +level +table gen +areas +estimate +dumped +calls$",
                     out, re.M)


def test_dumpbed_validate_to_a_pipe_prints_plain_lines(good_run, capsys, monkeypatch):
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    assert cli.main(["validate", str(good_run.dir)]) == 0
    out = capsys.readouterr().out
    rep = report.build(good_run.dir, validate_run(good_run.dir).to_dict(), {})
    assert not any(c in out for c in BOX)
    for check in rep["checks"]:
        assert any(line.startswith(check["name"]) and line.endswith(check["detail"]) for line in out.splitlines())


# ---- tables.fit --------------------------------------------------------------------------------

def _table(*columns: tuple[str, bool], rows: list[list[str]], title: str = "t") -> Table:
    table = Table(title=title)
    for header, no_wrap in columns:
        table.add_column(header, no_wrap=no_wrap)
    for row in rows:
        table.add_row(*row)
    return table


def test_fit_keeps_a_table_that_fits():
    table = _table(("name", True), ("n", True), rows=[["alpha", "1"]])
    assert tables.fit(table, 80) == [table]


def test_fit_never_squeezes_a_column_below_its_longest_word():
    words = "a " * 30 + "incomprehensibilities " + "b " * 30
    table = _table(("name", True), ("detail", False), ("n", True), rows=[["x" * 20, words, "1234567890"]])
    # 20 + 21 + 10 cells of content and 10 of borders and padding: 61 columns at least
    (fitted,) = tables.fit(table, 61)
    assert [c.width for c in fitted.columns] == [20, 21, 10]
    console, buffer = _console(True, 61)
    console.print(fitted)
    text = buffer.getvalue()
    assert "incomprehensibilities" in text and "1234567890" in text and "x" * 20 in text
    assert max(len(line) for line in text.splitlines()) <= 61
    assert len(tables.fit(table, 60)) == 2  # one column less: split, not squeezed


def test_fit_splits_a_table_too_wide_repeating_its_first_column():
    headers = [("key", True)] + [(f"column{i}", True) for i in range(8)]
    table = _table(*headers, rows=[["k1"] + [str(10**9 + i) for i in range(8)]], title="wide")
    parts = tables.fit(table, 50)
    assert len(parts) > 1
    assert [p.title for p in parts] == [f"wide ({k}/{len(parts)})" for k in range(1, len(parts) + 1)]
    assert all(p.columns[0].header == "key" for p in parts)
    assert [c.header for p in parts for c in p.columns[1:]] == [f"column{i}" for i in range(8)]
    for part in parts:
        console, buffer = _console(True, 50)
        console.print(part)
        assert max(len(line) for line in buffer.getvalue().splitlines()) <= 50
    assert table.columns[1].width is None  # the original is left as it was


def test_fit_leaves_an_impossible_table_to_rich():
    table = _table(("key", True), ("value", True), rows=[["k" * 30, "v" * 30]])
    assert tables.fit(table, 40) == [table]


def test_plain_lines_align_and_keep_cells_whole():
    table = Table(title="t")
    table.add_column("name")
    table.add_column("bytes", justify="right")
    table.add_row("[green]a[/]", "1")
    table.add_row("longer\nname", "123456789012")
    assert tables.plain_lines(table) == ["t", "name" + " " * 16 + "bytes", "a" + " " * 23 + "1",
                                         "longer name  123456789012"]
