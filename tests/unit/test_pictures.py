"""A run's pictures (harness/dumpbed/pictures.py): disk-map.svg, write-timeline.svg and run.html,
drawn from synthetic runs (tests/support/synth.py)."""

import json
import xml.etree.ElementTree as ET

import pytest

from dumpbed import pictures
from dumpbed import report as report_mod
from dumpbed.oracles.validate import validate_run


def report_of(run_dir) -> dict:
    validation = validate_run(run_dir).to_dict()
    scenario = json.loads((run_dir / "scenario.json").read_text())
    report = report_mod.build(run_dir, validation, {}, scenario=scenario)
    report_mod.save(report, run_dir)
    return report


def ids(svg_path) -> set[str]:
    """The ids of a well-formed SVG's elements (ET.parse raises on a malformed one)."""
    root = ET.parse(svg_path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return {el.get("id") for el in root.iter() if el.get("id")}


def test_files_exist_and_are_well_formed(good_run):
    report = report_of(good_run.dir)
    assert report["verdict"] == "pass"
    out = pictures.write(good_run.dir, report)
    assert out["notes"] == []
    for name in (pictures.DISK_MAP, pictures.WRITE_TIMELINE, pictures.RUN_HTML):
        assert (good_run.dir / name).is_file(), name
    assert out["html"] == str((good_run.dir / pictures.RUN_HTML).resolve())
    timeline = ids(good_run.dir / pictures.WRITE_TIMELINE)
    assert {pictures.GID_WRITES, pictures.GID_FLUSHES, pictures.GID_CRASH} <= timeline
    assert pictures.GID_FAULT not in timeline  # no fault.json
    assert pictures.GID_FAILED not in timeline
    disk_map = (good_run.dir / pictures.DISK_MAP).read_text()
    assert pictures.GID_CANARY not in ids(good_run.dir / pictures.DISK_MAP)
    for label in ("GPT", "leader", "body (written)", "end marker", "trailer", "dumpbed-dump partition"):
        assert f">{label}<" in disk_map, label  # svg.fonttype none: labels are <text>
    assert "<font" not in disk_map and "glyph" not in disk_map

    page = (good_run.dir / pictures.RUN_HTML).read_text()
    assert page.count("<svg") == 2 and page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert 'id="verdict">PASS<' in page
    table = page[page.index('<table id="checks">'):page.index("</table>")]
    for check in report["checks"]:
        assert f"<td>{check['name']}</td><td>ok</td>" in table
    # The inlined SVGs are well-formed too, once HTML's implied namespace is given back
    for start in (i for i in range(len(page)) if page.startswith("<svg", i)):
        element = page[start:page.index("</svg>", start) + 6]
        ET.fromstring(element.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" '
                                               'xmlns:xlink="http://www.w3.org/1999/xlink" ', 1))


def test_canary_damage_is_marked(good_run):
    run = good_run
    sector = run.layout.partitions[0].first_lba * run.layout.block_size // 512 + 3  # the data partition
    run.flip(sector * 512 + 17)
    report = report_of(run.dir)
    canary = next(c for c in report["checks"] if c["name"] == "canary")
    assert not canary["ok"]
    assert pictures.canary_damage(report) == [(sector * 512, sector * 512 + 512)]
    pictures.write(run.dir, report)
    assert pictures.GID_CANARY in ids(run.dir / pictures.DISK_MAP)
    page = (run.dir / pictures.RUN_HTML).read_text()
    assert 'id="verdict">FAIL<' in page and "<td>canary</td><td>FAILED</td>" in page


def test_canary_damage_places():
    def report(ok, detail, problems=()):
        return {"checks": [{"name": "canary", "ok": ok, "detail": detail, "problems": list(problems)}]}

    assert pictures.canary_damage(report(True, "GPT equals layout.json's")) is None
    assert pictures.canary_damage({"checks": []}) is None
    assert pictures.canary_damage(report(False, "something else went wrong")) == []
    assert pictures.canary_damage(report(False, "x", [
        "5 sectors outside the dump extent damaged, first: sectors 10..12 (data partition +0x400): not canary",
        "primary GPT header: differs from the GPT regenerated from layout.json at disk offset 0x228 (sector 1; "
        "1 sectors differ)",
        "the hole at disk offset 0x100000 holds data from 0x100200 (disk offset 0x100200, outside the partitions)"])) \
        == [(512, 1024), (10 * 512, 13 * 512), (0x100000, 0x100001), (0x100200, 0x100201)]


def test_canary_damage_without_a_place_is_still_marked(good_run):
    report = report_of(good_run.dir)
    for c in report["checks"]:
        if c["name"] == "canary":
            c.update(ok=False, detail="image is 5 bytes, layout.json says 6", problems=[])
    pictures.write(good_run.dir, report)
    assert pictures.GID_CANARY in ids(good_run.dir / pictures.DISK_MAP)


@pytest.mark.parametrize("fault", [{"fired": True, "seconds_after_crash": 0.002},
                                   {"fired": True, "seconds_after_crash": None,
                                    "stopped_write": "write 3 of 65536 bytes at partition offset 0x1a7000, taken at "
                                                     "+2.50 ms did not reach the disk (partition block 3384)"}])
def test_fault_line(good_run, fault):
    (good_run.dir / "fault.json").write_text(json.dumps(fault))
    report = report_of(good_run.dir)
    assert pictures.fault_moment(good_run.dir) == pytest.approx(0.002 if fault["seconds_after_crash"] else 0.0025)
    pictures.write(good_run.dir, report)
    svg = ids(good_run.dir / pictures.WRITE_TIMELINE)
    assert {pictures.GID_CRASH, pictures.GID_FAULT} <= svg
    assert "fault (+" in (good_run.dir / pictures.WRITE_TIMELINE).read_text()


def test_no_fault_moment(tmp_path):
    assert pictures.fault_moment(tmp_path) is None
    (tmp_path / "fault.json").write_text('{"fired": false, "seconds_after_crash": null, "stopped_write": null}')
    assert pictures.fault_moment(tmp_path) is None
    (tmp_path / "fault.json").write_text("not json")
    assert pictures.fault_moment(tmp_path) is None


def test_no_crash_instant(good_run):
    report = report_of(good_run.dir)
    (good_run.dir / "timeline.json").unlink()
    (good_run.dir / "fault.json").write_text(json.dumps({"fired": True, "seconds_after_crash": 0.002}))
    out = pictures.write(good_run.dir, report)
    svg = ids(good_run.dir / pictures.WRITE_TIMELINE)
    assert pictures.GID_WRITES in svg and pictures.GID_CRASH not in svg and pictures.GID_FAULT not in svg
    assert any("no crash instant" in n for n in out["notes"])
    assert "no crash instant" in (good_run.dir / pictures.RUN_HTML).read_text()


def test_missing_inputs_degrade(good_run):
    report = report_of(good_run.dir)
    pictures.write(good_run.dir, report)
    for name in ("qemu-trace.log", "timeline.json", "layout.json"):
        (good_run.dir / name).unlink()
    out = pictures.write(good_run.dir, report)
    # Nothing to draw either picture from: both left out (not stale copies), the page says why
    assert out["disk_map"] is None and out["write_timeline"] is None
    assert not (good_run.dir / pictures.DISK_MAP).exists() and not (good_run.dir / pictures.WRITE_TIMELINE).exists()
    page = (good_run.dir / pictures.RUN_HTML).read_text()
    assert "<svg" not in page and '<table id="checks">' in page
    assert "no qemu-trace.log" in page and "layout.json" in page


def test_trace_only_missing_keeps_the_crash_line(good_run):
    report = report_of(good_run.dir)
    (good_run.dir / "qemu-trace.log").unlink()
    out = pictures.write(good_run.dir, report)
    assert out["disk_map"] and out["write_timeline"]
    svg = ids(good_run.dir / pictures.WRITE_TIMELINE)
    assert pictures.GID_CRASH in svg and pictures.GID_WRITES not in svg
    assert "no qemu-trace.log" in (good_run.dir / pictures.RUN_HTML).read_text()


def test_broken_inputs_never_raise(good_run):
    (good_run.dir / "layout.json").write_text("{")
    (good_run.dir / "qemu-trace.log").write_bytes(b"\xff\x00garbage\n" * 10)
    out = pictures.write(good_run.dir, {})  # not even a report
    assert out["html"] and out["disk_map"] is None
    page = (good_run.dir / pictures.RUN_HTML).read_text()
    assert 'id="verdict">UNKNOWN<' in page and '<table id="checks">' in page


def test_a_timeline_is_thinned(good_run, monkeypatch):
    monkeypatch.setattr(pictures, "MAX_WRITES", 5)
    report = report_of(good_run.dir)
    pictures.write(good_run.dir, report)
    text = (good_run.dir / pictures.WRITE_TIMELINE).read_text()
    assert "(5 writes drawn)" in text


def test_validate_redraws_the_pictures(good_run, capsys):
    """`dumpbed validate RUN` draws the pictures again from its new report, as run does: a page
    removed comes back; a dump damaged since the run's page said PASS now reads FAIL there."""
    from dumpbed import cli

    pictures.write(good_run.dir, report_of(good_run.dir))
    (good_run.dir / pictures.RUN_HTML).unlink()
    (good_run.dir / pictures.DISK_MAP).unlink()
    assert cli.main(["validate", str(good_run.dir)]) == 0
    assert 'id="verdict">PASS<' in (good_run.dir / pictures.RUN_HTML).read_text()
    assert (good_run.dir / pictures.DISK_MAP).is_file() and (good_run.dir / pictures.WRITE_TIMELINE).is_file()

    with open(good_run.image, "r+b") as f:  # a byte of the dump's body
        f.seek(good_run.part_offset + good_run.body_offset)
        old = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([old[0] ^ 1]))
    assert cli.main(["validate", str(good_run.dir)]) == 1
    page = (good_run.dir / pictures.RUN_HTML).read_text()
    assert 'id="verdict">FAIL<' in page and '<tr class="failed">' in page
    assert capsys.readouterr().err == ""  # quiet: `dumpbed validate RUN | head` keeps a clean stderr
