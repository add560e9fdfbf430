"""Disks of several TiB: the data partition is a hole, so its dump partition sits beyond LBA 2^32."""
from __future__ import annotations

import os

import pytest

from dumpbed.images import canary, gpt, layout as layout_mod
from dumpbed.images.layout import DiskLayout, LayoutError
from dumpbed.oracles.canary import check_canary
from dumpbed.reader import dumpfmt

MiB, TiB = 1 << 20, 1 << 40


@pytest.fixture
def big(tmp_path):
    small = DiskLayout.for_dump(16 * MiB, canary_seed=7)
    lay = DiskLayout.for_dump(16 * MiB, canary_seed=7, data_bytes=3 * TiB)
    path = tmp_path / lay.image
    canary.fill(path, lay)
    gpt.write(path, lay)
    return lay, path, small


def test_dump_partition_starts_beyond_lba_2_32(big):
    lay, path, _ = big
    assert lay.dump_partition.first_lba >= 1 << 32
    assert len(lay.holes) == 1
    assert os.stat(path).st_blocks * 512 < 256 * MiB  # sparse: TiBs of size, MiBs on disk
    assert gpt.find_dump_partition(path)[0] == lay.dump_offset


def test_untouched_sparse_disk_passes_the_canary(big):
    lay, path, _ = big
    with dumpfmt.open_image(path) as image:
        dump = dumpfmt.read(image, lay.dump_offset, lay.dump_size, lay.block_size)
        assert dump.status == "none"
        check = check_canary(dump, image, lay)
    assert check.ok, check.detail


def test_a_write_into_the_hole_is_found_even_of_zeros(big):
    lay, path, _ = big
    start, end = lay.holes[0]
    with open(path, "r+b") as f:
        f.seek(start + TiB)
        f.write(bytes(4096))
    with dumpfmt.open_image(path) as image:
        dump = dumpfmt.read(image, lay.dump_offset, lay.dump_size, lay.block_size)
        check = check_canary(dump, image, lay)
    assert not check.ok and "hole" in check.detail


def test_small_disks_have_no_holes(big):
    assert big[2].holes == ()


def test_holes_must_stay_out_of_the_dump_partition(big, tmp_path):
    lay = big[0]
    data = lay.to_dict()
    data["holes"] = [[lay.dump_offset, lay.dump_offset + MiB]]
    with pytest.raises(LayoutError, match="overlaps the dump partition"):
        DiskLayout.from_dict(data)
    data["holes"] = "everything"
    with pytest.raises(LayoutError, match="holes must be"):
        DiskLayout.from_dict(data)


def test_round_trip_keeps_holes(big, tmp_path):
    lay = big[0]
    layout_mod.save(lay, tmp_path / "l.json")
    assert layout_mod.load(tmp_path / "l.json").holes == lay.holes
