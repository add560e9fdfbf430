"""groundtruth.stop_for_snapshot: the VM stopped where no interrupt is in service and the CPU is
not in an STI's shadow, boundedly."""
from __future__ import annotations

from types import SimpleNamespace

from dumpbed.capture import groundtruth


class FakeMachine:
    """Answers `info lapic`'s ISR, and `info registers` in or out of an interrupt shadow (QEMU's
    II), from scripts, one answer per stop."""

    def __init__(self, in_service: list[list[int]], shadow: list[bool] = ()):
        self.answers = list(in_service)
        self.shadow = list(shadow) or [False] * len(self.answers)
        self.calls: list[str] = []
        self.qmp = self

    def stop(self):
        self.calls.append("stop")

    def cont(self):
        self.calls.append("cont")

    def interrupts_in_service(self):
        self.calls.append("isr")
        return self.answers.pop(0)

    def hmp(self, command):
        assert command == "info registers", command
        self.calls.append("shadow")
        return REGS.format(rip=0, ii=int(self.shadow.pop(0)))  # RIP 0: no byte before it to read


def test_a_quiet_cpu_is_stopped_once():
    m = FakeMachine([[]])
    assert groundtruth.stop_for_snapshot(m) == 1
    assert m.calls == ["stop", "isr", "shadow"]


def test_an_interrupt_in_service_lets_the_guest_run_on_until_it_ended():
    m = FakeMachine([[65], [65], []])
    assert groundtruth.stop_for_snapshot(m) == 3
    assert m.calls == ["stop", "isr", "cont", "stop", "isr", "cont", "stop", "isr", "shadow"]


def test_a_stop_in_an_sti_shadow_lets_the_guest_run_on_out_of_it():
    m = FakeMachine([[], [], []], [True, True, False])
    assert groundtruth.stop_for_snapshot(m) == 3
    assert m.calls == ["stop", "isr", "shadow", "cont", "stop", "isr", "shadow", "cont", "stop", "isr", "shadow"]


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


class Hmp:
    """`info registers` and `x /1xb ADDR` answered from a register dump and a byte map."""

    def __init__(self, regs: str, memory: dict[int, int]):
        self.regs, self.memory, self.asked = regs, memory, []

    def hmp(self, command):
        self.asked.append(command)
        if command == "info registers":
            return self.regs
        assert command.startswith("x /1xb 0x"), command
        at = int(command.split()[-1], 16)
        return f"{at:016x}: 0x{self.memory[at]:02x}\r\n"


REGS = ("RAX=0000000000000001 RBX=0000000000000001 RCX=0000000000000000 RDX=00000000000003fd\r\n"
        "RIP={rip:016x} RFL=00000202 [-------] CPL=0 II={ii} A20=1 SMM=0 HLT=0\r\n")


def test_the_shadow_is_an_sti_just_before_rip_or_qemus_ii():
    def shadow(regs, memory):
        machine = SimpleNamespace(qmp=Hmp(regs, memory))
        return groundtruth.in_interrupt_shadow(machine), machine.qmp.asked

    assert shadow(REGS.format(rip=0x108193, ii=0), {0x108192: 0xFB})[0]  # sti; call console_getc
    assert not shadow(REGS.format(rip=0x108198, ii=0), {0x108197: 0xFF})[0]  # after the call
    assert not shadow(REGS.format(rip=0x108dfe, ii=0), {0x108dfd: 0xF4})[0]  # halted after sti; hlt
    assert shadow(REGS.format(rip=0x1081b0, ii=1), {}) == (True, ["info registers"])  # QEMU knows
