"""`dumpbed run --kernel FILE`: a user's own kernel is what boots, and it is judged like ours.

The user's kernel here is dumpbed's guest built from a copy of its sources with two changes, as
a driver developer's tree would have them: its own banner, and a dump path that never flushes
(the `no-flush` bug compiled in, not asked for on the command line). The run must boot that
kernel (its banner on the console, its path in the report) and the oracles must fail it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def _build_users_kernel(tmp_path: Path) -> Path:
    src = tmp_path / "my-tree"
    shutil.copytree(CHECKOUT / "guest", src, ignore=shutil.ignore_patterns("build"))
    main_c, testfault_c = src / "kern" / "main.c", src / "lib" / "testfault.c"
    main_c.write_text(main_c.read_text().replace('"dumpbed guest ready\\n"', '"my-driver guest ready\\n"'))
    text = testfault_c.read_text()
    assert "uint32_t testfaults;" in text
    testfault_c.write_text(text.replace("uint32_t testfaults;", "uint32_t testfaults = 1u << TF_NO_FLUSH;"))
    subprocess.run(["make", "-s", "-C", str(src), f"BUILD={src / 'out'}", "-j2"], check=True, capture_output=True,
                   timeout=600)
    return src / "out" / "dumpbed-guest.elf"


def test_a_users_kernel_boots_and_its_bug_is_caught(tmp_path):
    kernel = _build_users_kernel(tmp_path)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "dumpbed.cli", "run", "--kernel", str(kernel), "--memory", "32M", "--components", "none",
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]  # validation failed: the verdict, not an error
    report = json.loads(proc.stdout)
    assert "my-driver guest ready" in (out / "console.log").read_text(errors="replace")
    guest = report["scenario"]["guest"]
    assert guest == {"profile": "dumpbed", "kernel": str(kernel), "format": "multiboot", "initrd": None,
                     "symbols": str(kernel.with_suffix(".elf64")), "recipe": None, "image_key": None}
    assert "testfault" not in report["scenario"]["cmdline"]
    assert report["provenance"]["guest_image"]["path"] == str(kernel)
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert report["verdict"] == "fail" and "write-order" in failed, failed
