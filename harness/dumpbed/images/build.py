"""Build the guest kernel and create dump disks: qemu-img, canary fill, then the GPT."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dumpbed.errors import DumpbedError
from dumpbed.images import canary, gpt
from dumpbed.images.layout import DiskLayout

REPO = Path(__file__).resolve().parents[3]  # harness/dumpbed/images/build.py -> the checkout
GUEST_DIR = REPO / "guest"
GUEST_KERNEL = GUEST_DIR / "build" / "dumpbed-guest.elf"


def build_guest() -> Path:
    """Run the guest's make (a no-op when up to date) and return the kernel image."""
    if shutil.which("make") is None or shutil.which("gcc") is None:
        raise DumpbedError("make and gcc are needed to build the guest kernel")
    proc = subprocess.run(["make", "-s", "-C", str(GUEST_DIR)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise DumpbedError(f"guest build failed: {last[0]}")
    if not GUEST_KERNEL.is_file():
        raise DumpbedError(f"guest build did not produce {GUEST_KERNEL}")
    return GUEST_KERNEL


def require_qemu_img() -> None:
    if shutil.which("qemu-img") is None:
        raise DumpbedError("qemu-img not found: install qemu-utils (make setup does)")


def qemu_img(*args: str) -> None:
    require_qemu_img()
    proc = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise DumpbedError(f"qemu-img {args[0]} failed: {proc.stderr.strip().splitlines()[-1:]}")


def create_dump_disk(path: Path, layout: DiskLayout) -> None:
    """A raw image with every sector holding its canary, then the GPT written over it."""
    qemu_img("create", "-q", "-f", "raw", str(path), str(layout.size_bytes))
    canary.fill(path, layout)
    gpt.write(path, layout)
