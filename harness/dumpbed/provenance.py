"""Where a report comes from: the harness, the QEMU, the host and the guest image of a run.

report.json's `provenance` (docs/artifacts.md, docs/report.schema.json). Everything here is
cheap, computed once per process (the guest image's hash once per file version), and never
fails: what cannot be found is null, with a `note` where the reason is worth knowing.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

QEMU_BINARY = "qemu-system-x86_64"
# harness/dumpbed/provenance.py: the checkout's root, when the package runs from one (an
# installed copy under site-packages has no .git two levels up).
CHECKOUT = Path(__file__).resolve().parents[2]
_TOOL_SECONDS = 5


@functools.cache
def dumpbed_version() -> Optional[str]:
    """The installed package's version (its metadata), None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("dumpbed")
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> Optional[str]:
    # Exactly the checkout the code runs from: not the caller's GIT_DIR and friends, and never a
    # repository above it (git would walk up from a checkout whose .git is not a repository).
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_DIR=str(CHECKOUT / ".git"), GIT_WORK_TREE=str(CHECKOUT))
    try:
        proc = subprocess.run(["git", "--no-optional-locks", "-C", str(CHECKOUT), *args], capture_output=True,
                              text=True, timeout=_TOOL_SECONDS, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


@functools.cache
def git_commit() -> tuple[Optional[str], Optional[bool]]:
    """(commit, dirty) of the checkout the package runs from; (None, None) outside one, without
    git, or with a git that refuses the directory. Dirty: tracked files differ from the commit
    (untracked ones do not count); `--no-optional-locks` leaves the index alone."""
    if not (CHECKOUT / ".git").exists() or not (CHECKOUT / "harness" / "dumpbed").is_dir():
        return None, None
    head = _git("rev-parse", "--verify", "HEAD")
    commit = head.strip() if head else ""
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status.strip()) if status is not None else None)


def version_line() -> str:
    """`dumpbed --version`: the version, and the commit when run from a checkout."""
    commit, dirty = git_commit()
    line = f"dumpbed {dumpbed_version() or 'unknown (not installed)'}"
    if commit:
        line += f" (commit {commit[:12]}{', with uncommitted changes' if dirty else ''})"
    return line


class VersionAction(argparse.Action):
    """--version, computed only when asked for (git is not run for every command)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())  # on stdout, as argparse's own version action
        parser.exit(0)


def qemu_version_output(binary: str = QEMU_BINARY) -> Optional[tuple[str, str]]:
    """(its path, what `BINARY --version` printed), or None when it is missing or fails."""
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=_TOOL_SECONDS,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return (path, proc.stdout) if proc.returncode == 0 else None


@functools.cache
def qemu_binary_version(binary: str = QEMU_BINARY) -> Optional[dict]:
    """{"version", "package", "source": "binary", "binary"} from `BINARY --version`, or None."""
    said = qemu_version_output(binary)
    found = re.search(r"version (\d+\.\d+\.\d+)(?:\s*\(([^)]*)\))?", said[1]) if said else None
    if found is None:
        return None
    return {"version": found.group(1), "package": found.group(2) or None, "source": "binary", "binary": said[0]}


def qemu_of_run(run_dir: Path) -> Optional[dict]:
    """The run's own QEMU, from the QMP greeting in its transcript (qmp.jsonl): the version
    query-version answers, of the machine that ran, whatever is on PATH today."""
    try:
        with open(Path(run_dir) / "qmp.jsonl", encoding="utf-8", errors="replace") as transcript:
            for _, line in zip(range(8), transcript):  # the greeting is the first line
                greeting = json.loads(line).get("msg", {}).get("QMP")
                if isinstance(greeting, dict):
                    version = greeting["version"]
                    q = version["qemu"]
                    package = version.get("package")
                    argv = _run_argv(run_dir)
                    return {"version": f"{int(q['major'])}.{int(q['minor'])}.{int(q['micro'])}",
                            "package": (package.strip() or None) if isinstance(package, str) else None,
                            "source": "qmp", "binary": argv[0] if argv else None}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


@functools.cache
def host_kernel() -> Optional[str]:
    return platform.release() or None


@functools.cache
def host_cpu_model() -> Optional[str]:
    """The host CPU's model name (/proc/cpuinfo; other architectures name it otherwise)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _run_argv(run_dir: Path) -> list[str]:
    try:
        argv = json.loads((Path(run_dir) / "qemu-argv.json").read_text())
    except (OSError, ValueError):
        return []
    return [a for a in argv if isinstance(a, str)] if isinstance(argv, list) else []


def guest_image(run_dir: Path) -> Optional[dict]:
    """The kernel file the run booted (`-kernel` in qemu-argv.json) and its SHA-256. The hash
    is of the file as it is now: a file changed since the run (rebuilt: newer than
    qemu-argv.json) or gone has none, and a note says why."""
    argv = _run_argv(run_dir)
    kernel = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-kernel"), None)
    if kernel is None:
        return None
    out: dict[str, Any] = {"path": kernel, "bytes": None, "sha256": None}
    try:
        st = os.stat(kernel)
        launched = (Path(run_dir) / "qemu-argv.json").stat().st_mtime_ns
    except OSError as exc:
        return {**out, "note": f"cannot read it now: {exc.strerror or exc}"}
    if st.st_mtime_ns > launched:
        return {**out, "note": "changed since the run (rebuilt?): its hash would not be the booted image's"}
    digest = _sha256(kernel, st.st_size, st.st_mtime_ns, st.st_ino)
    if digest is None:
        return {**out, "note": "cannot read it now"}
    return {**out, "bytes": st.st_size, "sha256": digest}


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> Optional[str]:
    """A file's SHA-256, cached per version of the file (size, mtime, inode)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def collect(run_dir: Optional[Path], scenario: Optional[dict] = None) -> dict:
    """report.json's provenance: of a run directory (its QEMU, accelerator and guest image), or of
    a bare image's check (run_dir None: no QEMU ran; the one on PATH is named, no guest image)."""
    commit, dirty = git_commit()
    qemu = qemu_of_run(run_dir) if run_dir is not None else None
    if qemu is None:
        argv = _run_argv(run_dir) if run_dir is not None else []
        qemu = qemu_binary_version(argv[0] if argv else QEMU_BINARY)
    return {
        "dumpbed": {"version": dumpbed_version(), "commit": commit, "dirty": dirty},
        "python": platform.python_version(),
        "qemu": qemu,
        "accel": (scenario or {}).get("accel") if isinstance((scenario or {}).get("accel"), str) else None,
        "host": {"kernel": host_kernel(), "cpu_model": host_cpu_model()},
        "guest_image": guest_image(run_dir) if run_dir is not None else None,
    }
