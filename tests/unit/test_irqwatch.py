"""The no-interrupts oracle: RFLAGS samples and interrupt trace events after the crash."""
from __future__ import annotations

import json
import threading
import time

from dumpbed.capture.irqwatch import SAMPLES_FILE, RflagsSampler
from dumpbed.oracles.validate import validate_run

CRASH = 1_800_000_000.0


def failed(v):
    return {c.name for c in v.checks if not c.ok}


def add_sample(run, rflags: int, t: float = CRASH + 0.5, asked: float | None = None) -> None:
    with open(run.dir / "irq-samples.jsonl", "a") as f:
        f.write(json.dumps({"t0": t if asked is None else asked, "t": t, "rflags": rflags, "rip": 0x101234}) + "\n")


def add_trace(run, line: str) -> None:
    with open(run.dir / "qemu-trace.log", "a") as f:
        f.write(line + "\n")


def test_good_run_passes(good_run):
    check = validate_run(good_run.dir).check("no-interrupts")
    assert check.ok and "IF=0 in all 5 RFLAGS samples" in check.detail


def test_interrupts_enabled_during_the_dump_fail(good_run):
    add_sample(good_run, 0x286)  # IF set
    v = validate_run(good_run.dir)
    assert failed(v) == {"no-interrupts"}
    assert "RFLAGS.IF was 1 in 1 of 6 samples" in v.check("no-interrupts").detail


def test_a_sample_asked_before_the_crash_and_answered_after_it_is_not_the_dumps(good_run):
    """Its registers may be of any moment in between: the interrupted kernel's, halted with IF=1
    (a clean-clone CI failed so: IF=1 at the console's HLT, answered 0.028 s after CRASH)."""
    crashed = validate_run(good_run.dir).check("no-interrupts")
    assert crashed.ok
    from dumpbed.capture import cmdlog
    taken = next(r.time for r in cmdlog.read(good_run.dir, 512).result("CRASH"))
    add_sample(good_run, 0x202, t=taken + 0.028, asked=taken - 0.01)
    assert validate_run(good_run.dir).check("no-interrupts").ok
    add_sample(good_run, 0x202, t=taken + 0.05, asked=taken + 0.02)  # wholly in the window: the dump's
    assert failed(validate_run(good_run.dir)) == {"no-interrupts"}


def test_interrupts_enabled_before_the_crash_are_fine(good_run):
    add_sample(good_run, 0x286, t=CRASH - 1)
    assert validate_run(good_run.dir).check("no-interrupts").ok


def test_the_window_opens_when_the_guest_takes_the_crash(good_run):
    """An NMI injected while QEMU holds the VM stopped is taken when the vCPU runs again: samples
    before the guest's CRASH line are the interrupted kernel's (IF=1 is fine there), samples
    after it are the dump's."""
    from dumpbed.capture import cmdlog

    taken = cmdlog.read(good_run.dir, 512).result("CRASH")[0].time
    assert taken > CRASH
    add_sample(good_run, 0x286, t=(CRASH + taken) / 2)
    assert validate_run(good_run.dir).check("no-interrupts").ok
    add_sample(good_run, 0x286, t=taken + 0.001)
    v = validate_run(good_run.dir)
    assert failed(v) == {"no-interrupts"}
    assert "after the guest took the crash" in v.check("no-interrupts").detail


def test_no_samples_is_no_evidence(good_run):
    (good_run.dir / "irq-samples.jsonl").write_text("")
    v = validate_run(good_run.dir)
    assert failed(v) == {"no-interrupts"}
    assert "no RFLAGS sample" in v.check("no-interrupts").detail


def test_a_device_interrupt_after_the_crash_fails(good_run):
    add_trace(good_run, f"1@{CRASH + 0.2:.6f}:virtio_notify vdev 0x1 vq 0x2")
    v = validate_run(good_run.dir)
    assert failed(v) == {"no-interrupts"}
    assert "virtio_notify" in v.check("no-interrupts").detail


def test_lsi_irq_line_raised_fails_lowered_does_not(good_run):
    add_trace(good_run, f"1@{CRASH + 0.2:.6f}:lsi_update_irq Update IRQ level 0 dstat 0x00 sist 0x000x00")
    assert validate_run(good_run.dir).check("no-interrupts").ok
    add_trace(good_run, f"1@{CRASH + 0.3:.6f}:lsi_update_irq Update IRQ level 1 dstat 0x04 sist 0x000x00")
    assert failed(validate_run(good_run.dir)) == {"no-interrupts"}


def test_interrupt_events_before_the_crash_are_runtime_io(good_run):
    add_trace(good_run, f"1@{CRASH - 0.2:.6f}:pic_interrupt irq 11 intno 43")
    check = validate_run(good_run.dir).check("no-interrupts")
    assert check.ok and "1 interrupt events before it" in check.detail


def test_cpu_taking_a_pic_interrupt_after_the_crash_fails(good_run):
    add_trace(good_run, f"1@{CRASH + 0.2:.6f}:pic_interrupt irq 11 intno 43")
    assert failed(validate_run(good_run.dir)) == {"no-interrupts"}


# -- the sampler (harness/dumpbed/capture/irqwatch.py) ---------------------------------------------


class _FakeQmp:
    """`info registers` answered at once; each asked for is a sample."""

    def __init__(self):
        self.asked: list[float] = []

    def hmp(self, command, timeout=None):
        self.asked.append(time.monotonic())
        return "RIP=0000000000101234 RFL=00000002 [-------]"


class _FakeMachine:
    def __init__(self):
        self.qmp = _FakeQmp()


def test_the_sampler_is_quick_until_a_sample_follows_the_crash_line(tmp_path):
    """Every first_interval while the guest has not said CRASH, and for the first sample after it;
    then every interval: a dump that fails early still gets samples in its window."""
    machine = _FakeMachine()
    said = threading.Event()
    sampler = RflagsSampler(machine, tmp_path, interval=0.2, crash_taken=said.is_set,
                            first_interval=0.005).start()
    try:
        deadline = time.monotonic() + 10
        while len(machine.qmp.asked) < 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        said.set()
        time.sleep(0.7)
    finally:
        sampler.stop()
    asked = machine.qmp.asked
    gaps = [b - a for a, b in zip(asked, asked[1:])]
    assert len(asked) >= 5 and all(g < 0.15 for g in gaps[:4])  # quick before the word
    assert len(gaps) >= 2 and all(g >= 0.15 for g in gaps[-2:])  # the regular interval after
    lines = (tmp_path / SAMPLES_FILE).read_text().splitlines()
    assert len(lines) == len(asked) and json.loads(lines[0])["rflags"] == 2
