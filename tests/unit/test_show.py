import pytest

from dumpbed.images import gpt
from dumpbed.reader.show import show


def test_show_complete_dump(good_run):
    run = good_run
    text = show(run.image)
    assert text.startswith("dump: complete")
    assert run.dump_id.hex() in text and "COMPLETE" in text and "NMI, vector 2" in text
    for c in run.components:
        assert c.name in text
    for a in run.areas:
        assert a.name in text and f"0x{a.phys:x}" in text and f"0x{a.disk_offset:x}" in text
    assert "trailer          identical" in text
    assert "written" not in text.split("areas")[-1]  # no written column for a complete dump


def test_show_partial_dump_marks_sealed_areas(make_run):
    run = make_run(state="in-progress", body_written=3 * 65536)
    text = show(run.image)
    assert text.startswith("dump: partial") and "IN_PROGRESS" in text
    areas = text.split("areas")[-1]
    lines = {line.split("│")[2].strip(): line for line in areas.splitlines() if line.count("│") > 7}
    assert lines["crash-record"].rstrip("│ ").endswith("yes")
    assert lines["kernel-text"].rstrip("│ ").endswith("no")  # ends in chunk 2: not sealed
    assert "ram-high" not in lines  # not reached
    assert "PENDING" in text and "2 sealed" in text


def test_show_v2_records(make_run):
    run = make_run(samples="all", generation=2)
    text = show(run.image, width=200)
    assert "generation       2 on the secondary device (device_role 2)" in text
    assert "restart          generation 1 ended with errno 5 at primary offset 0x2345000" in text
    assert "CALL_ON_RESTART|RAS|UNLIMITED|ENDED_EARLY" in text
    assert "smp-rtnfail: RTNFAILURE rv -5" in text and "handle 0xd0b5edf00d" in text
    assert "pinning violations" in text and "smp-pinviolator" in text
    assert "START/TABLE(16) g2" in text and "AGAIN/NEGATIVE=-2" in text
    assert "TABLE_REUSED" in text and "VOLATILE|STAGED" in text


def test_show_corrupt_dump_lists_findings(good_run):
    run = good_run
    run.flip(run.area_disk_offset("ram-high") + 9)
    text = show(run.image)
    assert text.startswith("dump: corrupt")
    assert "[chunk-crc] chunk" in text


def test_show_no_dump_with_explicit_partition(make_run, capsys):
    run = make_run(state="none")
    text = show(run.image, partition=(run.part_offset, run.part_bytes, 512), print_it=True)
    assert text.startswith("dump: none")
    assert "no dump header magic" in capsys.readouterr().out


def test_show_without_gpt(good_run):
    good_run.write(0, bytes(2 * 512))
    with pytest.raises(gpt.GptError):
        show(good_run.image)


def test_report_renders_the_v2_dump_summary(make_run):
    import io

    from rich.console import Console

    from dumpbed import report
    from dumpbed.oracles.validate import validate_run

    run = make_run(samples="all", generation=2)
    rep = report.build(run.dir, validate_run(run.dir).to_dict(), {})
    buffer = io.StringIO()
    report.render(rep, Console(file=buffer, width=200, color_system=None))
    text = buffer.getvalue()
    assert "generation=2 device=SECONDARY level=3" in text
    assert "restart: errno 5 at primary offset 0x2345000" in text
    assert "ras-negative" in text and "EXCLUDED (61)" in text
    assert "pinning violation at 0x7000" in text and "op START, generation 2" in text
