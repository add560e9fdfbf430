"""Preparing a bare host (docs/nightly.md, "Preparing a bare host"): dumpbed's wheel copied over
SFTP and installed into a venv of its own, the host probed, its guest image built.

    WORKDIR/dumpbed-<version>-<sha16>/          one per wheel: a host prepared before is reused
        dumpbed-<version>-....whl
        venv/                                   made as .venv-<unique>, renamed into place whole
    WORKDIR/runs/<unique>/                      the cells' run directories (execute)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dumpbed.errors import DumpbedError, InfraError
from dumpbed.guests import profiles, recipes
from dumpbed.remote.hosts import Host
from dumpbed.remote.ssh import Connection, tail

# Never a wheel's source, at the checkout's top: version control, environments, caches, run and
# build output (a build in the checkout itself would leave build/ there, and setuptools carries
# build/'s stale files into later wheels: the wheel is built from a copy).
NOT_SOURCES = frozenset({".git", ".venv", "venv", ".tox", "runs", "build", "dist", ".pytest_cache", ".hypothesis",
                         ".mypy_cache", ".vagrant"})
REMOTE_PYTHON = "python3"  # the host's, to make the venv with
# Under the pty of a cell, or here: no progress bars, no terminal tables (dumpbed.tables.is_plain).
PLAIN = {"TTY_COMPATIBLE": "0"}


REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip can say


def source_root() -> Path:
    """The checkout dumpbed runs from, to build its wheel from."""
    root = recipes.CHECKOUT
    if (root / "pyproject.toml").is_file() and (root / "harness" / "dumpbed").is_dir():
        return root
    raise DumpbedError("dumpbed is installed from a wheel, not run from a checkout: there are no sources to "
                       "build the hosts' wheel from; pass --wheel FILE")


def copy_sources(root: Path, dest: Path) -> None:
    """The checkout at root, as a wheel is built from it, copied to dest (what goes into the
    wheel is pyproject.toml's and setup.py's choice, build output inside the trees included)."""
    root = Path(root)

    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        return skip | (NOT_SOURCES & set(names)) if Path(directory) == root else skip

    shutil.copytree(root, dest, ignore=ignore, symlinks=True)


def build_wheel(root: Path, out_dir: Path, timeout: float = 600) -> Path:
    """dumpbed's wheel, built by pip from a copy of the checkout at root."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dumpbed-wheel-") as tmp:
        src, dist = Path(tmp) / "src", Path(tmp) / "dist"
        copy_sources(root, src)
        argv = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                "-w", str(dist), str(src)]
        try:
            # The zip's timestamps fixed: the same sources make the same wheel, byte for byte,
            # so a host prepared from them before is reused (its venv is keyed by the wheel's hash).
            proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, env={**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH})
        except subprocess.TimeoutExpired:
            raise DumpbedError(f"building dumpbed's wheel took more than {timeout:g}s") from None
        if proc.returncode != 0:
            raise DumpbedError(f"building dumpbed's wheel failed (pip exit status {proc.returncode}): "
                               f"{_pip_error(proc.stderr + proc.stdout)}")
        wheels = list(dist.glob("dumpbed-*.whl"))
        if len(wheels) != 1:
            raise DumpbedError(f"building dumpbed's wheel made {len(wheels)} wheels, not one")
        target = out_dir / wheels[0].name
        shutil.move(wheels[0], target)
    return target


def _pip_error(output: str) -> str:
    """The lines of pip's output that say what failed, not its boilerplate notes."""
    lines = [line.strip() for line in output.splitlines()
             if "Error" in line and not line.strip().startswith(("note:", "ERROR: Failed"))]
    return " | ".join(lines[-3:])[-500:] if lines else tail(output)


@dataclass(frozen=True)
class Prepared:
    host: Host
    python: str  # WORKDIR/dumpbed-<version>-<sha16>/venv/bin/python on the host
    probe: dict

    @property
    def workdir(self) -> str:
        """The host's WORKDIR, resolved (absolute)."""
        return str(PurePosixPath(self.python).parents[3])

    def to_dict(self) -> dict:
        return {"host": self.host.to_dict(), "python": self.python, "probe": self.probe}

    @classmethod
    def from_dict(cls, d: dict) -> "Prepared":
        return cls(host=Host.from_dict(d["host"]), python=d["python"], probe=d["probe"])


def wheel_identity(wheel: Path) -> tuple[str, str]:
    """(version, the first 16 hex digits of its SHA-256) of a dumpbed wheel."""
    wheel = Path(wheel)
    parts = wheel.name.split("-")
    if len(parts) < 5 or parts[0] != "dumpbed" or wheel.suffix != ".whl":
        raise DumpbedError(f"{wheel}: not a dumpbed wheel (dumpbed-VERSION-...-any.whl)")
    h = hashlib.sha256()
    try:
        with open(wheel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise DumpbedError(f"{wheel}: cannot read it: {exc.strerror or exc}") from None
    return parts[1], h.hexdigest()[:16]


def prepare(host: Host, wheel: Path, timeout: float = 600) -> Prepared:
    """The host made ready for cells. InfraError when it cannot be reached or prepared (with the
    reason), HostKeyRefused when its key is not the known one."""
    wheel = Path(wheel)
    version, sha16 = wheel_identity(wheel)
    end = time.monotonic() + timeout

    def left() -> float:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise InfraError(f"host {host.name}: not prepared within {timeout:g}s")
        return remaining

    with Connection.connect(host, timeout=min(30.0, left())) as conn:
        home = f"{conn.resolve(host.workdir)}/dumpbed-{version}-{sha16}"
        venv = f"{home}/venv"
        python = f"{venv}/bin/python"
        if not conn.exists(python):
            _install(conn, wheel, home, venv, left)
        probe = _probe(conn, python, left())
        # the default profile's own image: other recipes are built when a cell first needs them
        recipe = profiles.get(profiles.DEFAULT).recipe
        conn.check([python, "-m", "dumpbed", "build-image", recipe], left(),
                   f"building the guest image (dumpbed build-image {recipe})", env=PLAIN)
    return Prepared(host=host, python=python, probe=probe)


def _install(conn: Connection, wheel: Path, home: str, venv: str, left) -> None:
    """The wheel into a venv made under a temporary name and renamed into place whole, so a
    half-made venv is never taken (another preparer may win the rename: its venv is as good)."""
    conn.makedirs(home)
    remote_wheel = f"{home}/{wheel.name}"
    if not conn.exists(remote_wheel):
        conn.put(wheel, remote_wheel)
    tmp = f"{home}/.venv-{uuid.uuid4().hex[:12]}"
    try:
        conn.check([REMOTE_PYTHON, "-m", "venv", tmp], left(), f"making a venv ({REMOTE_PYTHON} -m venv)")
        # --no-compile: byte-compiling all of numpy and matplotlib is 3/4 of the install's time;
        # what a run imports is compiled on first use instead (atomically: cells share the venv).
        conn.check([f"{tmp}/bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--no-input", "--no-compile", remote_wheel], left(), "installing dumpbed's wheel (pip install)")
        try:
            conn.sftp.rename(tmp, venv)
        except OSError:
            if not conn.exists(f"{venv}/bin/python"):
                raise InfraError(f"host {conn.host.name}: cannot rename {tmp} to {venv}") from None
    finally:
        try:  # what a failed or lost install left; the error that got here is the one to report
            if conn.exists(tmp):
                conn.run(["rm", "-rf", "--", tmp], timeout=120)
        except InfraError:
            pass


def _probe(conn: Connection, python: str, timeout: float) -> dict:
    done = conn.check([python, "-m", "dumpbed.remote.probe"], timeout, "probing the host (dumpbed.remote.probe)")
    probe = None
    for line in reversed(done.output.splitlines()):
        try:
            probe = json.loads(line)
            break
        except ValueError:
            continue
    if not isinstance(probe, dict):
        raise InfraError(f"host {conn.host.name}: the probe printed no JSON: {tail(done.output)}")
    missing = []
    if not probe.get("qemu"):
        missing.append("no QEMU (qemu-system-x86_64)")
    if not probe.get("qemu_img"):
        missing.append("no qemu-img")
    tools = [tool for tool, found in (probe.get("toolchain") or {}).items() if not found]
    if tools:
        missing.append(f"no C toolchain ({', '.join(sorted(tools))} missing)")
    if missing:
        raise InfraError(f"host {conn.host.name}: cannot run cells: {'; '.join(missing)}")
    return probe


def require_kvm(prepared: Prepared) -> None:
    """`--require-kvm`: a host whose KVM does not work is an error, not a skip."""
    kvm = prepared.probe.get("kvm") or {}
    if not kvm.get("usable"):
        raise DumpbedError(f"host {prepared.host.name}: KVM is not usable: {kvm.get('reason', 'unknown')} "
                           f"(--require-kvm)")
