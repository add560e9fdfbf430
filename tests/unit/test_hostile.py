"""Hostile input: whatever is on the disk, the reader and the oracles record findings and
return, in bounded time; nothing raises."""

import struct
import time

import pytest
import synth
from hypothesis import HealthCheck, given, settings, strategies as st

from dumpbed.oracles.validate import validate_image, validate_run
from dumpbed.reader import dumpfmt, vmcore_show

STATUSES = {"none", "unsupported", "partial", "corrupt", "complete"}
_FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return synth.make_run(tmp_path_factory.mktemp("hostile") / "run")


def read(run):
    return dumpfmt.read(run.image, run.part_offset, run.part_bytes, run.block_size)


def survive(run):
    """Read and validate; both must return, quickly, with every problem recorded."""
    t = time.process_time()
    d = read(run)
    v = validate_run(run.dir)
    vi = validate_image(run.image)
    if vmcore_show.holds_vmcore(run.image, run.part_offset):
        # Garbage that starts with a vmcore's signature (hypothesis tries the readers' own
        # constants, `KDUMP   ` among them) is a Linux guest's disk to validate_image: judged as
        # a vmcore, and not a good one.
        assert not vi.ok
    else:
        assert d.status in STATUSES and vi.dump.status == d.status
    # validate_run looks for the run's dump id: another dump's valid leader is none there
    other_id = d.header is not None and d.header is d.leader and d.leader.dump_id != run.dump_id
    assert v.dump.status == ("none" if other_id else d.status)
    assert time.process_time() - t < 15  # CPU seconds: a bound, not a speed target
    if d.status != "complete":
        assert not v.ok and not vi.ok
        assert d.status in ("partial", "unsupported") or d.first_inconsistency
    return d, v


class Restore:
    """Write bytes into the shared image and put the originals back afterwards."""

    def __init__(self, run):
        self.run = run
        self.saved = []

    def write(self, offset, data):
        self.saved.append((offset, self.run.read(offset, len(data))))
        self.run.write(offset, data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for offset, data in reversed(self.saved):
            self.run.write(offset, data)


_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1


def field_values(name, fmt, original):
    if fmt == "8s":
        return st.sampled_from([b"DBEDDUMP"])
    if fmt == "16s":
        return st.binary(min_size=16, max_size=16)
    top = _U32 if fmt == "I" else _U64
    nasty = [0, 1, 2, 3, 4095, 4096, 65536, 69632, top, top - 4095, 1 << (31 if fmt == "I" else 63)]
    near = [max(0, min(top, original + d)) for d in (-4096, -1, 1, 4096)]
    return st.one_of(
        st.just(original), st.sampled_from(nasty + near), st.integers(0, top)
    )


@st.composite
def headers(draw, run):
    fields = {}
    for _, fmt, name in synth.HEADER_FIELDS:
        if draw(st.booleans()):
            fields[name] = run.header[name]
        else:
            fields[name] = draw(field_values(name, fmt, run.header[name]), label=name)
    return fields


@settings(max_examples=150, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(data=st.data())
def test_random_headers_with_valid_crc(shared, data):
    run = shared
    fields = data.draw(headers(run))
    raw = synth.pack_header(fields, run.registers)
    with Restore(run) as r:
        r.write(run.leader_at, raw)
        if data.draw(st.booleans(), label="same trailer"):
            r.write(run.trailer_at, raw)
        d, _ = survive(run)
        if fields == run.header:
            assert d.status == "complete"


@pytest.fixture(scope="module")
def shared_samples(tmp_path_factory):
    """A dump with every kind of record: samples, calls, a violation."""
    return synth.make_run(tmp_path_factory.mktemp("hostile") / "run", samples="all")


def _used_directory_bytes(run) -> int:
    d = read(run).directory_header
    return d.used_bytes


@settings(max_examples=100, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(data=st.data())
def test_random_records_with_valid_crcs(shared_samples, data):
    """Junk inside the records (counts, entries, calls, violations), every CRC right."""
    run = shared_samples
    used = _used_directory_bytes(run)
    size = data.draw(st.integers(1, 64), label="bytes")
    start = data.draw(st.integers(0, used - size), label="start")
    _survive_directory_junk(run, data, start, size)


@settings(max_examples=100, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(data=st.data())
def test_random_directory_with_valid_crcs(shared, data):
    run = shared
    size = data.draw(st.integers(1, run.dir_bytes), label="bytes")
    start = data.draw(st.integers(0, run.dir_bytes - size), label="start")
    _survive_directory_junk(run, data, start, size)


def _survive_directory_junk(run, data, start, size):
    junk = data.draw(st.binary(min_size=size, max_size=size), label="junk")
    directory = bytearray(run.read_part(run.dir_at, run.dir_bytes))
    directory[start:start + size] = junk
    header = dict(run.header, dir_crc=synth.crc32c(directory))
    raw = synth.pack_header(header, run.registers)
    with Restore(run) as r:
        r.write(run.part_offset + run.dir_at, bytes(directory))
        r.write(run.leader_at, raw)
        r.write(run.trailer_at, raw)
        survive(run)


@settings(max_examples=60, deadline=None, suppress_health_check=_FIXTURE_OK)
@given(data=st.data())
def test_random_garbage_anywhere_in_the_partition(shared, data):
    run = shared
    with Restore(run) as r:
        for _ in range(data.draw(st.integers(1, 4), label="pieces")):
            where = data.draw(st.integers(0, run.part_bytes - 1), label="offset")
            junk = data.draw(st.binary(min_size=1, max_size=4096), label="junk")
            r.write(run.part_offset + where, junk[:run.part_bytes - where])
        survive(run)


@pytest.mark.parametrize("cut", [
    "empty", "in leader magic", "in leader header", "in leader slot", "in directory", "in table",
    "in body", "in end marker", "before trailer", "in trailer",
])
def test_truncated_images(make_run, cut):
    run = make_run()
    p = run.part_offset
    size = {
        "empty": 0,
        "in leader magic": run.leader_at + 4,
        "in leader header": run.leader_at + 300,
        "in leader slot": run.leader_at + 1000,
        "in directory": p + run.dir_at + 100,
        "in table": p + run.table_at + 10,
        "in body": p + run.body_offset + 3 * 65536 + 7,
        "in end marker": p + run.end_offset + 2000,
        "before trailer": run.trailer_at,
        "in trailer": run.trailer_at + 100,
    }[cut]
    with open(run.image, "r+b") as f:
        f.truncate(size)
    d = read(run)
    assert d.status == ("none" if size < run.leader_at + 8 else "corrupt")
    v = validate_run(run.dir)
    assert not v.ok and "canary" in {c.name for c in v.checks if not c.ok}
    assert any("truncated" in f.message for f in d.findings)


@pytest.mark.parametrize("what,status", [
    ("leader slot", "none"), ("directory", "corrupt"), ("table", "corrupt"), ("body", "corrupt"),
    ("partition", "none"), ("trailer", "corrupt"), ("end marker", "corrupt"),
])
def test_zeroed_ranges(make_run, what, status):
    run = make_run()
    start, end = {
        "leader slot": (synth.LEADER, synth.LEADER + 4096),
        "directory": (run.dir_at, run.dir_at + run.dir_bytes),
        "table": (run.table_at, run.table_at + run.table_bytes),
        "body": (run.body_offset + 65536, run.body_offset + 5 * 65536),
        "partition": (0, run.part_bytes),
        "trailer": (run.part_bytes - run.block_size, run.part_bytes),
        "end marker": (run.end_offset, run.end_offset + 4096),
    }[what]
    run.write_part(start, bytes(end - start))
    d, v = survive(run)
    assert d.status == status
    if what == "body":
        assert d.bad_chunk_count == 4


def test_huge_but_consistent_directory_is_bounded(make_run):
    """60000 entries, every size consistent and every CRC right: parsed in bounded time."""
    run = make_run()
    cc = ac = 30000
    dir_bytes = synth.up(64 + 128 * cc + 64 * ac)
    table_offset = synth.DIR_AT + 2 * dir_bytes
    body_offset = table_offset + 2 * 4096
    directory = bytearray(dir_bytes)  # a valid directory header, records all zero
    h = run.header
    struct.pack_into("<8sIIIIIIIIIIQ", directory, 0, b"DBEDDIR\0", cc, ac, 128, 64, 0, 24, 0, 32, h["level"],
                     h["generation"], h["estimate_bytes"])
    run.write_part(synth.DIR_AT, bytes(directory) + bytes(dir_bytes) + bytes(4096))
    run.header.update(
        component_count=cc, area_count=ac, dir_bytes=dir_bytes, dir_crc=synth.crc32c(directory), slot=1,
        crc_table_offset=table_offset, crc_table_bytes=4096, crc_table_crc=synth.crc32c(bytes(4096)),
        body_offset=body_offset, body_bytes=0, body_written=0, end_offset=body_offset, chunks_sealed=0,
    )
    run.set_header()
    t = time.process_time()
    d = read(run)
    assert time.process_time() - t < 10
    assert d.status == "corrupt" and len(d.components) == cc and len(d.areas) == ac
    assert d.first_inconsistency == f"directory: components claim 0 area entries, there are {ac}"


@pytest.mark.parametrize("cc,ac", [(1 << 20, 0), (0xFFFFFFFF, 0xFFFFFFFF), (40000, 40000)])
def test_absurd_counts_rejected_before_reading(make_run, cc, ac):
    run = make_run()
    run.set_header(component_count=cc, area_count=ac)
    t = time.process_time()
    d = read(run)
    assert time.process_time() - t < 5
    assert d.status == "corrupt" and d.components == [] and not d.geometry_ok
    assert any("exceed the reader's limit" in f.message for f in d.findings)


def test_partition_beyond_the_image(good_run):
    d = dumpfmt.read(good_run.image, good_run.layout.size_bytes - 4096, 1 << 40, 512)
    assert d.status == "none"
    d = dumpfmt.read(good_run.image, 1 << 50, 1 << 20, 512)
    assert d.status == "none" and d.image_bytes == good_run.layout.size_bytes


def test_tiny_partition(good_run):
    d = dumpfmt.read(good_run.image, good_run.part_offset, 65536 + 4096, 512)
    assert d.status == "corrupt"  # a header magic, but no room for anything
    assert any("no room for a trailer" in f.message for f in d.findings)


def _every_component_claims_every_area(run) -> tuple[int, int]:
    """30000 components each claiming all 30000 areas, every CRC right; returns the counts."""
    cc = ac = 30000
    dir_bytes = synth.up(64 + 128 * cc + 64 * ac)
    directory = bytearray(dir_bytes)
    h = run.header
    struct.pack_into("<8sIIIIIIIIIIQ", directory, 0, b"DBEDDIR\0", cc, ac, 128, 64, 0, 24, 0, 32, h["level"],
                     h["generation"], h["estimate_bytes"])
    for i in range(cc):
        struct.pack_into("<32sIIIII", directory, 64 + 128 * i, b"c", synth.CRASH_RECORD, 1, 0, 0, ac)
    table_offset = synth.DIR_AT + 2 * dir_bytes
    body_offset = table_offset + 2 * 4096
    run.write_part(synth.DIR_AT, bytes(directory) + bytes(dir_bytes) + bytes(4096))
    run.header.update(
        component_count=cc, area_count=ac, dir_bytes=dir_bytes, dir_crc=synth.crc32c(directory), slot=1,
        crc_table_offset=table_offset, crc_table_bytes=4096, crc_table_crc=synth.crc32c(bytes(4096)),
        body_offset=body_offset, body_bytes=0, body_written=0, end_offset=body_offset, chunks_sealed=0,
    )
    run.set_header()
    return cc, ac


def test_components_all_claiming_all_areas_is_bounded(make_run):
    """Every component claims every area: checked without components x areas steps."""
    run = make_run()
    cc, ac = _every_component_claims_every_area(run)
    t = time.process_time()
    d = read(run)
    assert time.process_time() - t < 10
    assert d.status == "corrupt"
    assert d.first_inconsistency == f"directory: components claim {cc * ac} area entries, there are {ac}"
    t = time.process_time()
    assert not validate_image(run.image).ok and time.process_time() - t < 15


def test_components_all_claiming_all_areas_is_bounded_in_validate_run(make_run):
    """The same directory through validate_run, whose consistency oracle reads it as the final dump."""
    run = make_run()
    _every_component_claims_every_area(run)
    survive(run)
