"""Host-side evidence that the guest took no interrupts while it dumped.

Two sources, both outside the guest:
- RFLAGS sampled through the monitor (`info registers`) every few milliseconds from the crash
  to the end of the dump: IF (bit 9) must be 0 in every sample. This works under TCG and KVM.
- QEMU trace events of interrupt sources after the crash: a virtio device deciding to
  interrupt (`virtio_notify`, `virtio_notify_irqfd`), the LSI chip raising its IRQ line
  (`lsi_update_irq` level 1), and, where QEMU emulates the interrupt controllers itself (TCG),
  the 8259 handing a vector to the CPU (`pic_interrupt`) and IOAPIC/MSI deliveries to the local
  APIC (`apic_deliver_irq`). Under KVM those two live in the kernel and are not traced.
"""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

from dumpbed.errors import DumpbedError

SAMPLES_FILE = "irq-samples.jsonl"
TRACE_EVENTS = ["virtio_notify", "virtio_notify_irqfd", "lsi_update_irq", "pic_interrupt", "apic_deliver_irq"]
RFLAGS_IF = 1 << 9
_RFL = re.compile(r"RFL=([0-9a-fA-F]+)")
_RIP = re.compile(r"RIP=([0-9a-fA-F]+)")


class RflagsSampler:
    """Samples CPU 0's RFLAGS through HMP on a thread until stopped or QEMU goes away.

    Under KVM `info registers` pulls the registers out of the kernel with the vCPU kicked out,
    so a sample is exact. Under TCG the monitor reads them while the vCPU thread runs and can
    catch a half-updated RFLAGS (seen: 0x1bbb, reserved bits set), so there each sample is
    taken with the VM stopped for a moment; TCG's virtual TSC stops too, so the guest's
    deadlines do not notice."""

    def __init__(self, machine, run_dir: Path, interval: float = 0.01, pause: bool = False):
        self._machine = machine
        self._interval = interval
        self._pause = pause
        self._out = open(Path(run_dir) / SAMPLES_FILE, "a", encoding="ascii")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rflags-sampler", daemon=True)

    def start(self) -> "RflagsSampler":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                text = self._read_registers()
            except (DumpbedError, AttributeError):
                break  # QEMU exited (the guest is done) or is being shut down
            rfl, rip = _RFL.search(text), _RIP.search(text)
            if rfl:
                sample = {"t": time.time(), "rflags": int(rfl.group(1), 16),
                          "rip": int(rip.group(1), 16) if rip else None}
                self._out.write(json.dumps(sample) + "\n")
                self._out.flush()
            self._stop.wait(self._interval)

    def _read_registers(self) -> str:
        qmp = self._machine.qmp
        if not self._pause:
            return qmp.hmp("info registers", timeout=2)
        qmp.command("stop", timeout=2)
        # Continue only a VM this sample stopped: one that QEMU stopped on a fault's write
        # (status io-error) stays stopped for the fault.
        mine = qmp.command("query-status", timeout=2).get("status") == "paused"
        try:
            return qmp.hmp("info registers", timeout=2)
        finally:
            if mine:
                qmp.command("cont", timeout=2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._out.close()


