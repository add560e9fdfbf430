"""The write-order oracle (harness/dumpbed/oracles/write_order.py) on synthetic runs: the writer's writes and
flushes as the device logs them (tests/support/synth.py records them as it plays the v3 write
order) keep every durability rule of docs/dump-format.md; the same run with its evidence
rewritten to break one rule fails it.

Each broken run keeps its image: only the device's logs (write log and trace) and the result
channel are rewritten from an edited copy of the writer's steps (synth.write_evidence)."""

from __future__ import annotations

import pytest
import synth

from dumpbed.capture import cmdlog, writelog
from dumpbed.oracles import dumpio, write_order as checks_write_order
from dumpbed.oracles.validate import validate_run

MiB = 1 << 20


def failed(v) -> set[str]:
    return {c.name for c in v.checks if not c.ok}


def all_problems(run) -> list[str]:
    """Every problem of the write order on the run's device (the check keeps the first 20)."""
    cmds = cmdlog.read(run.dir, run.block_size)
    io = dumpio.load("primary", run.image, "virtio-blk", 0, 0, 0, run.part_offset, run.part_bytes,
                     writelog.crash_time(run.dir), cmds)
    done = cmds.result("DONE")
    return checks_write_order.device_problems(io, done[0].time if done else None, True)[0]


def index(ops, kind: str, what: str = "", nth: int = 0) -> int:
    """Position of the nth step of this kind (and `what`, for writes) in ops (negative nth: from the end)."""
    found = [i for i, op in enumerate(ops) if op.kind == kind and (not what or op.what == what)]
    return found[nth]


@pytest.mark.parametrize("options", [
    dict(), dict(block_size=4096), dict(samples="all", level=5), dict(samples="default", generation=2),
    dict(slot=2), dict(ram_bytes=96 * MiB), dict(state="in-progress"), dict(state="in-progress", spill=65536),
    dict(state="failed"), dict(state="failed", spill=8192, cut_inside=True, body_written=0x100000),
    dict(state="in-progress", slot=0, spill=3 * 65536), dict(state="failed", slot=0, spill=3 * 65536),
], ids=["complete", "b4096", "samples", "restarted", "slot2", "checkpoint-at-64MiB", "in-progress", "spill",
        "failed", "failed-inside-an-area", "begun", "failed-begun"])
def test_a_synthetic_run_keeps_every_rule(make_run, options):
    run = make_run(**options)
    v = validate_run(run.dir)
    assert failed(v) == set(), [(c.name, c.detail) for c in v.checks if not c.ok]
    detail = v.check("write-order").detail
    landed = sum(op.kind == "write" for op in run.ops)  # a write the device failed changed nothing
    flushes = sum(op.kind == "flush" for op in run.ops)
    assert detail.startswith(f"{landed} writes and {flushes} flushes after the crash, at most 1 in flight at once "
                             "(DUMPQUERY: 1)")
    leaders = [op for op in run.ops if op.kind == "write" and op.what == "leader"]
    assert f"{len(leaders)} leaders" in detail
    last = {"complete": "COMPLETE", "in-progress": "IN_PROGRESS", "failed": "FAILED"}[options.get("state", "complete")]
    assert f"the last {last}" in detail
    if options.get("state") != "in-progress":
        assert detail.endswith("every write and flush finished before DONE")


def test_the_leaders_alternate_between_the_slots(make_run):
    """The first leader names no slot; the checkpoints take slot 1, then 2, 1, ...; the final
    leader the slot after the last checkpoint's."""
    run = make_run()  # 4 components: 4 checkpoints (1, 2, 1, 2), the final writes in slot 1
    v = validate_run(run.dir)
    assert "6 leaders (slots 12121), the last COMPLETE" in v.check("write-order").detail


def test_without_flushes_nothing_is_durable(make_run):
    """A driver that never flushes: no leader of the dump is ever durable, so every write after
    the first leader breaks rule 1, and every header vouches for writes that may be lost."""
    run = make_run()
    synth.write_evidence(run, [op for op in run.ops if op.kind != "flush"])
    v = validate_run(run.dir)
    assert {"write-order", "consistency"} <= failed(v)
    assert v.check("write-order").detail.startswith("write 2 of 4096 bytes at partition offset 0x43000")
    problems = all_problems(run)
    others = sum(op.kind == "write" and op.what != "leader" for op in run.ops)  # leaders may come first
    assert sum(p.endswith("was taken before any leader of this dump was durable") for p in problems) == others
    assert any("was taken at" in p and "before the slot 1 write" in p for p in problems)
    assert problems[-1].startswith("the final leader") and problems[-1].endswith(
        "was not durable when the guest reported DONE (no flush after it had finished)")


def test_a_leader_before_its_slot_is_flushed_fails(make_run):
    """The first checkpoint's flush left out: its leader is taken while the slot it names (and
    the body it vouches for) may still be lost."""
    run = make_run()
    ops = list(run.ops)
    leader = index(ops, "write", "leader", 1)  # the first checkpoint's leader
    assert ops[leader - 1].kind == "flush" and ops[leader - 2].what == "slot 1"
    del ops[leader - 1]
    synth.write_evidence(run, ops)
    v = validate_run(run.dir)
    assert failed(v) == {"write-order", "consistency"}
    problems = v.check("write-order").problems
    leader = "the leader (write 5: IN_PROGRESS, slot 1, body_written 4096) was taken at"
    assert len(problems) == 3 and all(p.startswith(leader) for p in problems)
    # the table and directory slot writes, and the body it vouches for (the crash record)
    assert [p.split(" ms before the ")[1].split(" write ")[0] for p in problems] == ["slot 1", "slot 1", "body"]
    assert all(p.endswith("was durable") for p in problems)
    # and the consistency oracle finds the disk that the flush had to prevent: the leader landed, the slot not
    assert "reads corrupt: directory slot 1: CRC32C" in v.check("consistency").detail


def test_a_slot_written_while_a_leader_naming_it_may_be_on_disk_fails(make_run):
    """The second checkpoint writes slot 1 again (the alternation broken): the leader on disk
    names slot 1."""
    run = make_run()
    ops = list(run.ops)
    second = index(ops, "write", "leader", 2)  # the second checkpoint's leader, naming slot 2
    slot_writes = [i for i in range(second) if ops[i].what == "slot 2"]
    for i in slot_writes:  # the same bytes, into slot 1
        op = ops[i]
        offset = op.offset - run.dir_bytes if op.offset < run.table_offset else op.offset - run.table_bytes
        ops[i] = synth.Io("write", offset, op.length, op.data, "slot 1")
    synth.write_evidence(run, ops)
    v = validate_run(run.dir)
    assert "write-order" in failed(v)
    assert any("writes slot 1 while the leader" in p and "slot 1" in p and "may still be on disk" in p
               for p in v.check("write-order").problems)


def test_a_body_transfer_sent_again_whole_with_its_bytes_is_a_retry(make_run):
    """A driver that gave up waiting (a stall longer than its timeout) sends the transfer again:
    the same place, length and bytes. That is the one way body bytes may be written twice."""
    run = make_run()
    ops = list(run.ops)
    body = index(ops, "write", "body", 3)
    ops.insert(body + 1, ops[body])
    synth.write_evidence(run, ops)
    v = validate_run(run.dir)
    assert v.ok, [(c.name, c.problems) for c in v.checks if not c.ok]


@pytest.mark.parametrize("change", ["other bytes", "a part of it"])
def test_body_bytes_written_twice_other_than_by_a_retry_fail(make_run, change):
    """Other bytes first at the same place (the right ones after them: the disk ends as it would
    have), or a part of a transfer sent again: no byte of the body is written twice."""
    run = make_run()
    ops = list(run.ops)
    body = index(ops, "write", "body", 3)
    w = ops[body]
    if change == "other bytes":
        ops.insert(body, synth.Io("write", w.offset, w.length, bytes(b ^ 0xFF for b in w.data), "body"))
    else:
        half = w.length // 2
        ops.insert(body + 1, synth.Io("write", w.offset, half, bytes(w.data[:half]), "body"))
    synth.write_evidence(run, ops)
    v = validate_run(run.dir)
    assert failed(v) == {"write-order"}  # every state of the disk still reads
    problem, = v.check("write-order").problems
    assert "already wrote (the body is written once; a retry sends the same transfer again)" in problem
    assert f"at partition offset 0x{w.offset:x}" in problem


def test_a_write_the_device_took_but_that_is_missing_from_the_write_log_fails(make_run):
    """A body write the trace shows completed, whose bytes the write log does not hold (the
    image does): every header after it vouches for body nothing was written to."""
    run = make_run()
    victim = run.ops[index(run.ops, "write", "body", 5)]
    synth.write_log(run, [op for op in run.ops if op is not victim])
    v = validate_run(run.dir)
    assert "write-order" in failed(v)
    problems = v.check("write-order").problems
    unlogged = [p for p in problems if "without an error, but its bytes are not (all) in the write log" in p]
    assert len(unlogged) == 1 and "(1 such writes)" in unlogged[0]
    vouching = [p for p in problems if p not in unlogged]
    assert all(f"but nothing was written at 0x{victim.offset:x} before it" in p for p in vouching)
    assert any(p.startswith("the trailer (") for p in vouching) and len(vouching) >= 3


@pytest.mark.parametrize("before", ["the last flush", "the final leader"])
def test_done_before_the_last_write_completed_fails(make_run, before):
    """The guest says DONE while the commit is still on its way: the final leader is not durable."""
    run = make_run()
    ops = list(run.ops)
    done = ops.pop()
    assert done.text.startswith("DUMPBED DONE status=complete")
    ops.insert(len(ops) - (1 if before == "the last flush" else 2), done)
    synth.write_evidence(run, ops)
    v = validate_run(run.dir)
    assert failed(v) == {"write-order"}
    problems = v.check("write-order").problems
    late = "flush 12" if before == "the last flush" else "write 83 of 4096 bytes at partition offset 0x10000"
    assert problems[0].startswith(late) and problems[0].endswith("was taken after the guest reported DONE")
    assert problems[1].startswith("the final leader (leader (write 83: COMPLETE")
    assert problems[1].endswith("was not durable when the guest reported DONE (no flush after it had finished)")


def test_done_while_the_final_flush_is_in_flight_fails(make_run):
    """The final flush was taken before DONE but finished only after the DONE line's first byte
    (its completion moved to the end of the trace)."""
    run = make_run()
    trace = (run.dir / "qemu-trace.log").read_text().splitlines()
    last = max(i for i, line in enumerate(trace) if f"virtio_blk_req_complete vdev {synth.VDEV} req {synth.FLUSH_REQ}"
               in line)
    completion = trace.pop(last).split(":", 1)[1]
    end = float(trace[-1].split("@")[1].split(":")[0])
    trace.append(f"1@{end + synth.TICK:.6f}:{completion}")
    (run.dir / "qemu-trace.log").write_text("\n".join(trace) + "\n")
    v = validate_run(run.dir)
    assert failed(v) == {"write-order"}
    problems = v.check("write-order").problems
    assert problems[0].startswith("flush 12, taken at") and "ms after the guest reported DONE" in problems[0]
    assert "was not durable when the guest reported DONE" in problems[1]


# --- Rule 6: only body writes overlap, at most DUMPQUERY's max_outstanding at once -----------------

def overlap_with_next(run, write_number: int) -> None:
    """Rewrite the trace so the device's `write_number`th write (1-based) finishes only after the
    command that follows it was taken: the two are in flight together. Its request gets a pointer
    of its own, so its completion pairs with it alone."""
    trace = (run.dir / "qemu-trace.log").read_text().splitlines()
    takes = [i for i, line in enumerate(trace) if "virtio_blk_handle_write" in line]
    i = takes[write_number - 1]
    done = next(k for k in range(i + 1, len(trace)) if "virtio_blk_req_complete" in trace[k])
    after = next(k for k in range(done + 1, len(trace))
                 if "virtio_blk_handle_write" in trace[k] or "virtio_queue_notify" in trace[k])
    after = next((k for k in range(after, len(trace)) if "virtio_blk_handle_write" in trace[k]
                  or f"req {synth.FLUSH_REQ}" in trace[k]), after)
    own = lambda line: line.replace(f"req {synth.WRITE_REQ}", "req 0x99")
    trace[i] = own(trace[i])
    t_after = float(trace[after].split("@")[1].split(":")[0])
    moved = f"1@{t_after + synth.TICK / 2:.6f}:" + own(trace[done]).split(":", 1)[1]
    del trace[done]
    trace.insert(after, moved)  # `after` moved up by one with the deletion: right behind it
    (run.dir / "qemu-trace.log").write_text("\n".join(trace) + "\n")


def say_outstanding(run, n: int) -> None:
    """The guest's QUIESCED line as a driver with max_outstanding n prints it: the words added to
    the result channel's bytes in the trace (one event a byte), before the line's newline."""
    events = (run.dir / "qemu-trace.log").read_text().splitlines()
    port = [i for i, e in enumerate(events) if "addr 0xe9 value " in e]
    text = "".join(chr(int(events[i].split("value ")[1].split()[0], 16)) for i in port)
    k = port[text.index("DUMPBED QUIESCED device=primary\n") + len("DUMPBED QUIESCED device=primary")]
    stamp = lambda e: float(e.split("@")[1].split(":")[0])
    words = f" outstanding={n}"
    step = (stamp(events[k]) - stamp(events[k - 1])) / (len(words) + 1)
    events[k:k] = [f"1@{stamp(events[k - 1]) + (j + 1) * step:.7f}:"
                   + events[k].split(":", 1)[1].replace("value 0xa ", f"value 0x{ord(ch):x} ")
                   for j, ch in enumerate(words)]
    (run.dir / "qemu-trace.log").write_text("\n".join(events) + "\n")


def body_write_numbers(run) -> list[int]:
    """The 1-based numbers of the body writes followed by another body write."""
    writes = [op for op in run.ops if op.kind == "write"]
    return [n + 1 for n, (a, b) in enumerate(zip(writes, writes[1:])) if a.what == b.what == "body"]


def test_body_writes_in_flight_together_need_a_device_that_takes_them(make_run):
    """Two body writes in flight at once: a device whose DUMPQUERY said one at a time (no
    outstanding= on QUIESCED) fails rule 6; one that said 3 passes."""
    run = make_run()
    n = body_write_numbers(run)[3]
    overlap_with_next(run, n)
    v = validate_run(run.dir)
    assert failed(v) == {"write-order"}
    [problem] = v.check("write-order").problems
    assert problem.startswith(f"write {n + 1} of ") and problem.endswith(
        ": 2 writes in flight at once, where the device's DUMPQUERY said it takes 1 (QUIESCED outstanding=1)")
    say_outstanding(run, 3)
    v = validate_run(run.dir)
    assert failed(v) == set(), [(c.name, c.detail) for c in v.checks if not c.ok]
    assert "at most 2 in flight at once (DUMPQUERY: 3)" in v.check("write-order").detail


def test_a_slot_write_taken_while_a_body_write_is_in_flight_fails(make_run):
    """The last body write before a checkpoint still in flight when the slot write is taken:
    whatever the device said it takes, only body writes overlap."""
    run = make_run()
    writes = [op for op in run.ops if op.kind == "write"]
    n = next(k + 1 for k, (a, b) in enumerate(zip(writes, writes[1:])) if a.what == "body" and b.what.startswith("slot"))
    overlap_with_next(run, n)
    say_outstanding(run, 3)
    v = validate_run(run.dir)
    assert "write-order" in failed(v)
    problems = v.check("write-order").problems
    assert problems[0].startswith(f"write {n + 1} of ") and "was still in flight (only body writes overlap" in problems[0]
    assert f"write {n} of " in problems[0]


def _command(index: int, kind: str, offset: int, issued: float, finished):
    return dumpio.DumpCommand(index, kind, index + 1, offset, 4096 if kind == "write" else 0, issued, finished, True)


class _Body:
    """A geometry whose body starts at 1 MiB."""
    def region(self, c):
        return "body" if c.offset >= MiB else "slot 1"


def test_a_command_the_guest_may_have_given_up_on_no_longer_counts():
    """A write that never finished (QEMU ended first) or that was in flight longer than the
    guest's I/O timeout: the FAILED header after it is not taken while it is in flight."""
    io = dumpio.DeviceIO("primary", None, 0, 8 * MiB, 0.0, [
        _command(0, "write", MiB, 1.0, None),  # never finished
        _command(1, "write", 2 * MiB, 2.0, 30.0),  # finished long after the guest's 10 s
        _command(2, "write", 0x10000, 13.0, 13.1),  # the FAILED slot write
    ], None, [], [])
    assert checks_write_order._overlap_rule(io, _Body(), 1, 10.0, 0.0) == ([], 1)
    # without the timeout the slot write overlaps the second write
    [problem], most = checks_write_order._overlap_rule(io, _Body(), 1, None, 0.0)
    assert most == 2
    assert problem.startswith("write 3 of 4096 bytes at partition offset 0x10000") and "write 2 of" in problem
