"""`dumpbed run --host NAME`: one scenario on a remote KVM host, judged here (docs/nightly.md).
The host is prepared as a matrix prepares it (reused when it already has this dumpbed), the run
directory comes back into --out, and the verdict is this machine's, never the host's."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from dumpbed.remote import execute, hosts as hosts_mod, prepare


def run_on_host(words: list[str], host_name: str, hosts_file: Path, out: Path, memory_bytes: int) -> dict:
    """`dumpbed run WORDS` on the host; the report of the copy, judged here (report.json saved,
    the host's own kept as remote-report.json, its output as remote.log)."""
    from dumpbed.run import prepare_out_dir

    host = hosts_mod.find_host(hosts_file, host_name)
    out = prepare_out_dir(out)
    with tempfile.TemporaryDirectory(prefix="dumpbed-wheel-") as tmp:
        wheel = prepare.build_wheel(prepare.source_root(), Path(tmp))
        print(f"dumpbed: preparing host {host.name} ({host.address}) with {wheel.name}", file=sys.stderr)
        prepared = prepare.prepare(host, wheel)
    print(f"dumpbed: running on host {host.name}; artifacts come back to {out}", file=sys.stderr)
    return execute.run_and_judge(prepared, words, out, memory_bytes, log=out / "remote.log")
