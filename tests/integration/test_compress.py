"""Compressed dumps (`--compress lz4`, docs/dump-format.md "Compressed bodies"): the guest's LZ4
frames pass every oracle on memory that compresses and on memory that does not, through a restart
on the secondary and over the network, and a compressed dump that outgrows its partition ends
with E2BIG, everything before it intact. The compressor's own bugs: tests/integration/
test_broken_guests.py (lz4-offset, lz4-stuck)."""
from __future__ import annotations

import pytest

from dumpbed.guest_interface import Errno
from dumpbed.images import layout
from dumpbed.machine import resultchan
from dumpbed.reader import dumpfmt
from tests.support.reports import assert_complete

pytestmark = pytest.mark.dumpbed(memory="32M", compress="lz4")


def _dump(result) -> dumpfmt.Dump:
    lay = layout.load(result.run_dir / "layout.json")
    return dumpfmt.read(result.run_dir / lay.image, lay.dump_offset, lay.dump_size, lay.block_size)


def _done(result) -> resultchan.ResultLine:
    return next(line for line in resultchan.read_lines(result.run_dir / "result.log") if line.word == "DONE")


@pytest.mark.parametrize("fill,memory", [(False, "32M"), (True, "96M")], ids=["zeros", "filled"])
def test_a_compressed_dump_passes_every_oracle(dumpbed_run, fill, memory):
    """Filled, the body passes 64 MiB: a checkpoint falls inside the RAM area, whose directory
    lists it by its whole frames (the consistency oracle reads the disk at every write boundary,
    that checkpoint's state among them)."""
    result = dumpbed_run(fill=fill, memory=memory)
    assert_complete(result)
    dump = _dump(result)
    assert (dump.header.body_bytes > 64 << 20) == fill
    assert dump.header.compression == 1
    data = sum(a.length for a in dump.areas)
    stored = sum(a.stored_bytes for a in dump.areas)
    if fill:  # the fill pattern does not compress (RAW frames); the kernel and low memory do
        assert data // 2 < stored < data
    else:  # zeros mostly: the kernel image and the crash's own state are what is left
        assert stored < data // 8
    # the content oracle compared the decompressed bytes, every one that is not volatile
    assert result.report["content"]["bytes_checked"] > data // 2


def test_a_compressed_dump_that_outgrows_its_partition_fails_with_e2big(dumpbed_run):
    """The partition holds half the uncompressed dump, and filled RAM does not compress: the
    dump ends FAILED with E2BIG, partial, everything before the write that did not fit described."""
    result = dumpbed_run(faults=["enospc=50"])
    result.assert_passed()  # the run expects partial and DONE status=failed (the fault's declaration)
    dump = _dump(result)
    assert dump.status == "partial" and dump.header.status_name == "FAILED"
    assert dump.header.failure == Errno.E2BIG
    done = _done(result).fields
    assert int(done["error"]) == Errno.E2BIG and int(done["offset"]) == dump.header.failure_offset
    assert dump.header.failure_offset == dump.header.body_offset + dump.header.body_written
    assert dump.header.body_written > dump.partition_bytes // 4  # it got well into the body


def test_the_same_partition_holds_the_uncompressed_dump_of_zeros_only_when_compressed(dumpbed_run):
    """Uncompressed, half a partition is ENOSPC whatever the memory holds; the E2BIG case above
    differs only by compression."""
    result = dumpbed_run(faults=["enospc=50"], compress="off")
    result.assert_passed()
    dump = _dump(result)
    assert dump.header.compression == 0 and dump.header.failure == Errno.ENOSPC


def test_a_compressed_dump_restarts_on_the_secondary_compressed(dumpbed_run):
    result = dumpbed_run(disk="virtio-scsi", secondary="virtio-blk", faults=["eio-at=20"])
    result.assert_passed()
    assert result.report["dump"]["generation"] == 2
    assert result.report["dump"]["compression"] == "lz4"


@pytest.mark.dumpbed(memory="16M", accel="tcg")  # a frame per VM exit under nested KVM: TCG is faster
def test_a_compressed_network_dump(dumpbed_run):
    result = dumpbed_run(disk="virtio-net", fill=False)
    assert_complete(result)
    assert result.report["dump"]["compression"] == "lz4"
