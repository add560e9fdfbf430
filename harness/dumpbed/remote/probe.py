"""What a prepared host has (docs/nightly.md, "Preparing a bare host"), as one JSON object on
stdout. Runs ON the host, from its dumpbed venv: `VENV/bin/python -m dumpbed.remote.probe`."""
from __future__ import annotations

import json
import os
import platform
import shutil
from typing import Optional

from dumpbed.machine import accel
from dumpbed.provenance import QEMU_BINARY, dumpbed_version, qemu_version_output
from dumpbed.run import mem_available


def qemu_version_line(binary: str = QEMU_BINARY) -> Optional[str]:
    said = qemu_version_output(binary)
    lines = said[1].strip().splitlines() if said else []
    return lines[0].strip() if lines else None


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
