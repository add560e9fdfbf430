"""A real OpenSSH server on 127.0.0.1 for the remote-host tests: a "host" the harness reaches
over SSH exactly as it reaches a KVM machine (docs/nightly.md, "The hosts file").

    with Sshd(tmp, "alpha", workdir=tmp / "work", env={"DUMPBED_CACHE": ...}) as sshd:
        sshd.host            # a dumpbed.remote.hosts.Host for it
        sshd.kill()          # the host vanishes: sshd and every process under it SIGKILLed

Everything lives in the given directory: the host key, the authorized client key, the config,
sshd's log. Environment variables reach the sessions by sshd's own SetEnv (DUMPBED_CACHE,
TMPDIR...: nothing of a test lands in ~/.cache or /tmp), so a "host without KVM" is one with
DUMPBED_KVM_DEVICE naming a missing device."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable, Mapping, Optional

from dumpbed.remote.hosts import Host
from tests.support.procs import alive, descendants, free_port

SSHD = "/usr/sbin/sshd"
START_SECONDS = 15.0
STOP_SECONDS = 10.0


def keygen(path: Path) -> Path:
    """A fresh unencrypted ed25519 key pair at path (and path.pub)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
                   check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    return path


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Sshd:
    def __init__(self, root: Path, name: str, workdir: Path, env: Optional[Mapping[str, str]] = None,
                 user: str = "root"):
        self.name = name
        self.dir = Path(root) / f"sshd-{name}"
        self.workdir = Path(workdir)
        self.env = dict(env or {})
        self.user = user
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.host_key = self.dir / "host_key"
        self.client_key = self.dir / "client_key"
        self.known_hosts = self.dir / "known_hosts"
        self.log = self.dir / "sshd.log"

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> "Sshd":
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key)
            keygen(self.client_key)
            (self.dir / "authorized_keys").write_text((self.dir / "client_key.pub").read_text())
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        for _ in range(3):  # the free port may be taken between our probe and sshd's bind
            self.port = free_port()
            (self.dir / "sshd_config").write_text(self._config())
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True)
            if self._wait_ready():
                self.known_hosts.write_text(self.known_hosts_line())
                return self
        raise RuntimeError(f"sshd {self.name} did not start: {self.log.read_text()[-2000:]}")

    def _config(self) -> str:
        lines = [f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}", "PidFile none",
                 f"AuthorizedKeysFile {self.dir / 'authorized_keys'}", "StrictModes no", "UsePAM no",
                 "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
                 "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp", "UseDNS no",
                 "PrintMotd no", "MaxStartups 50", "LogLevel INFO"]
        if self.env:
            lines.append("SetEnv " + " ".join(f'"{k}={v}"' for k, v in self.env.items()))
        return "\n".join(lines) + "\n"

    def _wait_ready(self) -> bool:
        """True once sshd answers with its banner; False when it exited (the port was taken)."""
        end = time.monotonic() + START_SECONDS
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(8).startswith(b"SSH-"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd {self.name} not answering on port {self.port} within {START_SECONDS:g}s")

    def kill(self) -> None:
        """The host vanishes: sshd and every process under it (sessions, a dumpbed run, its
        QEMU) SIGKILLed, frozen first so that none escapes by forking or being reparented."""
        if self.proc is None:
            return
        pids = descendants(self.proc.pid)
        _signal_all(pids, signal.SIGSTOP)
        pids = descendants(self.proc.pid)  # what forked before the stop landed
        _signal_all(reversed(pids), signal.SIGKILL)
        self._reap(pids)

    def stop(self) -> None:
        """sshd and its sessions ended (SIGTERM, then SIGKILL after STOP_SECONDS)."""
        if self.proc is None:
            return
        pids = descendants(self.proc.pid)
        _signal_all(reversed(pids), signal.SIGTERM)
        end = time.monotonic() + STOP_SECONDS
        while time.monotonic() < end and any(alive(p) for p in pids):
            time.sleep(0.05)
        _signal_all(pids, signal.SIGKILL)
        self._reap(pids)

    def _reap(self, pids: list[int]) -> None:
        try:
            self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        end = time.monotonic() + STOP_SECONDS
        while time.monotonic() < end and any(alive(p) for p in pids):
            time.sleep(0.05)
        self.proc = None

    def __enter__(self) -> "Sshd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what a client needs -----------------------------------------------------------------

    def runs_dir(self) -> Path:
        """WORKDIR/runs: where the cells' run directories are made on this host."""
        return self.workdir / "runs"

    def known_hosts_line(self) -> str:
        kind, key = (self.dir / "host_key.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    @property
    def host(self) -> Host:
        return Host(name=self.name, address="127.0.0.1", port=self.port, user=self.user,
                    key_file=self.client_key, known_hosts=self.known_hosts, slots=1, workdir=str(self.workdir))

    def hosts_toml(self) -> str:
        """This host's [hosts.NAME] table of a hosts file."""
        return (f'[hosts.{self.name}]\naddress = "127.0.0.1"\nport = {self.port}\nuser = "{self.user}"\n'
                f'key_file = "{self.client_key}"\nknown_hosts = "{self.known_hosts}"\n'
                f'workdir = "{self.workdir}"\n')


def write_hosts(path: Path, sshds: Iterable[Sshd]) -> Path:
    Path(path).write_text("\n".join(s.hosts_toml() for s in sshds))
    return Path(path)


class SshHosts:
    """The session's hosts (the ssh_hosts fixture): `hosts` (alpha and beta), more on demand
    (start_extra), the wheel they are prepared from, hosts files naming any of them.

    Each host has a WORKDIR of its own (its runs/ its own), where the install directory of the
    wheel (dumpbed-<version>-<sha16>) is a link to one shared directory: the first prepare
    installs the venv, every later one, of any host, reuses it as a host prepared before does.
    Their sessions share an image cache, a pip cache and a temp dir under `base` (sshd SetEnv)."""

    def __init__(self, base: Path, wheel: Path):
        from dumpbed.remote.prepare import wheel_identity

        self.base = Path(base)
        self.wheel = Path(wheel)
        version, sha16 = wheel_identity(self.wheel)
        self.install = self.base / "shared" / f"dumpbed-{version}-{sha16}"
        self.install.mkdir(parents=True, exist_ok=True)
        self.env = {}
        for var, sub in (("DUMPBED_CACHE", "cache"), ("TMPDIR", "tmp"), ("XDG_CACHE_HOME", "xdg")):
            (self.base / sub).mkdir(exist_ok=True)
            self.env[var] = str(self.base / sub)
        self.no_kvm_device = str(self.base / "no-kvm")  # DUMPBED_KVM_DEVICE of a host without KVM
        self._all: list[Sshd] = []
        self._files = 0
        try:
            self.hosts = [self.start_extra("alpha"), self.start_extra("beta")]
        except BaseException:
            self.stop()
            raise

    def start_extra(self, name: str, kvm: bool = True, env: Optional[Mapping[str, str]] = None) -> Sshd:
        """A running host of this name (started if none is: a killed one is replaced), stopped
        at the session's end; kvm=False: its sessions find no KVM device."""
        for sshd in self._all:
            if sshd.name == name and sshd.proc is not None and sshd.proc.poll() is None:
                return sshd
        root = self.base / "hosts" / f"{name}-{len(self._all)}"
        workdir = root / "work"
        workdir.mkdir(parents=True)
        (workdir / self.install.name).symlink_to(self.install)
        extra = {} if kvm else {"DUMPBED_KVM_DEVICE": self.no_kvm_device}
        sshd = Sshd(root, name, workdir, {**self.env, **extra, **(env or {})})
        self._all.append(sshd)
        return sshd.start()

    def __getitem__(self, name: str) -> Sshd:
        return next(s for s in reversed(self._all) if s.name == name)

    def hosts_file(self, sshds: Optional[Iterable[Sshd]] = None) -> Path:
        """A hosts file naming these hosts (default alpha and beta)."""
        self._files += 1
        return write_hosts(self.base / f"hosts-{self._files}.toml", self.hosts if sshds is None else sshds)

    def stop(self) -> None:
        for sshd in self._all:
            sshd.stop()
