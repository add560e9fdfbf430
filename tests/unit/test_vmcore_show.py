"""`dumpbed show` of a disk whose dump partition holds what Linux's makedumpfile writes: the
vmcore reader's view, not dumpbed's format (harness/dumpbed/reader/vmcore_show.py)."""
from __future__ import annotations

import json

import synth
from test_vmcore_writer import kdump_file, pattern

from dumpbed import cli
from dumpbed.reader import show


def _disk_with(tmp_path, data: bytes):
    run = synth.make_run(tmp_path / "run")
    with open(run.image, "r+b") as image:
        image.seek(run.part_offset)
        image.write(b"\0" * run.part_bytes)  # the dumpbed dump gone: makedumpfile -f writes from byte 0
        image.seek(run.part_offset)
        image.write(data)
    return run


def test_show_reads_a_kdump_compressed_partition(tmp_path, capsys):
    pages = {pfn: pattern(pfn) for pfn in (1, 2, 3, 10)}
    run = _disk_with(tmp_path, bytes(kdump_file(pages).data))
    found = json.loads(show.show(run.image, as_json=True))
    core = found["vmcore"]
    assert (core["format"], core["status"], core["dumped_pages"]) == ("kdump-compressed", "complete", 4)
    assert found["dumped_pfn_ranges"] == [[1, 4], [10, 11]] and found["partition"]["offset"] == run.part_offset
    assert core["osrelease"] == "6.1.0"
    assert cli.main(["show", str(run.image)]) == 0
    out = capsys.readouterr().out
    assert "vmcore: complete" in out and "pages dumped" in out and "6.1.0" in out


def test_show_says_a_cut_vmcore_is_partial(tmp_path):
    k = kdump_file({pfn: pattern(pfn) for pfn in range(1, 40)}, compressor=None)
    # makedumpfile stopped while writing its page descriptors: the rest of the partition is zeros
    run = _disk_with(tmp_path, bytes(k.data[: k.desc_at + 24 * 5]))
    core = json.loads(show.show(run.image, as_json=True))["vmcore"]
    assert core["status"] == "partial", core


def test_a_dumpbed_dump_is_still_shown_as_one(tmp_path):
    run = synth.make_run(tmp_path / "run")
    assert "vmcore" not in json.loads(show.show(run.image, as_json=True))
