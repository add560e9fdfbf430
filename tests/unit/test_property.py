"""Every byte of the dump disk is covered by some check: any single-byte change fails validation.
The directory and table slot the leader does not name (an earlier checkpoint's, which no leader
on disk vouches for: docs/dump-format.md, "Durability") is judged by no check of the dump as
read; only the consistency oracle sees a change there, as a disk the write log does not
explain."""

import pytest
import synth
from hypothesis import HealthCheck, given, settings, strategies as st

from dumpbed.oracles.validate import validate_run


def _pristine(tmp_path_factory, **options):
    run = synth.make_run(tmp_path_factory.mktemp("pristine") / "run", **options)
    assert validate_run(run.dir).ok
    return run


@pytest.fixture(scope="module")
def run512(tmp_path_factory):
    return _pristine(tmp_path_factory, block_size=512)


@pytest.fixture(scope="module")
def run4096(tmp_path_factory):
    return _pristine(tmp_path_factory, block_size=4096, seed=2)


def regions(run) -> list[tuple[int, int]]:
    """Disk ranges to draw positions from: the whole image and each kind of structure in it,
    so that small structures are hit as often as the big body."""
    p, b = run.part_offset, run.block_size
    size = run.layout.size_bytes
    entry_blocks = 16384 // b
    return [
        (0, size),
        (0, (2 + entry_blocks) * b),  # MBR, primary header and entries
        ((2 + entry_blocks) * b, run.layout.partitions[0].first_lba * b),  # gap before the data partition
        (run.layout.partitions[0].first_lba * b, p),  # data partition
        (p, p + synth.LEADER),  # untouched start of the dump partition
        (p + synth.LEADER, p + synth.LEADER + 4096),  # leader slot
        (p + run.dir_at, p + run.dir_at + run.dir_bytes),  # the directory slot the leader names
        (p + run.table_at, p + run.table_at + run.table_bytes),  # the CRC table slot it names
        (p + run.body_offset, p + run.end_offset),  # body
        (p + run.area("crash-record").disk_offset, p + run.area("crash-record").disk_offset + 4096),
        (p + run.end_offset, p + run.end_offset + 4096),  # end marker
        (p + run.end_offset + 4096, p + run.part_bytes - b),  # untouched end of the partition
        (p + run.part_bytes - b, p + run.part_bytes),  # trailer block
        (p + run.part_bytes, size),  # after the partition, backup GPT
        (size - (1 + entry_blocks) * b, size),  # backup entries and header
    ]


def other_slots(run) -> list[tuple[int, int]]:
    """Disk ranges of the directory and table slot the leader does not name."""
    p, other = run.part_offset, 3 - run.slot
    return [(p + run.dir_slot_at(other), p + run.dir_slot_at(other) + run.dir_bytes),
            (p + run.table_slot_at(other), p + run.table_slot_at(other) + run.table_bytes)]


def positions(run):
    unjudged = other_slots(run)
    return st.sampled_from(regions(run)).flatmap(lambda r: st.integers(r[0], r[1] - 1)).filter(
        lambda x: not any(s <= x < e for s, e in unjudged))


def _flip_fails(run, pos, mask):
    run.flip(pos, mask)
    try:
        v = validate_run(run.dir)
        failing = [c.name for c in v.checks if not c.ok]
        assert not v.ok and failing, f"flip at disk offset 0x{pos:x} (mask 0x{mask:02x}) not detected"
    finally:
        run.flip(pos, mask)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_flip_fails_validation_512(run512, data):
    pos = data.draw(positions(run512), label="disk offset")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    _flip_fails(run512, pos, mask)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_flip_fails_validation_4096(run4096, data):
    pos = data.draw(positions(run4096), label="disk offset")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    _flip_fails(run4096, pos, mask)


def test_region_edges_are_covered(run512):
    """The first and last byte of every structure, deterministically."""
    size = run512.layout.size_bytes
    for start, end in regions(run512):
        for pos in {start, end - 1}:
            if 0 <= pos < size:
                _flip_fails(run512, pos, 0x01)


def test_the_slot_the_leader_does_not_name_is_not_judged(run512):
    """It holds the checkpoint before the final one: nothing on disk vouches for it, so the
    reader never looks at it and every check of the dump passes a change there. The change is
    still one no write made: the consistency oracle, which replays the write log, fails (it
    passed every check before runs carried their write log)."""
    for start, end in other_slots(run512):
        for pos in (start, (start + end) // 2, end - 1):
            run512.flip(pos)
            try:
                v = validate_run(run512.dir)
                assert v.dump.status == "complete"
                assert [c.name for c in v.checks if not c.ok] == ["consistency"]
                assert "the write log does not explain the final disk" in v.check("consistency").detail
            finally:
                run512.flip(pos)
