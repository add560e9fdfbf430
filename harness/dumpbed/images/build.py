"""Create dump disks: qemu-img, canary fill, then the GPT."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dumpbed.errors import DumpbedError
from dumpbed.images import canary, gpt
from dumpbed.images.layout import DiskLayout


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
