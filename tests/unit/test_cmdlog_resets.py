"""The command log's resets (harness/dumpbed/capture/cmdlog.py): what a device reset ends, and how
the runtime-io oracle judges a runtime request held across the crash by it."""
from __future__ import annotations

from dumpbed.capture import cmdlog
from dumpbed.oracles.runtime_io import check_runtime_io

T = 1_800_000_000.0
CRASH = T + 1.0


def line(dt: float, text: str) -> str:
    return f"1@{T + dt:.6f}:{text}"


def quiesced(dt: float) -> list[str]:
    """The guest's QUIESCED line, byte by byte on the result channel."""
    text = "DUMPBED QUIESCED device=primary\n"
    return [line(dt, f"memory_region_ops_write cpu 0 mr 0x1 addr 0xe9 value 0x{ord(c):x} size 1 name 'isa-debugcon'")
            for c in text]


PARKED = [line(0.5, "virtio_blk_handle_write vdev 0xa req 0xb sector 4096 nsectors 16")]


def test_a_virtio_blk_reset_ends_a_request_it_parked_without_a_trace():
    log = cmdlog.parse(PARKED + [line(1.2, "virtio_set_status vdev 0xa val 0")] + quiesced(1.3), 512)
    cmd = log.commands[0]
    assert (cmd.completed, cmd.cancelled) == (None, T + 1.2)
    check = check_runtime_io(log, CRASH, "vblk:0xa", (0, 1 << 20))
    assert check.ok, check.detail


def test_a_request_the_reset_drained_completed():
    log = cmdlog.parse(PARKED + [line(1.2, "virtio_set_status vdev 0xa val 0"),
                                 line(1.25, "virtio_blk_req_complete vdev 0xa req 0xb status 0")] + quiesced(1.3), 512)
    assert log.commands[0].completed == T + 1.25
    assert check_runtime_io(log, CRASH, "vblk:0xa", (0, 1 << 20)).ok


def test_without_the_reset_the_held_request_fails_runtime_io():
    log = cmdlog.parse(PARKED + quiesced(1.3) + [line(1.5, "virtio_blk_req_complete vdev 0xa req 0xb status 0")],
                       512)
    check = check_runtime_io(log, CRASH, "vblk:0xa", (0, 1 << 20))
    assert not check.ok and "neither aborted nor reset" in check.detail


def test_another_devices_reset_ends_nothing_here():
    log = cmdlog.parse(PARKED + [line(1.2, "virtio_set_status vdev 0xc val 0")] + quiesced(1.3), 512)
    assert log.commands[0].end is None
    assert not check_runtime_io(log, CRASH, "vblk:0xa", (0, 1 << 20)).ok
