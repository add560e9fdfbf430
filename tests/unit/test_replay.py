"""The replayed disk (oracles/replay.py) against a plain bytearray that applies the same writes:
whatever the order of applies, undos, swaps and resets, it reads, CRCs and compares as the
bytes would."""
from __future__ import annotations

import random

import google_crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dumpbed.capture import blklog
from dumpbed.images import canary
from dumpbed.oracles.replay import DiskState

PART_OFFSET = 4096
PART_BYTES = 64 * 512
CHUNK = 1024


def before(offset: int, length: int) -> bytes:
    """The content before the run: every byte a function of its disk offset, zero in the
    partition's first 2 KiB (where first_data must look past them)."""
    return bytes(0 if o < PART_OFFSET + 2048 else (o * 7 + 3) & 0xFF for o in range(offset, offset + length))


def make_log(tmp_path, writes):
    path = tmp_path / "dump.writes"
    w = blklog.WriteLogWriter(path)
    for sector, count, fill in writes:
        w.write(PART_OFFSET + sector * 512, random.Random(fill).randbytes(512 * count))
    w.close()
    return blklog.read(path)


writes_st = st.lists(st.tuples(st.integers(0, 63), st.integers(1, 16), st.integers(0, 255))
                     .filter(lambda w: w[0] + w[1] <= 64), min_size=1, max_size=8)
ops_st = st.lists(st.tuples(st.sampled_from(["apply", "undoable", "undo", "swap", "reset", "compare"]),
                            st.integers(0, 7)),
                  max_size=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=writes_st, ops=ops_st)
def test_a_replayed_disk_reads_as_the_bytes_it_models(tmp_path, writes, ops):
    log = make_log(tmp_path, writes)
    model = bytearray(before(PART_OFFSET, PART_BYTES))
    undo: list[bytes] = []
    with log.opener() as data, DiskState(PART_OFFSET, PART_BYTES, before, data, log.entries) as state:
        for op, k in ops:
            e = log.entries[k % len(log.entries)]
            lo = e.offset - PART_OFFSET
            if op == "apply" and undo:  # plain applies only below the undoable ones (as the sweep does)
                op = "undoable"
            if op in ("apply", "undoable"):
                if op == "undoable":
                    undo.append(bytes(model))
                state.apply(e, undoable=op == "undoable")
                model[lo:lo + e.length] = data.read(e, 0, e.length)
            elif op == "swap" and undo:
                # The last write applied, left out for a moment: the disk without it, then with.
                mark = len(undo) - 1
                last = state._undo[-1][0]
                e = log.entries[last]
                lo = e.offset - PART_OFFSET
                now = state.swap_out(e, mark)
                assert state.read(lo, e.length) == undo[-1][lo:lo + e.length]
                assert not state.applied[e.index]
                state.swap_in(e, now)
            elif op == "undo" and undo:
                state.undo_to(len(undo) - 1)
                model[:] = undo.pop()
            elif op == "compare":  # the same bytes in an image: no difference, and the image's CRCs adopted
                path = tmp_path / "model.img"
                path.write_bytes(bytes(PART_OFFSET) + bytes(model))
                assert state.first_difference(path) is None
                body = k * 512
                state.adopt_crcs(body, CHUNK, [google_crc32c.value(bytes(model[lo:lo + CHUNK]))
                                               for lo in range(body, PART_BYTES - CHUNK + 1, CHUNK)])
            elif op == "reset":
                state.reset()
                undo.clear()
                model[:] = before(PART_OFFSET, PART_BYTES)
            assert state.read(0, PART_BYTES) == bytes(model)
            nonzero = [i for i in range(100, 3000) if model[i]]
            assert state.first_data(100, 3000) == (nonzero[0] if nonzero else None)
            assert state.first_data(100, 2048) == next((i for i in range(100, 2048) if model[i]), None)
            assert state.read(700, 3000) == bytes(model[700:3700])
            count = PART_BYTES // CHUNK
            assert state.chunk_crcs(0, CHUNK, count, PART_BYTES) == \
                [google_crc32c.value(bytes(model[i:i + CHUNK])) for i in range(0, PART_BYTES, CHUNK)]
            assert state.chunk_crcs(1024, CHUNK, 3, 1024 + 2 * CHUNK + 100)[-1] == \
                google_crc32c.value(bytes(model[1024 + 2 * CHUNK:1024 + 2 * CHUNK + 100]))


def test_a_difference_from_the_image_is_found_at_its_byte(tmp_path):
    log = make_log(tmp_path, [(2, 4, 1), (10, 1, 2)])
    image = bytearray(before(0, PART_OFFSET + PART_BYTES))
    for e in log.entries:
        image[e.offset:e.end] = log.data(e)
    path = tmp_path / "dump.img"
    path.write_bytes(bytes(image))
    with log.opener() as data, DiskState(PART_OFFSET, PART_BYTES, before, data, log.entries) as state:
        assert state.first_difference(path) is not None  # nothing applied yet
        for e in log.entries:
            state.apply(e)
        assert state.first_difference(path) is None
        image[PART_OFFSET + 5000] ^= 1  # a byte no logged write made
        path.write_bytes(bytes(image))
        assert state.first_difference(path) == 5000
        path.write_bytes(bytes(image[:PART_OFFSET + 3000]))  # an image cut short
        assert state.first_difference(path) == 3000


def test_an_initial_content_that_fills_in_place_compares_the_same(tmp_path):
    """A canary disk (images/canary.py's Canary, which fills the comparison's buffer in place)
    is found equal, and a difference in its unwritten sectors found at its byte, as with the
    same content given as bytes."""
    seed = 0x5EED
    log = make_log(tmp_path, [(2, 4, 1), (40, 3, 2)])
    image = bytearray(canary.expected(0, PART_OFFSET + PART_BYTES, seed))
    for e in log.entries:
        image[e.offset:e.end] = log.data(e)
    path = tmp_path / "dump.img"
    path.write_bytes(bytes(image))
    for initial in (canary.Canary(seed), lambda offset, length: canary.expected(offset, length, seed)):
        with log.opener() as data, DiskState(PART_OFFSET, PART_BYTES, initial, data, log.entries) as state:
            for e in log.entries:
                state.apply(e)
            assert state.first_difference(path) is None
            image[PART_OFFSET + 20 * 512 + 9] ^= 1  # a canary sector no write touched
            path.write_bytes(bytes(image))
            assert state.first_difference(path) == 20 * 512 + 9
            image[PART_OFFSET + 20 * 512 + 9] ^= 1
            path.write_bytes(bytes(image))


def test_a_write_outside_the_partition_is_refused(tmp_path):
    log = make_log(tmp_path, [(60, 8, 1)])
    with log.opener() as data, DiskState(PART_OFFSET, PART_BYTES - 4096, before, data, log.entries) as state:
        with pytest.raises(ValueError, match="outside the dump partition"):
            state.apply(log.entries[0])


def test_the_images_crcs_are_taken_for_the_chunks_found_equal(tmp_path):
    """adopt_crcs keeps each whole chunk's CRC for where its bytes come from: the state reads
    them back (marked here, so taken, not computed) in this state and in any other whose chunk
    has the same source."""
    log = make_log(tmp_path, [(2, 4, 1), (10, 1, 2), (20, 30, 3)])
    image = bytearray(before(0, PART_OFFSET + PART_BYTES))
    for e in log.entries:
        image[e.offset:e.end] = log.data(e)
    path = tmp_path / "dump.img"
    path.write_bytes(bytes(image))
    model = image[PART_OFFSET:]
    marked = [google_crc32c.value(bytes(model[lo:lo + CHUNK])) ^ 1 for lo in range(0, PART_BYTES, CHUNK)]
    with log.opener() as data, DiskState(PART_OFFSET, PART_BYTES, before, data, log.entries) as state:
        for e in log.entries:
            state.apply(e)
        assert state.first_difference(path) is None
        state.adopt_crcs(0, CHUNK, marked)
        assert state.chunk_crcs(0, CHUNK, len(marked), PART_BYTES) == marked
        state.reset()
        state.apply(log.entries[2])  # chunks 10..24: the same log bytes as then
        assert state.chunk_crcs(0, CHUNK, len(marked), PART_BYTES)[11:24] == marked[11:24]
