"""The eio-at fault's blkdebug rules, driven by qemu-io: exactly the N-th write and every later
one fail, and nothing before (QEMU's own block layer, no guest)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from harness import faults


@pytest.mark.parametrize("n", [1, 3, 7])
def test_the_nth_write_and_every_later_one_fail(tmp_path, n):
    if shutil.which("qemu-io") is None:
        pytest.fail("qemu-io not found: make setup installs qemu-utils")
    image = tmp_path / "d.img"
    image.write_bytes(bytes(1 << 20))
    node = dict(faults.blkdebug_options(faults.parse(f"eio-at={n}")),
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
