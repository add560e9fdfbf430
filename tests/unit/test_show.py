import pytest

from harness import gpt
from harness.show import show


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


def test_show_partial_dump_marks_written_areas(make_run):
    run = make_run(state="in-progress", body_written=3 * 65536)
    text = show(run.image)
    assert text.startswith("dump: partial") and "IN_PROGRESS" in text
    lines = {line.split("│")[2].strip(): line for line in text.splitlines() if line.count("│") > 8}
    assert lines["kernel-text"].rstrip("│ ").endswith("yes")
    assert lines["ram-high"].rstrip("│ ").endswith("no")


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
