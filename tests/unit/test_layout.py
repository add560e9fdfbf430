import json

import pytest

from dumpbed.errors import DumpbedError
from dumpbed.images import layout as layout_mod
from dumpbed.images.layout import DUMP_PARTITION_TYPE, LINUX_FILESYSTEM_TYPE, DiskLayout, LayoutError, MiB


@pytest.mark.parametrize("block", [512, 4096])
@pytest.mark.parametrize("ram", [8 * MiB, 128 * MiB, 1 << 30])
def test_for_dump_geometry(block, ram):
    lay = DiskLayout.for_dump(ram, block_size=block, canary_seed=7)
    data, dump = lay.partitions
    assert data.name == "data" and data.type_guid == LINUX_FILESYSTEM_TYPE
    assert dump.name == "dumpbed-dump" and dump.type_guid == DUMP_PARTITION_TYPE
    assert lay.dump_partition == dump
    for p in lay.partitions:
        start, end = lay.partition_span(p)
        assert start % MiB == 0 and end % MiB == 0
    assert lay.dump_offset == dump.first_lba * block
    assert lay.dump_size == (dump.last_lba - dump.first_lba + 1) * block
    # Room for a dump of that RAM: metadata + body + end marker + trailer, with margin.
    metadata = 65536 + 4096 + 4096 + 256 * 1024 + 4096 + 4096 + block
    assert lay.dump_size >= ram + metadata + ram // 32
    assert lay.dump_offset + lay.dump_size <= lay.last_usable_lba * block
    assert lay.size_bytes % MiB == 0


def test_for_dump_default_data_partition_is_one_mib_at_one_mib():
    lay = DiskLayout.for_dump(8 * MiB, canary_seed=1)
    assert (lay.partitions[0].first_lba, lay.partitions[0].last_lba) == (2048, 4095)
    assert lay.partitions[1].first_lba == 4096
    lay4k = DiskLayout.for_dump(8 * MiB, block_size=4096, canary_seed=1, data_bytes=3 * MiB)
    assert (lay4k.partitions[0].first_lba, lay4k.partitions[0].last_lba) == (256, 1023)


def test_guids_derive_from_seed_and_differ():
    a = DiskLayout.for_dump(8 * MiB, canary_seed=42)
    b = DiskLayout.for_dump(8 * MiB, canary_seed=42)
    c = DiskLayout.for_dump(8 * MiB, canary_seed=43)
    assert a == b
    assert a.disk_guid != c.disk_guid
    guids = {a.disk_guid, a.partitions[0].unique_guid, a.partitions[1].unique_guid}
    assert len(guids) == 3


def test_random_seed_is_recorded(tmp_path):
    lay = DiskLayout.for_dump(8 * MiB)
    assert 0 <= lay.canary_seed < 1 << 32
    lay.save(tmp_path / "layout.json")
    assert layout_mod.load(tmp_path / "layout.json") == lay


def test_save_load_round_trip_matches_artifacts_doc(tmp_path):
    lay = DiskLayout.for_dump(64 * MiB, block_size=4096, canary_seed=305419896)
    path = tmp_path / "layout.json"
    layout_mod.save(lay, path)
    data = json.loads(path.read_text())
    assert set(data) == {"version", "image", "format", "size_bytes", "block_size", "canary_seed", "disk_guid", "partitions", "holes"}
    assert data["version"] == 1 and data["format"] == "raw" and data["image"] == "dump.img"
    assert set(data["partitions"][1]) == {"name", "type_guid", "unique_guid", "first_lba", "last_lba"}
    assert layout_mod.load(path) == lay


def _write(tmp_path, data) -> str:
    path = tmp_path / "layout.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _good_dict():
    return DiskLayout.for_dump(8 * MiB, canary_seed=3).to_dict()


def _mutations():
    def drop(key):
        return lambda d: d.pop(key)

    def setv(key, value):
        return lambda d: d.__setitem__(key, value)

    def part(i, key, value):
        return lambda d: d["partitions"][i].__setitem__(key, value)

    return {
        "missing size": drop("size_bytes"),
        "string size": setv("size_bytes", "12"),
        "bool seed": setv("canary_seed", True),
        "seed too big": setv("canary_seed", 1 << 32),
        "bad block": setv("block_size", 1024),
        "odd size": setv("size_bytes", 8 * MiB + 100),
        "version 2": setv("version", 2),
        "qcow2": setv("format", "qcow2"),
        "image path": setv("image", "../x.img"),
        "bad guid": setv("disk_guid", "not-a-guid"),
        "partitions not list": setv("partitions", {}),
        "no dump partition": part(1, "type_guid", LINUX_FILESYSTEM_TYPE),
        "overlap": part(1, "first_lba", 4000),
        "beyond disk": part(1, "last_lba", 10**9),
        "inverted": part(0, "last_lba", 10),
        "partition not object": lambda d: d["partitions"].__setitem__(0, 5),
    }


@pytest.mark.parametrize("name", list(_mutations()))
def test_load_rejects_bad_layouts_with_one_line(tmp_path, name):
    data = _good_dict()
    _mutations()[name](data)
    with pytest.raises(LayoutError) as e:
        layout_mod.load(_write(tmp_path, data))
    assert isinstance(e.value, DumpbedError)
    assert "\n" not in str(e.value) and str(e.value)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", "\"x\""])
def test_load_rejects_garbled_json(tmp_path, text):
    with pytest.raises(DumpbedError) as e:
        layout_mod.load(_write(tmp_path, text))
    assert "\n" not in str(e.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(DumpbedError, match="no such file"):
        layout_mod.load(tmp_path / "nope.json")


def test_for_dump_rejects_bad_arguments():
    with pytest.raises(LayoutError):
        DiskLayout.for_dump(8 * MiB, block_size=1024)
    with pytest.raises(LayoutError):
        DiskLayout.for_dump(0)
    with pytest.raises(LayoutError):
        DiskLayout.for_dump(8 * MiB, canary_seed=-1)
