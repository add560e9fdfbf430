"""Host-side evidence that the guest took no interrupts while it dumped.

Two sources, both outside the guest:
- RFLAGS sampled through the monitor (`info registers`) every few milliseconds from the crash
  to the end of the dump: IF (bit 9) must be 0 in every sample. This works under TCG and KVM.
- QEMU trace events of interrupt sources after the crash: a virtio device deciding to
  interrupt (`virtio_notify`, `virtio_notify_irqfd`), the LSI chip raising its IRQ line
  (`lsi_update_irq` level 1), an NVMe controller raising an MSI-X message or its pin while
  INTMS leaves that pin's vector unmasked (`pci_nvme_irq_msix`, `pci_nvme_irq_pin`: QEMU traces
  the pin before it applies the mask, so the mask is followed from `pci_nvme_mmio_intm_set`/
  `_clr`, cleared by a controller reset), a PVSCSI adapter's interrupt condition coming true
  (`pvscsi_update_irq_level` level 1, `pvscsi_update_irq_msi`), an e1000e raising its INTx line
  or sending an MSI/MSI-X message (`e1000e_irq_legacy_notify` level 1, `e1000e_irq_msi_notify`,
  `e1000e_irq_msix_notify_vec`: QEMU traces them after IMS was applied), and, where QEMU emulates the
  interrupt controllers itself (TCG), the 8259 handing a vector to the CPU (`pic_interrupt`)
  and IOAPIC/MSI deliveries to the local APIC (`apic_deliver_irq`). Under KVM those two live in
  the kernel and are not traced.
"""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from dumpbed.errors import DumpbedError

SAMPLES_FILE = "irq-samples.jsonl"
TRACE_EVENTS = ["virtio_notify", "virtio_notify_irqfd", "lsi_update_irq", "pic_interrupt", "apic_deliver_irq",
                "pci_nvme_irq_msix", "pci_nvme_irq_pin", "pci_nvme_mmio_intm_set", "pci_nvme_mmio_intm_clr",
                "pci_nvme_mmio_stopped", "pci_nvme_create_cq", "pci_nvme_enqueue_req_completion",
                "pvscsi_update_irq_level", "pvscsi_update_irq_msi",
                "e1000e_irq_legacy_notify", "e1000e_irq_msi_notify", "e1000e_irq_msix_notify_vec"]
_ARG = re.compile(r"(\w+)[= ](0x[0-9a-fA-F]+|\d+)")


class InterruptSources:
    """Which traced events are interrupts the device raised, from the trace lines in order (some
    sources need state: the NVMe pin mask, which queue a pin interrupt is for)."""

    def __init__(self):
        self.nvme_mask = 0  # INTMS
        self.nvme_vector: dict[int, int] = {}  # completion queue -> interrupt vector (ien=1 only)
        self.nvme_last_cq = 0  # the queue of the last completion, which the pin interrupt is for

    def interrupt(self, name: str, args: str) -> bool:
        a = {k: int(v, 0) for k, v in _ARG.findall(args)}
        if name == "lsi_update_irq":
            return args.startswith("Update IRQ level 1")  # the line going low, or staying low, is not one
        if name == "e1000e_irq_legacy_notify":
            return args.startswith("IRQ line state: 1")  # the line dropping is not one
        if name == "pvscsi_update_irq_level":
            # INTR_STATUS & INTR_MASK, traced on every completion and register write; 0 (masked or
            # acknowledged) is not an interrupt. 1 is, whether INTx or MSI then carries it.
            return args.startswith("interrupt level set to 1")
        if name in ("pci_nvme_mmio_intm_set", "pci_nvme_mmio_intm_clr"):
            self.nvme_mask = a.get("new_mask", self.nvme_mask)
            return False
        if name == "pci_nvme_mmio_stopped":
            self.nvme_mask, self.nvme_vector = 0, {}  # a controller reset clears INTMS and the queues
            return False
        if name == "pci_nvme_create_cq":
            if a.get("ien"):
                self.nvme_vector[a.get("cqid", 0)] = a.get("vector", 0)
            return False
        if name == "pci_nvme_enqueue_req_completion":
            self.nvme_last_cq = a.get("cqid", 0)
            return False
        if name == "pci_nvme_irq_pin":
            vector = self.nvme_vector.get(self.nvme_last_cq, 0)  # the admin queue's is 0
            return not (self.nvme_mask >> vector) & 1
        return name in TRACE_EVENTS
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

    def __init__(self, machine, run_dir: Path, interval: float = 0.01, pause: bool = False, enabled: bool = True,
                 crash_taken: Optional[Callable[[], bool]] = None, first_interval: Optional[float] = None):
        self._machine = machine
        self._enabled = enabled  # False: samples nothing (a guest the no-interrupts oracle does not judge)
        self._interval = interval
        # Every `first_interval` until a sample follows the guest's word that it took the crash
        # (`crash_taken()`), the oracle's window opening: a dump that fails early may be over
        # within some 40 ms of it, a few samples at `interval`.
        self._crash_taken = crash_taken
        self._first_interval = first_interval if first_interval is not None else interval
        self._pause = pause
        self._out = open(Path(run_dir) / SAMPLES_FILE, "a", encoding="ascii")
        self._lock = threading.Lock()  # stop() closes the file while the thread may still write
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rflags-sampler", daemon=True)

    def start(self) -> "RflagsSampler":
        if self._enabled:
            self._thread.start()
        return self

    def _loop(self) -> None:
        in_window = self._crash_taken is None
        while not self._stop.is_set():
            taken = in_window or self._crash_taken()  # asked first: the sample then follows the word
            try:
                self._sample()
            except (DumpbedError, AttributeError):
                break  # QEMU exited (the guest is done) or is being shut down
            in_window = taken
            self._stop.wait(self._interval if in_window else self._first_interval)

    def _sample(self) -> None:
        asked = time.time()  # the registers are of a moment between this and their answer
        text = self._read_registers()
        rfl, rip = _RFL.search(text), _RIP.search(text)
        if rfl:
            sample = {"t0": asked, "t": time.time(), "rflags": int(rfl.group(1), 16),
                      "rip": int(rip.group(1), 16) if rip else None}
            with self._lock:
                if not self._out.closed:
                    self._out.write(json.dumps(sample) + "\n")
                    self._out.flush()

    def _read_registers(self) -> str:
        qmp = self._machine.qmp
        if not self._pause:
            return qmp.hmp("info registers", timeout=2)
        qmp.command("stop", timeout=2)
        # Continue only a VM this sample stopped: one that QEMU stopped on a fault's write
        # (status io-error) stays stopped for the fault.
        mine = self._machine.run_state(timeout=2) == "paused"
        try:
            return qmp.hmp("info registers", timeout=2)
        finally:
            if mine:
                qmp.command("cont", timeout=2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            self._out.close()


