"""The write-sizes oracle: QEMU's log of the guest's write commands after the crash.

A write appended to a synthetic run's trace is a command of the device log too
(harness/dumpbed/capture/cmdlog.py): inside the dump partition, taken after the guest's DONE and never finished,
it also breaks the write order; outside it, after the guest's QUIESCED, it is runtime I/O that
went on during the dump (runtime-io)."""
from __future__ import annotations

import json

from dumpbed.capture import cmdlog, writelog
from dumpbed.oracles.validate import validate_run
from dumpbed.scenario import disks


def failed(v):
    return {c.name for c in v.checks if not c.ok}


def append_trace(run, line: str) -> None:
    with open(run.dir / "qemu-trace.log", "a") as f:
        f.write(line + "\n")


def blk_write(run, part_offset: int, nbytes: int, t: float = 1_800_000_100.0) -> str:
    sector = (run.part_offset + part_offset) // 512
    return f"1@{t:.6f}:virtio_blk_handle_write vdev 0x1 req 0x2 sector {sector} nsectors {nbytes // 512}"


def test_good_run_passes_write_sizes(good_run):
    check = validate_run(good_run.dir).check("write-sizes")
    assert check.ok, check.detail
    assert "writes after the crash" in check.detail


def test_write_outside_the_partition_fails_write_sizes_and_runtime_io(good_run):
    append_trace(good_run, blk_write(good_run, good_run.part_bytes, 4096))
    v = validate_run(good_run.dir)
    assert failed(v) == {"write-sizes", "runtime-io"}
    assert "outside the dump partition" in v.check("write-sizes").detail
    assert "runtime I/O went on during the dump" in v.check("runtime-io").detail


def test_write_before_the_partition_fails(good_run):
    append_trace(good_run, blk_write(good_run, -4096, 4096))
    assert failed(validate_run(good_run.dir)) == {"write-sizes", "runtime-io"}


def test_write_larger_than_max_transfer_fails(good_run):
    big = good_run.header["max_transfer"] * 2
    append_trace(good_run, blk_write(good_run, 1 << 20, big))
    v = validate_run(good_run.dir)
    assert failed(v) == {"write-sizes", "write-order"}  # write-order: a write taken after DONE
    assert "DUMPQUERY limits" in v.check("write-sizes").detail
    assert "was taken after the guest reported DONE" in v.check("write-order").detail


def test_write_not_a_multiple_of_min_transfer_fails(make_run):
    run = make_run(block_size=4096)
    append_trace(run, blk_write(run, 1 << 20, 512))
    assert failed(validate_run(run.dir)) == {"write-sizes", "write-order"}


def test_writes_before_the_crash_are_runtime_io_and_ignored(good_run):
    append_trace(good_run, blk_write(good_run, -(1 << 20), 512, t=1_700_000_000.0))
    assert validate_run(good_run.dir).check("write-sizes").ok


def test_missing_trace_fails(good_run):
    """Without the trace no flush is known: consistency must take every write as one a crash
    could lose, in any subset, and finds corrupt states among them."""
    (good_run.dir / "qemu-trace.log").unlink()
    v = validate_run(good_run.dir)
    assert failed(v) == {"write-sizes", "write-order", "consistency"}
    assert "that the device's command log does not account for" in v.check("write-order").detail


def test_empty_trace_for_an_existing_dump_fails(good_run):
    (good_run.dir / "qemu-trace.log").write_text("")
    v = validate_run(good_run.dir)
    assert failed(v) == {"write-sizes", "write-order", "consistency"}
    assert "no write was logged" in v.check("write-sizes").detail


def test_scsi_trace_is_parsed_to_byte_offsets(tmp_path):
    log = tmp_path / "t.log"
    log.write_text(
        "7@100.000001:scsi_req_parsed target 1 lun 0 tag 5 command 138 dir 2 length 1048576\n"
        "7@100.000002:scsi_req_parsed_lba target 1 lun 0 tag 5 command 138 lba 4294967296\n"
        "7@100.000003:scsi_req_parsed target 1 lun 0 tag 6 command 40 dir 1 length 4096\n"
        "7@100.000004:scsi_req_parsed_lba target 1 lun 0 tag 6 command 40 lba 8\n"
        "7@100.000005:scsi_req_parsed target 1 lun 0 tag 7 command 42 dir 2 length 8192\n"
        "7@100.000006:scsi_req_parsed_lba target 1 lun 0 tag 7 command 42 lba 16\n")
    writes = writelog.parse(log, disks.SCSI_BUS, 512)
    assert [(w.command, w.target, w.offset, w.length) for w in writes] == [
        ("WRITE(16)", 1, 4294967296 * 512, 1048576),  # a READ(10) in between is not a write
        ("WRITE(10)", 1, 16 * 512, 8192),
    ]
    assert writes[0].time == 100.000002


def as_scsi(run) -> None:
    """The run as a virtio-scsi disk at target 0 LUN 0 would have traced it: each virtio-blk
    command (a write, or a flush: a request never announced) as the SCSI command it would be,
    taken and dequeued at the same times; the result channel's bytes as they were."""
    scenario = json.loads((run.dir / "scenario.json").read_text())
    scenario["disk"] = "virtio-scsi"
    scenario["topology"] = {"kind": "virtio-scsi", "dump_disk": {"target": 0, "lun": 0}, "other_disks": []}
    (run.dir / "scenario.json").write_text(json.dumps(scenario))
    log = cmdlog.read(run.dir, run.block_size)
    lines = [line for line in (run.dir / "qemu-trace.log").read_text().splitlines()
             if "memory_region_ops_write" in line]
    for tag, c in enumerate(log.commands):
        if c.kind == "write":
            lines.append(f"1@{c.issued:.6f}:scsi_req_parsed target 0 lun 0 tag {tag} command 42 dir 2 length {c.length}")
            lines.append(f"1@{c.issued:.6f}:scsi_req_parsed_lba target 0 lun 0 tag {tag} command 42 lba "
                         f"{c.offset // run.block_size}")
        else:
            lines.append(f"1@{c.issued:.6f}:scsi_req_parsed target 0 lun 0 tag {tag} command 53 dir 0 length 0")
        lines.append(f"1@{c.completed:.6f}:scsi_req_dequeue target 0 lun 0 tag {tag}")
    lines.sort(key=lambda line: float(line.split("@")[1].split(":")[0]))  # stable: parsed before its lba
    (run.dir / "qemu-trace.log").write_text("\n".join(lines) + "\n")


def test_scsi_write_to_another_disk_fails(good_run):
    as_scsi(good_run)
    v = validate_run(good_run.dir)
    assert v.ok, [(c.name, c.detail) for c in v.checks if not c.ok]  # the same run, on a SCSI disk
    writes = sum(op.kind == "write" for op in good_run.ops)
    assert v.check("write-sizes").detail.startswith(f"{writes} writes after the crash")
    append_trace(good_run, "1@1800000200.000000:scsi_req_parsed target 3 lun 0 tag 99 command 42 dir 2 length 512")
    append_trace(good_run, "1@1800000200.000000:scsi_req_parsed_lba target 3 lun 0 tag 99 command 42 lba 0")
    v = validate_run(good_run.dir)
    assert failed(v) == {"write-sizes"}
    assert "target 3" in v.check("write-sizes").detail


def test_a_scsi_command_with_sense_failed_and_one_without_finished():
    trace = [
        "1@10.000001:scsi_req_parsed target 0 lun 0 tag 1 command 42 dir 2 length 4096",
        "1@10.000002:scsi_req_parsed_lba target 0 lun 0 tag 1 command 42 lba 8",
        "1@10.000003:scsi_req_parsed target 0 lun 0 tag 2 command 42 dir 2 length 4096",
        "1@10.000004:scsi_req_parsed_lba target 0 lun 0 tag 2 command 42 lba 16",
        # EIO through scsi-disk's error path: MEDIUM ERROR, unrecovered read/write error
        "1@10.000005:scsi_req_build_sense target 0 lun 0 tag 1 key 0x03 asc 0x11 ascq 0x00",
        "1@10.000006:scsi_req_dequeue target 0 lun 0 tag 1",
        "1@10.000007:scsi_req_dequeue target 0 lun 0 tag 2",
    ]
    failed_write, good_write = cmdlog.parse(trace, 512).commands
    assert failed_write.status == 0x02031100 and failed_write.completed == 10.000006
    assert good_write.status is None and good_write.completed == 10.000007
