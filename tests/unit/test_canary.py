import struct
import time

import pytest

from dumpbed.images import canary
from dumpbed.images.layout import DiskLayout, MiB


def naive_sector(seed: int, sector: int) -> bytes:
    """The canary as docs/artifacts.md words it."""
    return (b"DBCN" + struct.pack("<IQ", seed, sector)) * 32


@pytest.mark.parametrize("offset,length", [(0, 512), (512 * 7, 1024), (100, 50), (511, 2), (3 * 512 + 17, 3000)])
def test_expected_matches_the_definition(offset, length):
    seed = 0xDEADBEEF
    first, last = offset // 512, (offset + length - 1) // 512
    whole = b"".join(naive_sector(seed, s) for s in range(first, last + 1))
    assert canary.expected(offset, length, seed) == whole[offset - first * 512:][:length]
    assert canary.expected(offset, 0, seed) == b""


@pytest.mark.parametrize("offset,length", [(0, 512), (512 * 7, 4096), (100, 50), (511, 2), (3 * 512 + 17, 3000)])
def test_expected_into_a_buffer_is_expected(offset, length):
    """In place for whole sectors, copied otherwise: the same bytes, and none outside `out`."""
    seed = 0x1234ABCD
    buf = bytearray(b"\xee" * (length + 16))
    canary.expected_into(offset, memoryview(buf)[8:8 + length], seed)
    assert bytes(buf[8:8 + length]) == canary.expected(offset, length, seed)
    assert buf[:8] == buf[-8:] == b"\xee" * 8
    assert canary.Canary(seed)(offset, length) == canary.expected(offset, length, seed)


def test_fill_writes_every_sector(tmp_path):
    lay = DiskLayout.for_dump(4 * MiB, canary_seed=0x01020304)
    img = tmp_path / "d.img"
    img.write_bytes(b"junk")  # fill resizes an existing file
    canary.fill(img, lay)
    data = img.read_bytes()
    assert len(data) == lay.size_bytes
    for s in (0, 1, 8191, 8192, 8193, lay.size_bytes // 512 - 1):
        assert data[s * 512:(s + 1) * 512] == naive_sector(0x01020304, s)
    assert canary.check(img, lay.canary_seed, [(0, lay.size_bytes)]).ok


def _image(tmp_path, seed=77, size=4 * MiB):
    lay = DiskLayout(size_bytes=size, block_size=512, canary_seed=seed,
                     disk_guid="00000000-0000-4000-8000-000000000000")
    img = tmp_path / "c.img"
    canary.fill(img, lay)
    return img


def _poke(img, offset, data):
    with open(img, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_check_reports_runs_of_bad_sectors(tmp_path):
    img = _image(tmp_path)
    _poke(img, 512 * 10 + 3, b"\x00")
    _poke(img, 512 * 20, b"x" * 1024 + b"y")  # sectors 20, 21, 22
    _poke(img, 512 * 8191 + 500, b"zzzz" * 10)  # crosses a 4 MiB-chunk boundary? no: 8191..8192
    res = canary.check(img, 77, [(0, 4 * MiB)])
    assert not res.ok
    assert [(r.first, r.last) for r in res.runs] == [(10, 10), (20, 22), (8191, 8191)]
    assert res.bad_sectors == 5
    assert res.checked_sectors == 8192


def test_check_detects_moved_and_foreign_sectors(tmp_path):
    img = _image(tmp_path)
    data = img.read_bytes()
    _poke(img, 512 * 100, data[512 * 200:512 * 201])  # a sector moved: right seed, wrong number
    res = canary.check(img, 77, [(0, 4 * MiB)])
    assert [(r.first, r.last) for r in res.runs] == [(100, 100)]
    assert not canary.check(img, 78, [(512 * 300, 512 * 301)]).ok  # another run's canary


def test_check_only_looks_at_ranges(tmp_path):
    img = _image(tmp_path)
    _poke(img, 512 * 50, b"\xff" * 512)
    assert canary.check(img, 77, [(0, 512 * 50), (512 * 51, 4 * MiB)]).ok
    assert not canary.check(img, 77, [(512 * 50, 512 * 51)]).ok
    with pytest.raises(ValueError):
        canary.check(img, 77, [(1, 512)])


def test_check_counts_missing_sectors_of_a_truncated_image(tmp_path):
    img = _image(tmp_path)
    with open(img, "r+b") as f:
        f.truncate(512 * 1000 + 100)
    res = canary.check(img, 77, [(0, 4 * MiB)])
    assert res.runs[0].first == 1000 and res.runs[0].missing
    assert res.runs[0].last == 8191 and res.bad_sectors == 8192 - 1000
    empty = tmp_path / "e.img"
    empty.write_bytes(b"")
    assert canary.check(empty, 77, [(0, 1024)]).bad_sectors == 2


def test_check_limits_the_listed_runs(tmp_path):
    img = _image(tmp_path)
    for s in range(0, 200, 2):
        _poke(img, 512 * s, b"!")
    res = canary.check(img, 77, [(0, 4 * MiB)], max_runs=5)
    assert len(res.runs) == 5 and res.more_runs and res.bad_sectors == 100


def test_fill_and_check_are_fast(tmp_path):
    # Catches per-sector Python loops: 128 MiB is 262144 sectors.
    t = time.process_time()
    img = _image(tmp_path, size=128 * MiB)
    assert canary.check(img, 77, [(0, 128 * MiB)]).ok
    assert time.process_time() - t < 15  # CPU seconds: a bound, not a speed target
