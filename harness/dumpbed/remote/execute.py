"""One cell on a prepared host (docs/nightly.md, "A cell on a host"): `dumpbed run` under a
pseudo-terminal in WORKDIR/runs/<unique>, its run directory copied back and removed from the
host. The verdict is not taken from the host: the caller recomputes it from the copy
(dumpbed.run.validate_run_dir), and the host's own report.json is kept as remote-report.json."""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dumpbed.errors import InfraError
from dumpbed.remote.prepare import PLAIN, Prepared
from dumpbed.remote.ssh import Connection

REMOTE_REPORT = "remote-report.json"
_CLEANUP_SECONDS = 120
# Beyond a run's own deadlines (which stop a stuck guest): a stuck host, the copy back.
SLACK_SECONDS = 600.0


@dataclass
class RemoteRun:
    exit_status: Optional[int]  # of the remote `dumpbed run`
    log: Path  # its output (stdout and stderr, as the pty had them)


def run_cell(prepared: Prepared, argv: list[str], local_dir: Path, timeout: float,
             log: Optional[Path] = None) -> RemoteRun:
    """Run `dumpbed run ARGV` on the host and copy its run directory into local_dir (created;
    left absent when the run made none, e.g. a refused argument). The connection lost, the host
    gone, the copy cut or no exit status: InfraError. The host's output goes to `log` (default
    remote.log beside local_dir)."""
    local_dir = Path(local_dir)
    log = Path(log) if log is not None else local_dir.parent / "remote.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    runs = f"{prepared.workdir}/runs"
    remote_dir = f"{runs}/{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}"
    with Connection.connect(prepared.host) as conn:
        conn.makedirs(runs)
        with open(log, "wb") as out:  # written as it comes: a host lost mid-run leaves what it said
            # The pty: a dropped connection hangs the run up (SIGHUP), and the run stops its QEMU.
            done = conn.run([prepared.python, "-m", "dumpbed", "run", *argv, "--out", remote_dir], timeout,
                            pty=True, env=PLAIN, on_output=lambda data: (out.write(data), out.flush()))
        if conn.exists(remote_dir):
            conn.get_tree(remote_dir, local_dir)
            report = local_dir / "report.json"
            if report.exists():
                os.replace(report, local_dir / REMOTE_REPORT)
            _remove(conn, remote_dir, log)
        elif done.exit_status == 0:
            raise InfraError(f"host {prepared.host.name}: the run passed but left no run directory {remote_dir}")
    return RemoteRun(exit_status=done.exit_status, log=log)


def run_and_judge(prepared: Prepared, argv: list[str], local_dir: Path, memory_bytes: int,
                  log: Optional[Path] = None) -> dict:
    """run_cell, then the copy judged here (dumpbed.run.validate_run_dir; report.json saved, the
    host's kept as remote-report.json): the report. A run that left nothing to judge is the
    host's failure, an InfraError, never a verdict."""
    from dumpbed.errors import DumpbedError
    from dumpbed.run import timeouts, validate_run_dir

    limits = timeouts("tcg", memory_bytes)  # the slower accelerator bounds both
    done = run_cell(prepared, argv, local_dir, limits["boot"] + limits["dump"] + SLACK_SECONDS, log)
    name = prepared.host.name
    if not (Path(local_dir) / "scenario.json").exists():
        raise InfraError(f"host {name}: the run made no run directory (exit status {done.exit_status}; "
                         f"its output: {done.log})")
    try:
        return validate_run_dir(local_dir, save=True)
    except DumpbedError as exc:
        raise InfraError(f"host {name}: its run directory cannot be judged: {exc}") from None


def _remove(conn: Connection, remote_dir: str, log: Path) -> None:
    """The run directory off the host. The copy is whole by now: a failure here leaves junk on
    the host, noted in the log, and costs the cell nothing."""
    try:
        done = conn.run(["rm", "-rf", "--", remote_dir], _CLEANUP_SECONDS)
        why = None if done.exit_status == 0 else f"rm exit status {done.exit_status}: {done.output.strip()}"
    except InfraError as exc:
        why = str(exc)
    if why is not None:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"\ndumpbed: could not remove {remote_dir} from host {conn.host.name}: {why}\n")
