"""groundtruth.stop_for_snapshot: the VM stopped where no interrupt is in service, boundedly."""
from __future__ import annotations

from dumpbed.capture import groundtruth


class FakeMachine:
    """Answers `info lapic`'s ISR from a script, one answer per stop."""

    def __init__(self, in_service: list[list[int]]):
        self.answers = list(in_service)
        self.calls: list[str] = []

    def stop(self):
        self.calls.append("stop")

    def cont(self):
        self.calls.append("cont")

    def interrupts_in_service(self):
        self.calls.append("isr")
        return self.answers.pop(0)


def test_a_quiet_cpu_is_stopped_once():
    m = FakeMachine([[]])
    assert groundtruth.stop_for_snapshot(m) == 1
    assert m.calls == ["stop", "isr"]


def test_an_interrupt_in_service_lets_the_guest_run_on_until_it_ended():
    m = FakeMachine([[65], [65], []])
    assert groundtruth.stop_for_snapshot(m) == 3
    assert m.calls == ["stop", "isr", "cont", "stop", "isr", "cont", "stop", "isr"]


def test_a_guest_that_never_ends_its_interrupt_stays_stopped_after_the_last_try():
    m = FakeMachine([[65]] * groundtruth.STOP_TRIES)
    assert groundtruth.stop_for_snapshot(m) == groundtruth.STOP_TRIES
    assert m.calls[-1] == "stop" and m.calls.count("stop") == groundtruth.STOP_TRIES


def test_the_isr_line_of_info_lapic_is_read(monkeypatch):
    from dumpbed.machine.qemu import Machine

    class Qmp:
        def __init__(self, text):
            self.text = text

        def hmp(self, command):
            assert command == "info lapic"
            return self.text

    m = Machine.__new__(Machine)
    m.qmp = Qmp("ESR\t 0x00000000\r\nISR\t 65 66(level) \r\nIRR\t (none)\r\n")
    assert m.interrupts_in_service() == [65, 66]
    m.qmp = Qmp("ESR\t 0x00000000\r\nISR\t (none)\r\nIRR\t 64 \r\n")
    assert m.interrupts_in_service() == []
