"""The validator's fast paths: reads into reused buffers, the image's chunk CRCs taken by the
consistency sweep, and the sweep started before the dumps are read. Each must find what the
plain reads found."""

import threading
from types import SimpleNamespace

import pytest

from dumpbed.errors import DumpbedError
from dumpbed.oracles import consistency, content, validate
from dumpbed.oracles.validate import validate_run
from dumpbed.reader import dumpfmt


@pytest.mark.parametrize("step", [4096, 3000])
def test_content_compares_every_step_of_reused_buffers(good_run, monkeypatch, step):
    """Steps smaller than the areas, some ending short: a byte flipped in a middle step and the
    area's last byte are both found, and counted once."""
    monkeypatch.setattr(content, "_STEP", step)
    run = good_run
    a = run.area("ram-high")
    run.flip(run.part_offset + a.disk_offset + 0x12345)
    run.flip(run.part_offset + a.disk_offset + a.length - 1)
    run.reseal()
    v = validate_run(run.dir)
    detail = v.check("content").detail
    assert detail.startswith(f"area 5 (ram-high): first mismatch at phys 0x{a.phys + 0x12345:x}")
    assert "2 bytes differ" in detail and v.content.bytes_mismatched == 2


def test_image_read_into_reads_what_read_reads(tmp_path):
    data = bytes(range(256)) * 40
    path = tmp_path / "img"
    path.write_bytes(data)
    for source in (path, data):
        with dumpfmt.open_image(source) as image:
            out = bytearray(1000)
            assert image.read_into(100, memoryview(out)) == 1000 and out == data[100:1100]
            assert image.read_into(len(data) - 10, memoryview(out)) == 10  # short past the end
            assert out[:10] == data[-10:]
            assert image.read_into(len(data), memoryview(out)) == 0


def test_only_whole_chunks_crcs_are_taken_from_the_reader():
    """A complete body's last chunk is short: its CRC is not that of the whole chunk the sweep
    keys by its source, so it is left out."""
    io = SimpleNamespace(partition_offset=4096)
    header = SimpleNamespace(body_offset=1024, chunk_size=512, sealed_end=1024 + 3 * 512 + 100)
    final = SimpleNamespace(chunk_crcs=[1, 2, 3, 4], header=header, partition_offset=4096)
    assert consistency._whole_chunk_crcs(final, io) == [1, 2, 3]
    header.sealed_end = 1024 + 4 * 512
    assert consistency._whole_chunk_crcs(final, io) == [1, 2, 3, 4]
    assert consistency._whole_chunk_crcs(final, SimpleNamespace(partition_offset=0)) is None  # another partition
    final.chunk_crcs = None  # the reader did not CRC the body
    assert consistency._whole_chunk_crcs(final, io) is None


def test_the_consistency_sweep_finds_damage_with_the_readers_crcs(good_run):
    """The sweep takes the image's chunk CRCs only once the replay equals the image: damage the
    write log does not explain still fails it."""
    run = good_run
    assert validate_run(run.dir).check("consistency").ok
    a = run.area("ram-high")
    run.flip(run.part_offset + a.disk_offset + 7)
    run.reseal()
    assert "does not explain the final disk" in validate_run(run.dir).check("consistency").detail


def test_a_failed_read_of_the_dumps_stops_the_early_sweep(good_run, monkeypatch):
    """The sweep starts before the dumps are read: when reading them fails, the error comes
    back, the sweep waiting for them is not left hanging."""
    def broken(*args, **kwargs):
        raise DumpbedError("cannot read the dump")

    monkeypatch.setattr(validate.dumpfmt, "read", broken)
    result = {}

    def run():
        try:
            validate_run(good_run.dir)
        except DumpbedError as e:
            result["error"] = str(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "validate_run hangs"
    assert result["error"] == "cannot read the dump"
