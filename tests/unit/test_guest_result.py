"""The guest-result oracle (harness/dumpbed/oracles/guest_result.py) on synthetic runs: the guest's DONE line
(docs/guest-interface.md) says what the scenario expects, QEMU's exit status agrees with it, and a
failure is the one the disk records (the FAILED header's errno and failure_offset, the write the
device failed). A run cut short (no DONE) expects none.

Broken runs keep their image: the result channel (result.log and its bytes in the trace) is
rewritten from an edited copy of the writer's steps (tests/support/synth.py, write_evidence), or
timeline.json is edited."""

from __future__ import annotations

import dataclasses
import json

import pytest
import synth

from dumpbed.oracles.validate import validate_run


def failed(v) -> set[str]:
    return {c.name for c in v.checks if not c.ok}


def said(run, old: str, new: str, word: str = "DONE") -> None:
    """The guest's `word` line with `old` replaced by `new`, in result.log and in the trace."""
    ops = list(run.ops)
    i = next(i for i, op in enumerate(ops) if op.kind == "line" and op.text.startswith(f"DUMPBED {word} "))
    assert old in ops[i].text, ops[i].text
    ops[i] = dataclasses.replace(ops[i], text=ops[i].text.replace(old, new))
    synth.write_evidence(run, ops)


def set_exit_status(run, status) -> None:
    path = run.dir / "timeline.json"
    timeline = json.loads(path.read_text())
    timeline["qemu_exit_status"] = status
    path.write_text(json.dumps(timeline))


@pytest.mark.parametrize("options,detail", [
    (dict(), "DONE status=complete bytes={bytes} device=primary generation=1; QEMU exit status 67"),
    (dict(block_size=4096), "DONE status=complete bytes={bytes} device=primary generation=1; QEMU exit status 67"),
    (dict(samples="default", generation=2),
     "DONE status=complete bytes={bytes} device=secondary generation=2; QEMU exit status 67"),
    (dict(state="failed"), "DONE status=failed error=5 stage=body offset={failure_offset} device=primary "
                           "generation=1; QEMU exit status 69 (errno and offset as the disk records them)"),
    (dict(state="failed", slot=0, spill=3 * 65536),
     "DONE status=failed error=5 stage=body offset={failure_offset} device=primary generation=1; QEMU exit status "
     "69 (errno and offset as the disk records them)"),
    (dict(state="failed", failure=synth.ENOSPC), "DONE status=failed error=28 stage=body offset={failure_offset} "
     "device=primary generation=1; QEMU exit status 69 (errno and offset as the disk records them)"),
    (dict(state="in-progress"), "no DONE, as expected: QEMU ended mid-dump (exit status None)"),
], ids=["complete", "b4096", "restarted", "failed", "failed-begun", "enospc", "in-progress"])
def test_what_a_synthetic_guest_says_agrees(make_run, options, detail):
    run = make_run(**options)
    v = validate_run(run.dir)
    assert failed(v) == set(), [(c.name, c.detail) for c in v.checks if not c.ok]
    extent = run.end_offset + 4096 - synth.LEADER + run.block_size
    assert v.check("guest-result").detail == detail.format(bytes=extent, failure_offset=run.header["failure_offset"])


def test_the_failed_write_is_in_the_device_log(make_run):
    """A FAILED dump of a device error: the device failed the write at failure_offset (status
    IOERR in the trace, nothing in the write log), which is where DONE says the failure was."""
    run = make_run(state="failed", spill=8192)
    lost = [op for op in run.ops if op.kind == "failed"]
    assert [(op.offset, op.what) for op in lost] == [(run.header["failure_offset"], "body")]
    trace = (run.dir / "qemu-trace.log").read_text()
    assert trace.count("status 1\n") == 1


def test_done_whose_offset_disagrees_with_the_failed_header_fails(make_run):
    run = make_run(state="failed")
    offset = run.header["failure_offset"]
    said(run, f"offset={offset}", f"offset={offset + 4096}")
    v = validate_run(run.dir)
    assert failed(v) == {"guest-result"}
    assert v.check("guest-result").problems == [
        f"offset={offset + 4096}, but the FAILED header's failure_offset is {offset}",
        f"the failure is said to be at offset {offset + 4096} (stage body), but the device failed the write at "
        f"partition offset {offset}"]


def test_done_whose_errno_disagrees_with_the_failed_header_fails(make_run):
    run = make_run(state="failed")
    said(run, "error=5 ", "error=110 ")
    v = validate_run(run.dir)
    assert failed(v) == {"guest-result"}
    assert v.check("guest-result").problems == ["error=110, but the FAILED header's failure is 5"]


def test_a_device_failure_reported_at_a_stage_that_is_no_write_fails(make_run):
    run = make_run(state="failed")
    said(run, "stage=body", "stage=pinning")
    v = validate_run(run.dir)
    assert failed(v) == {"guest-result"}
    assert v.check("guest-result").problems == [
        f"the device failed the dump's write at partition offset {run.header['failure_offset']}, but the failure is "
        f"reported at stage 'pinning', not a write"]


def test_done_far_from_the_write_the_device_failed_fails(make_run):
    """The FAILED header and DONE agree, but the write the device failed lies elsewhere."""
    run = make_run(state="failed")
    ops = [dataclasses.replace(op, offset=op.offset + (1 << 20)) if op.kind == "failed" else op for op in run.ops]
    synth.write_evidence(run, ops)
    v = validate_run(run.dir)
    assert "guest-result" in failed(v)
    assert v.check("guest-result").problems == [
        f"the failure is said to be at offset {run.header['failure_offset']} (stage body), but the device failed the "
        f"write at partition offset {run.header['failure_offset'] + (1 << 20)}"]


@pytest.mark.parametrize("state,status,means", [("complete", 69, 67), ("failed", 67, 69), ("complete", 0, 67)])
def test_qemu_exit_status_must_match_done(make_run, state, status, means):
    run = make_run(state=state)
    set_exit_status(run, status)
    v = validate_run(run.dir)
    assert failed(v) == {"guest-result"}
    assert v.check("guest-result").problems == [f"QEMU exit status {status}, but DONE status={state} means {means}"]


def test_a_complete_run_without_done_fails(make_run):
    run = make_run()
    synth.write_evidence(run, [op for op in run.ops if not op.text.startswith("DUMPBED DONE ")])
    set_exit_status(run, None)
    v = validate_run(run.dir)
    assert "guest-result" in failed(v)
    assert v.check("guest-result").detail == "the guest never reported DONE"


def test_done_from_a_run_that_qemu_ended_first_fails(make_run):
    """A run cut short (no DONE expected) whose guest nevertheless says DONE."""
    run = make_run(state="in-progress")
    synth.write_evidence(run, run.ops + [synth.Io("line", text="DUMPBED DONE status=complete bytes=4096 "
                                                               "device=primary generation=1")])
    v = validate_run(run.dir)
    assert "guest-result" in failed(v)
    assert v.check("guest-result").detail == ("the guest reported DONE status=complete bytes=4096 device=primary "
                                              "generation=1, but the fault ends QEMU before it can")


def test_done_with_the_wrong_status_fails(make_run):
    run = make_run(state="failed")
    said(run, "status=failed error=5 stage=body", "status=complete bytes=4096")
    set_exit_status(run, 67)
    v = validate_run(run.dir)
    assert failed(v) == {"guest-result"}
    assert v.check("guest-result").problems[0].startswith("the guest reported DONE status=complete bytes=4096")
    assert v.check("guest-result").problems[0].endswith("the run expects status=failed")


def test_a_restart_line_naming_another_failure_than_the_secondarys_header_fails(make_run):
    run = make_run(samples="default", generation=2)
    offset = run.header["restart_offset"]
    said(run, f"offset={offset}", f"offset={offset + 512}", word="RESTART")
    v = validate_run(run.dir)
    assert failed(v) == {"guest-result"}
    assert v.check("guest-result").problems == [
        f"RESTART says offset={offset + 512}, the secondary's header says restart_offset {offset}"]
