"""`dumpbed matrix-report` (nightly/report_cmd.py) end to end on synthetic shard directories:
merged results.json, junit.xml, the history's night, report.html, the printed regressions and
the exit status."""
from __future__ import annotations

import copy
import io
import json
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console
from test_nightly_results import make_cell, make_doc, matrix_cells

from dumpbed.errors import DumpbedError
from dumpbed.nightly import history, report_cmd, results
from dumpbed.nightly.report_cmd import matrix_report


def _shard_dirs(base, cells, n=2, night=1, with_runs=True) -> list:
    """--shard I/N of these cells, each a directory as `dumpbed matrix --shard` leaves it."""
    dirs = []
    for i in range(1, n + 1):
        mine = copy.deepcopy(cells[i - 1::n])
        d = base / f"shard-{i}"
        for c in mine:
            if c["run_dir"] and with_runs:
                (d / c["run_dir"]).mkdir(parents=True, exist_ok=True)
                (d / c["run_dir"] / "run.html").write_text("<html></html>")
        results.save(d, make_doc(mine, shard=[i, n], started=f"2026-12-{night:02d}T01:0{i}:00Z",
                                 finished=f"2026-12-{night:02d}T02:0{i}:00Z"))
        dirs.append(d)
    return dirs


def _run(out, dirs, db=None, label=None) -> tuple[int, str]:
    buffer = io.StringIO()
    status = matrix_report(out, dirs, db, label, console=Console(file=buffer, width=300))
    return status, buffer.getvalue()


def test_two_shards_end_to_end(tmp_path):
    cells = matrix_cells()
    db = tmp_path / "nightly.sqlite"
    out = tmp_path / "night"
    for night in range(1, 4):  # three good nights first
        good = [dict(c, outcome="pass", verdict="pass", failed_checks=[], dump_status="complete")
                if c["outcome"] == "fail" else c for c in cells]
        status, text = _run(tmp_path / f"n{night}", _shard_dirs(tmp_path / f"s{night}", good, night=night), db,
                            f"night {night}")
        assert status == results.EXIT_ERROR  # the error cell: not judged
        assert "0 regressions" in text
    status, text = _run(out, _shard_dirs(tmp_path / "s4", cells, night=4), db, "night 4")
    assert status == results.EXIT_FAIL

    doc = results.load(out)
    assert [c["id"] for c in doc["cells"]] == [c["id"] for c in cells]
    assert doc["shard"] is None
    assert (doc["started"], doc["finished"]) == ("2026-12-04T01:01:00Z", "2026-12-04T02:02:00Z")
    for c in doc["cells"]:
        if c["run_dir"]:
            assert (out / c["run_dir"] / "run.html").is_file()
    junit = ET.parse(out / "junit.xml").getroot()
    assert (junit.get("tests"), junit.get("failures"), junit.get("errors")) == ("10", "1", "1")
    report = (out / "report.html").read_text()
    for c in doc["cells"]:
        assert c["id"] in report
    assert "newly-failing" in report
    night = history.latest_night(db)
    assert len(history.trend(db, cells[0]["id"], "kvm1")) == 4
    (found,) = history.regressions(db, night)
    assert found["kind"] == "newly-failing" and found["cell"] == cells[8]["id"]
    lines = text.splitlines()
    assert any(line.startswith("newly-failing") and cells[8]["id"] in line for line in lines)  # plain: not a terminal
    assert lines[-1].startswith("10 cells: 8 pass, 1 fail, 1 error; "
                                "night 4: 1 regression (1 newly failing, 0 throughput)")
    assert str(out / "report.html") in lines[-1]


def test_a_throughput_regression_alone_keeps_exit_0_but_is_printed(tmp_path):
    db = tmp_path / "h.sqlite"
    cells = [make_cell(i, crash=f"c{i}", run_dir=f"cells/{i}/run") for i in range(4)]
    for night in range(1, 5):
        assert _run(tmp_path / f"n{night}", _shard_dirs(tmp_path / f"s{night}", cells, night=night), db)[0] == 0
    slow = copy.deepcopy(cells)
    slow[2]["mib_s"] = 100.0
    status, text = _run(tmp_path / "out", _shard_dirs(tmp_path / "s5", slow, night=5), db)
    assert status == results.EXIT_PASS
    assert any(line.startswith("throughput") and slow[2]["id"] in line for line in text.splitlines())
    assert "1 regression (0 newly failing, 1 throughput)" in text


def test_without_history(tmp_path):
    status, text = _run(tmp_path / "out", _shard_dirs(tmp_path, [make_cell(0)], n=1))
    assert status == 0 and "; night" not in text and text.startswith("1 cell: 1 pass, 0 fail, 0 error; report ")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"results.json", "junit.xml", "report.html"}


def test_a_missing_shard_is_said_and_not_a_pass(tmp_path):
    cells = [make_cell(i, crash=f"c{i}") for i in range(4)]
    dirs = _shard_dirs(tmp_path, cells, n=3)
    status, text = _run(tmp_path / "all", dirs)
    assert status == 0 and "missing shards" not in text  # the control: every shard there
    status, text = _run(tmp_path / "out", dirs[:1] + dirs[2:])
    assert status == results.EXIT_ERROR and "missing shards 2/3" in text


def test_bad_shards_are_one_line_errors(tmp_path):
    dirs = _shard_dirs(tmp_path, [make_cell(i, crash=f"c{i}") for i in range(2)])
    with pytest.raises(DumpbedError, match="no such file"):
        matrix_report(tmp_path / "out", dirs + [tmp_path / "nowhere"], None, None)
    other = json.loads((dirs[1] / "results.json").read_text())
    other["matrix"] = "other.toml"
    results.save(dirs[1], other)
    with pytest.raises(DumpbedError, match="matrix file"):
        matrix_report(tmp_path / "out", dirs, None, None)
    with pytest.raises(DumpbedError, match="no shard"):
        matrix_report(tmp_path / "out", [], None, None)
    assert not (tmp_path / "out").exists()  # nothing written before the inputs were all good


def test_a_bad_history_stops_before_any_file_is_written(tmp_path):
    dirs = _shard_dirs(tmp_path, [make_cell(0)], n=1)
    (tmp_path / "junk.sqlite").write_bytes(b"not sqlite" * 200)
    with pytest.raises(DumpbedError, match="history"):
        matrix_report(tmp_path / "out", dirs, tmp_path / "junk.sqlite", None)
    assert not (tmp_path / "out").exists()
    assert _run(tmp_path / "out", dirs, tmp_path / "new.sqlite")[0] == 0  # the control


def test_print_summary_as_dumpbed_matrix_calls_it(tmp_path):
    db = tmp_path / "h.sqlite"
    for k in range(1, 3):
        history.record(db, make_doc([make_cell(0)], started=f"2026-12-0{k}T01:00:00Z",
                                    finished=f"2026-12-0{k}T02:00:00Z"))
    doc = make_doc([make_cell(0, outcome="fail")], started="2026-12-05T01:00:00Z", finished="2026-12-05T02:00:00Z")
    night = history.record(db, doc)
    buffer = io.StringIO()
    found = report_cmd.print_summary(tmp_path, doc, db, night, Console(file=buffer, width=300))
    assert [r["kind"] for r in found] == ["newly-failing"]
    lines = buffer.getvalue().splitlines()
    assert lines[-1].startswith(f"1 cell: 0 pass, 1 fail, 0 error; night {night}: 1 regression")
    buffer = io.StringIO()
    assert report_cmd.print_summary(tmp_path, doc, None, None, Console(file=buffer)) == []
    assert buffer.getvalue().startswith("1 cell: 0 pass, 1 fail, 0 error; report ")
