import struct
import zlib

import pytest

from dumpbed.errors import DumpbedError
from dumpbed.images import gpt
from dumpbed.images.layout import DUMP_PARTITION_TYPE, LINUX_FILESYSTEM_TYPE, DiskLayout, MiB


def test_guid_mixed_endian_known_bytes():
    raw = gpt.guid_to_gpt(DUMP_PARTITION_TYPE)
    assert raw.hex() == "5e2a3c8f1d6b7e4c9a40d0b3e1f2a7c9"
    assert gpt.guid_from_gpt(raw) == DUMP_PARTITION_TYPE
    # The Linux filesystem type as it appears on real disks.
    assert gpt.guid_to_gpt(LINUX_FILESYSTEM_TYPE).hex() == "af3dc60f838472478e793d69d8477de4"


@pytest.mark.parametrize("block", [512, 4096])
def test_build_decoded_by_hand(block):
    lay = DiskLayout.for_dump(8 * MiB, block_size=block, canary_seed=9)
    regions = {r.name: r for r in gpt.build(lay)}
    total = lay.size_bytes // block
    entry_blocks = 16384 // block

    mbr = regions["protective MBR"]
    assert mbr.offset == 0 and len(mbr.data) == block
    assert mbr.data[510:512] == b"\x55\xaa" and mbr.data[446 + 4] == 0xEE
    assert struct.unpack_from("<II", mbr.data, 446 + 8) == (1, total - 1)
    assert mbr.data[:446] == bytes(446) and mbr.data[462:510] == bytes(48)

    for name, my, alt, entries_lba in (
        ("primary GPT header", 1, total - 1, 2),
        ("backup GPT header", total - 1, 1, total - 1 - entry_blocks),
    ):
        h = regions[name].data
        assert regions[name].offset == my * block and len(h) == block
        assert h[:8] == b"EFI PART" and h[92:] == bytes(block - 92)
        sig, rev, size, crc, res, f_my, f_alt, first, last = struct.unpack_from("<8sIIIIQQQQ", h)
        assert (rev, size, res, f_my, f_alt) == (0x10000, 92, 0, my, alt)
        assert (first, last) == (2 + entry_blocks, total - 2 - entry_blocks)
        assert zlib.crc32(h[:16] + bytes(4) + h[20:92]) == crc
        assert h[56:72] == gpt.guid_to_gpt(lay.disk_guid)
        e_lba, count, e_size, e_crc = struct.unpack_from("<QIII", h, 72)
        assert (e_lba, count, e_size) == (entries_lba, 128, 128)
        assert e_crc == zlib.crc32(regions["primary GPT entries"].data[:16384])

    entries = regions["primary GPT entries"].data
    assert regions["primary GPT entries"].offset == 2 * block
    assert entries == regions["backup GPT entries"].data and len(entries) == 16384
    assert regions["backup GPT entries"].offset == (total - 1 - entry_blocks) * block
    for i, p in enumerate(lay.partitions):
        e = entries[128 * i:128 * (i + 1)]
        assert e[:16] == gpt.guid_to_gpt(p.type_guid) and e[16:32] == gpt.guid_to_gpt(p.unique_guid)
        assert struct.unpack_from("<QQQ", e, 32) == (p.first_lba, p.last_lba, 0)
        assert e[56:].decode("utf-16-le").rstrip("\0") == p.name
    assert entries[128 * len(lay.partitions):] == bytes(16384 - 128 * len(lay.partitions))


@pytest.mark.parametrize("block", [512, 4096])
def test_write_then_parse(tmp_path, block):
    lay = DiskLayout.for_dump(8 * MiB, block_size=block, canary_seed=10)
    img = tmp_path / "d.img"
    gpt.write(img, lay)
    assert img.stat().st_size == lay.size_bytes
    info = gpt.parse(img)
    assert info.block_size == block and info.disk_guid == lay.disk_guid
    assert info.partitions == lay.partitions
    assert gpt.find_dump_partition(img) == (lay.dump_offset, lay.dump_size, block)
    with open(img, "rb") as f:
        assert gpt.parse(f).partitions == lay.partitions
    assert gpt.parse(img.read_bytes()).partitions == lay.partitions


def test_write_keeps_the_rest_of_the_image(tmp_path):
    lay = DiskLayout.for_dump(8 * MiB, canary_seed=10)
    img = tmp_path / "d.img"
    img.write_bytes(b"\xaa" * lay.size_bytes)
    gpt.write(img, lay)
    data = bytearray(img.read_bytes())
    for r in gpt.build(lay):
        assert data[r.offset:r.end] == r.data
        data[r.offset:r.end] = b"\xaa" * len(r.data)
    assert data == b"\xaa" * lay.size_bytes


def _damaged(tmp_path, offset, lay=None):
    lay = lay or DiskLayout.for_dump(8 * MiB, canary_seed=11)
    img = tmp_path / "d.img"
    gpt.write(img, lay)
    with open(img, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 1]))
    return img


@pytest.mark.parametrize("offset,message", [
    (512, "no GPT"),  # signature
    (512 + 40, "header CRC"),
    (1024 + 5, "entry array CRC"),
])
def test_parse_rejects_damage(tmp_path, offset, message):
    with pytest.raises(gpt.GptError, match=message) as e:
        gpt.parse(_damaged(tmp_path, offset))
    assert isinstance(e.value, DumpbedError) and "\n" not in str(e.value)


def test_parse_without_dump_partition(tmp_path):
    lay = DiskLayout.for_dump(8 * MiB, canary_seed=12)
    only_data = DiskLayout(
        size_bytes=lay.size_bytes, block_size=512, canary_seed=12, disk_guid=lay.disk_guid,
        partitions=(lay.partitions[0], lay.partitions[1].__class__("other", LINUX_FILESYSTEM_TYPE,
                    lay.partitions[1].unique_guid, lay.partitions[1].first_lba, lay.partitions[1].last_lba)),
    )
    img = tmp_path / "d.img"
    regions = gpt.build(lay)  # for_dump's layout, then rewrite entries of a layout without a dump partition
    with open(img, "wb") as f:
        f.truncate(lay.size_bytes)
        for r in regions:
            f.seek(r.offset)
            f.write(r.data)
    info = gpt.parse(img)
    assert info.dump_partition() == lay.partitions[1]
    with pytest.raises(DumpbedError):
        only_data.check()  # a layout must have its dump partition
    # A GPT written by someone else, without the dump type:
    entries = bytearray(regions[2].data)
    entries[128:144] = gpt.guid_to_gpt(LINUX_FILESYSTEM_TYPE)
    header = bytearray(regions[1].data[:92])
    struct.pack_into("<I", header, 88, zlib.crc32(entries[:16384]))
    struct.pack_into("<I", header, 16, 0)
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    with open(img, "r+b") as f:
        f.seek(512)
        f.write(header)
        f.seek(1024)
        f.write(entries)
    with pytest.raises(gpt.GptError, match="no dump partition"):
        gpt.find_dump_partition(img)


def test_parse_empty_and_missing(tmp_path):
    empty = tmp_path / "e.img"
    empty.write_bytes(b"")
    with pytest.raises(gpt.GptError, match="no GPT"):
        gpt.parse(empty)
    with pytest.raises(gpt.GptError, match="cannot read"):
        gpt.parse(tmp_path / "missing.img")


def test_blocks_are_the_regions_in_disk_order():
    lay = DiskLayout.for_dump(8 * MiB, block_size=4096, canary_seed=13)
    pairs = gpt.blocks(lay)
    assert pairs == [(r.offset, r.data) for r in gpt.build(lay)]
    offsets = [o for o, _ in pairs]
    assert offsets == sorted(offsets)
    assert all(o % 4096 == 0 and len(d) % 4096 == 0 for o, d in pairs)
    assert sum(len(d) for _, d in pairs) == 2 * 4096 + 2 * 16384 + 4096
