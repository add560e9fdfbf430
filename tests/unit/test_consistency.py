"""The consistency oracle (harness/dumpbed/oracles/consistency.py) on synthetic runs: every disk state the
write log rebuilds (after each write, and the unflushed writes in any subset at each flush) of a
run that kept the v3 write order reads none, partial or complete as the format promises
(docs/dump-format.md, "Durability"); evidence of a writer that broke the order shows a state
that does not, and a log that does not explain the image fails.

The broken runs keep their image: only the device's logs and the result channel are rewritten
from an edited copy of the writer's steps (tests/support/synth.py, write_evidence/write_log)."""

from __future__ import annotations

import re

import pytest
import synth
from hypothesis import given, settings, strategies as st

from dumpbed.capture import blklog
from dumpbed.oracles import dumpio
from dumpbed.oracles.validate import validate_run

MiB = 1 << 20


def failed(v) -> set[str]:
    return {c.name for c in v.checks if not c.ok}


def states(detail: str) -> dict[str, int]:
    """'276 states of 83 writes (...): 1 complete, 1 none, 274 partial; ...' -> {status: count}."""
    counts = detail.split("): ", 1)[1].split(";")[0]
    return {status: int(n) for n, status in (part.split() for part in counts.split(", "))}


def flush_after(ops, what: str, nth: int = -1) -> int:
    """Position of the nth flush that follows a write of `what` (default: the last)."""
    return [i + 1 for i, op in enumerate(ops[:-1]) if op.kind == "write" and op.what == what
            and ops[i + 1].kind == "flush"][nth]


@pytest.mark.parametrize("options,expect", [
    (dict(), {"complete": 1, "none": 1}),
    (dict(block_size=4096), {"complete": 1, "none": 1}),
    (dict(samples="all", level=5), {"complete": 1, "none": 1}),
    (dict(samples="default", generation=2), {"complete": 1, "none": 1}),
    (dict(ram_bytes=96 * MiB), {"complete": 1, "none": 1}),
    (dict(state="in-progress", spill=65536), {"none": 1}),
    (dict(state="failed", cut_inside=True, body_written=0x100000), {"none": 1}),
    (dict(state="in-progress", slot=0, spill=3 * 65536), {"none": 1}),
], ids=["complete", "b4096", "samples", "restarted", "checkpoint-at-64MiB", "in-progress", "failed", "begun"])
def test_every_state_of_a_synthetic_run_reads(make_run, options, expect):
    """Only the disk before the first leader lands reads none, only the final one complete (the
    final leader is the commit); every other state, reordered ones included, is partial."""
    run = make_run(**options)
    v = validate_run(run.dir)
    assert failed(v) == set(), [(c.name, c.detail) for c in v.checks if not c.ok]
    detail = v.check("consistency").detail
    writes = sum(op.kind == "write" for op in run.ops)
    m = re.match(rf"(\d+) states of {writes} writes \((\d+) at write boundaries, (\d+) reordered", detail)
    assert m and int(m[2]) == writes + 1 and int(m[1]) == int(m[2]) + int(m[3]), detail
    found = states(detail)
    assert {s: n for s, n in found.items() if s != "partial"} == expect
    assert found["partial"] == int(m[1]) - sum(expect.values())
    assert detail.endswith("none corrupt, every partial state's areas final, complete only once everything before "
                           "the commit was durable")


def test_without_flushes_a_crash_could_leave_a_corrupt_disk(make_run):
    """No flush: every write may be lost or land in any order; among those states are leaders
    vouching for slots that never landed, and the commit lands before the rest was durable."""
    run = make_run()
    synth.write_evidence(run, [op for op in run.ops if op.kind != "flush"])
    v = validate_run(run.dir)
    assert {"write-order", "consistency"} <= failed(v)
    problems = v.check("consistency").problems
    assert problems[0].startswith("the disk reads complete once write 83 of 4096 bytes at partition offset 0x10000")
    assert problems[0].endswith("was durable: complete before the final flush")
    assert any(re.search(r"reads corrupt: directory slot [12]: CRC32C", p) for p in problems)


def test_a_leader_landing_before_its_slot_reads_corrupt(make_run):
    """The first checkpoint's flush left out: just before the flush after its leader, the leader
    may be on the disk while the directory slot it names is not."""
    run = make_run()
    ops = list(run.ops)
    del ops[flush_after(ops, "slot 1", 0)]  # the first checkpoint's
    synth.write_evidence(run, ops)
    v = validate_run(run.dir)
    assert failed(v) == {"write-order", "consistency"}
    problems = v.check("consistency").problems
    assert all(p.startswith("the disk just before the flush finishing at") for p in problems)
    assert any(p.endswith("reads corrupt: directory slot 1: CRC32C 0x851f2332, header says 0xac8a6d9c") for p in problems)
    assert any("lost reads corrupt: area 0 (crash-record): padding: nonzero byte" in p for p in problems)


def test_the_commit_before_the_trailer_is_durable_fails(make_run):
    """The flush after the trailer left out: the final leader may land while the trailer does not
    (a COMPLETE leader without its trailer), and the first complete state came too early."""
    run = make_run()
    ops = list(run.ops)
    del ops[flush_after(ops, "trailer")]
    synth.write_evidence(run, ops)
    v = validate_run(run.dir)
    assert failed(v) == {"write-order", "consistency"}
    problems = v.check("consistency").problems
    assert problems[0].startswith("the disk reads complete once write 83 of 4096 bytes at partition offset 0x10000")
    assert "before write 82 of 512 bytes at partition offset" in problems[0]
    assert problems[0].endswith("was durable: complete before the final flush")
    assert problems[1].endswith("lost reads corrupt: trailer block: no header magic, but the leader is COMPLETE")


def test_a_write_log_missing_a_slot_write_the_image_holds_fails(make_run):
    """The final directory write is on the image (and in the trace) but not in the write log:
    replayed, the disk ends with the previous checkpoint's directory in the final leader's slot."""
    run = make_run()
    victim = [op for op in run.ops if op.kind == "write" and op.what == f"slot {run.slot}"][-1]
    assert victim.offset == run.dir_at
    synth.write_log(run, [op for op in run.ops if op is not victim])
    v = validate_run(run.dir)
    assert "consistency" in failed(v)
    problems = v.check("consistency").problems
    # The log no longer explains the disk: its states would not be the disk's, so none is judged.
    assert problems == [f"the write log does not explain the final disk: replayed on the disk as it was before the "
                        f"run, it differs from the image at partition offset 0x{victim.offset + 12:x} (a change that "
                        f"no logged write made); its states were not examined"]


def test_a_write_log_missing_a_body_write_the_image_holds_fails(make_run):
    """The replay starts from the partition as it was before the run (its canary), so bytes that
    no logged write put there show when the last state is held to the image."""
    run = make_run()
    victim = [op for op in run.ops if op.kind == "write" and op.what == "body"][5]
    synth.write_log(run, [op for op in run.ops if op is not victim])
    v = validate_run(run.dir)
    assert "consistency" in failed(v)
    problems = v.check("consistency").problems
    assert len(problems) == 1 and problems[0].startswith("the write log does not explain the final disk")


def test_an_image_changed_after_the_dump_is_not_explained_by_its_log(good_run):
    run = good_run
    at = run.area("ram-high").disk_offset + 0x1234
    run.flip(run.part_offset + at)
    v = validate_run(run.dir)
    assert v.check("consistency").problems == [
        f"the write log does not explain the final disk: replayed on the disk as it was before the run, it "
        f"differs from the image at partition offset 0x{at:x} (a change that no logged write made); its states "
        f"were not examined"]


def test_a_body_write_retried_with_the_same_bytes_leaves_every_state_readable(make_run):
    """The same transfer sent twice is a retry (docs/dump-format.md, Body): the write order allows
    it (test_write_order.py), and no state of the disk differs from one of the run without it."""
    run = make_run()
    ops = list(run.ops)
    body = [i for i, op in enumerate(ops) if op.kind == "write" and op.what == "body"][3]
    ops.insert(body + 1, ops[body])
    synth.write_evidence(run, ops)
    v = validate_run(run.dir)
    assert failed(v) == set()
    assert v.check("consistency").detail.startswith("279 states of 84 writes")


def test_a_partial_state_listing_an_area_whose_write_is_missing_fails(make_run):
    """A body write sent again after the leader that vouches for its area: the driver wrote that
    leader while it had given up on the transfer ("a leader is written only once everything it
    vouches for is durable"). The first attempt's bytes are on the disk, so every state reads
    partial; but until the second lands, a state lists the area as written without every write
    of its bytes (the sweep's subset test of the writers, a mask of the applied log entries)."""
    run = make_run()
    ops = list(run.ops)
    leaders = [i for i, op in enumerate(ops) if op.kind == "write" and op.what == "leader"]
    body = next(i for i in range(leaders[1], leaders[2]) if ops[i].kind == "write" and ops[i].what == "body")
    ops.insert(leaders[2] + 2, ops[body])  # after the leader that lists it, and its flush
    synth.write_evidence(run, ops)
    v = validate_run(run.dir)
    assert failed(v) == {"consistency"}
    problems = v.check("consistency").problems
    area = run.area_index("kernel-text")
    assert problems[0] == (f"the disk after 11 of 84 writes reads partial and lists area {area} (kernel-text) as "
                           f"written, but write 12 of 131072 bytes at partition offset "
                           f"0x{run.area('kernel-text').disk_offset:x}, taken at +3.69 ms, which writes its bytes, "
                           f"is not on the disk")
    assert all("reads partial and lists area" in p for p in problems)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["write", "flush"]), st.integers(0, 40), st.integers(0, 10),
                          st.booleans()), min_size=1, max_size=25),
       st.integers(-1, 60))
def test_durable_just_before_t_is_durable_since_before_t(commands, t):
    """The reorder sweep takes a write as durable just before t when durable_since < t: so it is
    exactly when a good flush taken after the write finished had finished before t, for any
    writes and flushes, taken and finished in any order, finished or not."""
    cmds = [dumpio.DumpCommand(i, kind, i + 1, 0, 512 if kind == "write" else 0, float(taken),
                               float(taken + took) if done else None, True,
                               [blklog.Entry(i, 0, 1, 0, 0)] if kind == "write" else [])
            for i, (kind, taken, took, done) in enumerate(commands)]
    io = dumpio.DeviceIO("primary", None, 0, 1 << 20, 0.0, cmds, None, [], [])
    for w in io.writes:
        since = io.durable_since(w)
        covered = w.finished is not None and any(f.ok and f.finished is not None and f.issued >= w.finished and f.finished < t
                                                 for f in io.flushes)
        assert covered == (since is not None and since < t)
