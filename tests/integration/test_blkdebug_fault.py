"""The eio-at fault's blkdebug rules, driven by qemu-io: exactly the N-th write and every later
one fail, and nothing before (QEMU's own block layer, no guest)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from dumpbed.scenario import faults


@pytest.mark.parametrize("n", [1, 3, 7])
def test_the_nth_write_and_every_later_one_fail(tmp_path, n):
    if shutil.which("qemu-io") is None:
        pytest.fail("qemu-io not found: make setup installs qemu-utils")
    image = tmp_path / "d.img"
    image.write_bytes(bytes(1 << 20))
    node = dict(faults.blkdebug_rules(faults.parse(f"eio-at={n}")), driver="blkdebug",
                image={"driver": "file", "filename": str(image)})
    spec = "json:" + json.dumps({"driver": "raw", "file": node})
    commands = []
    for i in range(10):
        commands += ["-c", f"write -P 0x5a {i * 4096} 4096"]
    out = subprocess.run(["qemu-io", *commands, spec], capture_output=True, text=True, timeout=60)
    results = [line for line in (out.stdout + out.stderr).splitlines()
               if line.startswith(("wrote", "write failed"))]
    assert results == ["wrote 4096/4096 bytes at offset %d" % (i * 4096) for i in range(n - 1)] + \
        ["write failed: Input/output error"] * (10 - n + 1)
    data = image.read_bytes()
    assert data[: (n - 1) * 4096] == b"\x5a" * ((n - 1) * 4096)
    assert data[(n - 1) * 4096: 10 * 4096] == bytes((10 - n + 1) * 4096)


def _qemu_io(image, node_rules, writes):
    node = dict(node_rules, driver="blkdebug", image={"driver": "file", "filename": str(image)})
    spec = "json:" + json.dumps({"driver": "raw", "file": node})
    commands = []
    for offset in writes:
        commands += ["-c", f"write -P 0x5a {offset} 4096"]
    out = subprocess.run(["qemu-io", *commands, spec], capture_output=True, text=True, timeout=60)
    return [line.startswith("wrote") for line in (out.stdout + out.stderr).splitlines()
            if line.startswith(("wrote", "write failed"))]


@pytest.mark.parametrize("n", [1, 4])
def test_a_live_trigger_fails_exactly_the_nth_write_once(tmp_path, n):
    """@wN: the N-th write fails, once (the device retries it after the fault: werror=stop)."""
    image = tmp_path / "d.img"
    image.write_bytes(bytes(1 << 20))
    ok = _qemu_io(image, faults.blkdebug_rules(faults.parse(f"kill@w{n}")), [i * 4096 for i in range(8)])
    assert ok == [i != n - 1 for i in range(8)]


def test_a_percent_trigger_fails_the_first_write_reaching_its_sector(tmp_path):
    """@P%: the first write that touches the sector, once; writes before and after it land."""
    image = tmp_path / "d.img"
    image.write_bytes(bytes(1 << 20))
    sector = faults.trigger_sector(faults.parse("kill@50%"), 0, 8192, 2 * 65536)
    assert sector == (8192 + 65536) // 512
    offsets = [8192 + i * 4096 for i in range(32)]
    ok = _qemu_io(image, faults.blkdebug_rules(faults.parse("kill@50%"), sector), offsets + [65536 + 8192])
    hit = [i for i, o in enumerate(offsets) if o <= sector * 512 < o + 4096]
    assert ok == [i not in hit for i in range(32)] + [True]
