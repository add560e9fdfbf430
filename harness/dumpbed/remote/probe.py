"""What a prepared host has (docs/nightly.md, "Preparing a bare host"), as one JSON object on
stdout. Runs ON the host, from its dumpbed venv: `VENV/bin/python -m dumpbed.remote.probe`."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from typing import Optional

from dumpbed.machine import accel
from dumpbed.provenance import QEMU_BINARY, dumpbed_version

_TOOL_SECONDS = 10


def qemu_version_line(binary: str = QEMU_BINARY) -> Optional[str]:
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=_TOOL_SECONDS,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = proc.stdout.strip().splitlines()
    return lines[0].strip() if proc.returncode == 0 and lines else None


def mem_available() -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def probe() -> dict:
    usable, reason = accel.kvm_usable()
    return {
        "dumpbed": dumpbed_version(),
        "python": platform.python_version(),
        "qemu": qemu_version_line(),
        "qemu_img": shutil.which("qemu-img") is not None,
        "kvm": {"usable": usable, "reason": reason},
        "toolchain": {tool: shutil.which(tool) is not None for tool in ("cc", "make", "ld")},
        "cpus": len(os.sched_getaffinity(0)),
        "mem_available": mem_available(),
    }


def main() -> int:
    print(json.dumps(probe(), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
