"""QEMU processes and temp dirs never outlive a Machine, however it ends."""
from __future__ import annotations

from pathlib import Path

import pytest

from dumpbed.errors import DumpbedError
from dumpbed.machine import qemu as machine_mod
from dumpbed.machine.qemu import Machine, MachineConfig
from tests.support.procs import alive


def _config(kernel, **kw):
    return MachineConfig(kernel=kernel, cmdline="fill=off", memory_bytes=64 << 20, accel="tcg", **kw)


@pytest.mark.parametrize("ending", ["shutdown", "kill", "guest-running", "exception"])
def test_every_ending_leaves_nothing(tmp_path, guest_kernel, ending):
    m = Machine(_config(guest_kernel), tmp_path)
    try:
        with m:
            pid = m.process.pid
            assert pid in machine_mod.LIVE_PIDS
            if ending == "guest-running":
                m.cont()
            elif ending == "kill":
                m.kill()
            elif ending == "exception":
                raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not alive(pid)
    assert pid not in machine_mod.LIVE_PIDS
    assert machine_mod.SCRATCH_DIRS and not Path(machine_mod.SCRATCH_DIRS[-1]).exists()
    assert (tmp_path / "qemu-cmdline.txt").exists() and (tmp_path / "console.log").exists()


def test_qemu_refusing_to_start_is_a_clear_error(tmp_path, guest_kernel):
    config = _config(guest_kernel, extra_args=["-device", "no-such-device"])
    with pytest.raises(DumpbedError, match="QEMU did not start"):
        Machine(config, tmp_path).launch()
    assert not machine_mod.LIVE_PIDS


def test_missing_kernel_is_a_clear_error(tmp_path):
    with pytest.raises(DumpbedError, match="guest kernel"):
        Machine(_config(tmp_path / "nope.elf"), tmp_path).launch()
