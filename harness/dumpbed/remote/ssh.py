"""One SSH connection to a host (paramiko): strict host keys, key authentication only,
commands as argument vectors, a deadline on everything, SFTP copies both ways.

What goes wrong on the way (the connection lost, a channel closed without an exit status, a
copy cut short) is an InfraError: the machinery failed, not the driver under test."""
from __future__ import annotations

import os
import shlex
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping, Optional

import paramiko

from dumpbed.errors import DumpbedError, InfraError, describe_os_error
from dumpbed.remote.hosts import Host

CONNECT_SECONDS = 30.0
KEEPALIVE_SECONDS = 15
SILENCE_SECONDS = 60  # no answer from the host for this long: the connection is lost
_CHUNK = 1 << 20  # read from SFTP at a time
_HOLE = 64 << 10  # zeros left unwritten in pieces this big: disk images stay sparse


class HostKeyRefused(DumpbedError):
    """The host's key is not in its known_hosts file, or is not the one there: never added."""


class AuthRefused(InfraError):
    """The host refused the client key (a host the matrix cannot use: its cells go elsewhere)."""


@dataclass(frozen=True)
class Completed:
    exit_status: int
    output: str  # stdout and stderr, interleaved as they came


class _Refuse(paramiko.MissingHostKeyPolicy):
    """RejectPolicy that keeps the key it refused, to name its fingerprint."""

    key: Optional[paramiko.PKey] = None

    def missing_host_key(self, client, hostname, key):
        self.key = key
        raise paramiko.SSHException(f"host key for {hostname} not in known_hosts")


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def _keyscan(host: Host) -> str:
    port = f"-p {host.port} " if host.port != 22 else ""
    return f"ssh-keyscan {port}{shlex.quote(host.address)} >> {shlex.quote(str(host.known_hosts))}"


def _forget(host: Host) -> str:
    """The command that removes the host's old key: its name in known_hosts, as ssh spells it."""
    name = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
    return f"ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(host.known_hosts))}"


class Connection:
    """`with Connection.connect(host) as conn:` ... run, put, get_tree."""

    def __init__(self, host: Host, client: paramiko.SSHClient):
        self.host = host
        self.client = client
        self._sftp: Optional[paramiko.SFTPClient] = None
        self._home: Optional[str] = None

    @classmethod
    def connect(cls, host: Host, timeout: float = CONNECT_SECONDS) -> "Connection":
        try:
            pkey = paramiko.PKey.from_path(host.key_file)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise DumpbedError(f"host {host.name}: key_file {host.key_file}: cannot load the private key "
                               f"(an unencrypted key is needed: no agent, no passphrase): {exc}") from None
        client = paramiko.SSHClient()
        # Only the hosts file's known_hosts: never the system's or the user's files, never saved.
        try:
            client.get_host_keys().load(str(host.known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            raise DumpbedError(f"host {host.name}: known_hosts {host.known_hosts}: cannot read it: {exc}") from None
        policy = _Refuse()
        client.set_missing_host_key_policy(policy)
        try:
            client.connect(host.address, port=host.port, username=host.user, pkey=pkey, allow_agent=False,
                           look_for_keys=False, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           channel_timeout=timeout, gss_auth=False)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyRefused(
                f"host {host.name}: the host key of {host.where} has changed ({_fingerprint(exc.key)}, not the "
                f"{exc.expected_key.get_name()} key {host.known_hosts} has): refused. If the host was really "
                f"re-keyed, check the new key against its console, remove the old one ({_forget(host)}) and add "
                f"the new one ({_keyscan(host)})") from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthRefused(f"host {host.name}: {host.where} refused user {host.user} with key "
                              f"{host.key_file}: {exc}") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            client.close()
            if policy.key is not None:
                raise HostKeyRefused(
                    f"host {host.name}: the host key of {host.where} ({_fingerprint(policy.key)}) is not in "
                    f"{host.known_hosts}: refused, never added. Check it against the host's console and add "
                    f"it: {_keyscan(host)}") from None
            raise InfraError(f"host {host.name}: cannot connect to {host.where}: {_describe(exc)}") from None
        _detect_silence(client.get_transport())
        return cls(host, client)

    def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:  # noqa: BLE001: a dead connection cannot close cleanly
                pass
        self.client.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _lost(self, what: str, exc: BaseException) -> InfraError:
        return InfraError(f"host {self.host.name}: connection lost while {what}: {_describe(exc)}")

    # -- commands ----------------------------------------------------------------------------

    def run(self, argv: list[str], timeout: float, pty: bool = False, env: Optional[Mapping[str, str]] = None,
            on_output: Optional[Callable[[bytes], None]] = None) -> Completed:
        """Run an argument vector on the host (each word quoted for its shell) and wait at most
        `timeout` seconds for its exit status. `env` is set through env(1): sshd passes on no
        variables of ours. Under a pty, a dropped connection hangs the command up (SIGHUP)."""
        words = [str(a) for a in argv]
        what = PurePosixPath(words[0]).name if words else "nothing"
        if env:
            words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
        command = shlex.join(words)
        end = time.monotonic() + timeout
        chunks: list[bytes] = []
        try:
            transport = self.client.get_transport()
            if transport is None or not transport.is_active():
                raise EOFError("the connection is closed")
            chan = transport.open_session(timeout=min(timeout, CONNECT_SECONDS))
            try:
                if pty:
                    chan.get_pty(term="dumb", width=160, height=48)
                chan.set_combine_stderr(True)
                chan.exec_command(command)
                while True:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise InfraError(f"host {self.host.name}: {what} did not finish within {timeout:g}s")
                    chan.settimeout(min(left, 1.0))
                    try:
                        data = chan.recv(65536)
                    except socket.timeout:
                        if not transport.is_active():
                            raise EOFError("the transport closed") from None
                        continue
                    if not data:
                        break
                    chunks.append(data)
                    if on_output is not None:
                        try:
                            on_output(data)
                        except OSError as exc:  # this machine's trouble (a full disk), not the host's
                            raise DumpbedError(f"saving the output of {what}: {describe_os_error(exc)}") from None
                # End of output: the exit status follows (or never comes: the channel closed).
                while not chan.status_event.wait(min(max(end - time.monotonic(), 0), 1.0)):
                    if time.monotonic() >= end:
                        raise InfraError(f"host {self.host.name}: {what} did not finish within {timeout:g}s")
                    if not transport.is_active():
                        raise EOFError("the transport closed")
                status = chan.exit_status if chan.exit_status_ready() else -1
            finally:
                chan.close()  # a command still running is hung up (pty) or loses its channel
        except InfraError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(f"running {what}", exc) from None
        if status < 0:
            if not transport.is_active():
                raise InfraError(f"host {self.host.name}: connection lost while running {what}: no exit status")
            raise InfraError(f"host {self.host.name}: {what} ended without an exit status (killed by a signal?)")
        output = b"".join(chunks).decode("utf-8", errors="replace")
        return Completed(status, output.replace("\r\n", "\n") if pty else output)

    def check(self, argv: list[str], timeout: float, what: str, **kwargs) -> Completed:
        """run(), an exit status other than 0 an InfraError naming `what` and the output's tail."""
        done = self.run(argv, timeout, **kwargs)
        if done.exit_status != 0:
            raise InfraError(f"host {self.host.name}: {what} failed (exit status {done.exit_status}): "
                             f"{tail(done.output)}")
        return done

    # -- files -------------------------------------------------------------------------------

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = self.client.open_sftp()
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise self._lost("opening SFTP", exc) from None
        return self._sftp

    def home(self) -> str:
        """The login directory on the host (SFTP's '.')."""
        if self._home is None:
            try:
                self._home = self.sftp.normalize(".")
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise self._lost("finding the home directory", exc) from None
        return self._home

    def resolve(self, path: str) -> str:
        """A host path made absolute: `~` and relative paths are the host's home's."""
        if path == "~" or path.startswith("~/"):
            path = path[2:] if len(path) > 1 else ""
        if not path.startswith("/"):
            path = str(PurePosixPath(self.home()) / path) if path else self.home()
        return path

    def exists(self, remote: str) -> bool:
        try:
            self.sftp.stat(remote)
            return True
        except FileNotFoundError:
            return False
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(f"looking at {remote}", exc) from None

    def makedirs(self, remote: str) -> None:
        """mkdir -p, over SFTP."""
        parts = PurePosixPath(remote).parts
        for i in range(2, len(parts) + 1):
            sub = str(PurePosixPath(*parts[:i]))
            if not self.exists(sub):
                try:
                    self.sftp.mkdir(sub)
                except OSError:
                    if not self.exists(sub):  # made meanwhile by another preparer: fine
                        raise InfraError(f"host {self.host.name}: cannot create {sub}") from None
                except (EOFError, paramiko.SSHException) as exc:
                    raise self._lost(f"creating {sub}", exc) from None

    def put(self, local: Path, remote: str) -> None:
        """Copy a file to the host under a temporary name, renamed into place once whole."""
        partial = f"{remote}.part-{os.getpid()}-{time.monotonic_ns()}"
        try:
            self.sftp.put(str(local), partial, confirm=True)  # confirm: the size is checked
            self.sftp.posix_rename(partial, remote)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise InfraError(f"host {self.host.name}: copying {local} to {remote} was cut: {_describe(exc)}") from None

    def get_tree(self, remote_dir: str, local_dir: Path) -> None:
        """Copy a directory from the host, recursively: regular files (runs of zeros left as
        holes, so sparse disk images stay sparse), sub-directories and symlinks; modes and
        modification times kept. A copy cut short is an InfraError."""
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        try:
            entries = self.sftp.listdir_attr(remote_dir)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise InfraError(f"host {self.host.name}: cannot list {remote_dir}: {_describe(exc)}") from None
        for entry in sorted(entries, key=lambda e: e.filename):
            source = f"{remote_dir}/{entry.filename}"
            target = local_dir / entry.filename
            mode = entry.st_mode or 0
            if stat.S_ISDIR(mode):
                self.get_tree(source, target)
            elif stat.S_ISLNK(mode):
                try:
                    os.symlink(self.sftp.readlink(source), target)
                except (OSError, EOFError, paramiko.SSHException) as exc:
                    raise InfraError(f"host {self.host.name}: copying {source} was cut: {_describe(exc)}") from None
            elif stat.S_ISREG(mode):
                self._get_file(source, target, entry)
            # sockets, fifos: nothing of a run's artifacts

    def _get_file(self, source: str, target: Path, attrs: paramiko.SFTPAttributes) -> None:
        size = attrs.st_size or 0
        copied = 0
        try:
            with self.sftp.open(source, "rb") as remote, open(target, "wb") as local:
                _quiet_prefetch(remote)
                remote.prefetch(size)  # pipelined reads: SFTP's round trips would dominate
                while True:
                    chunk = remote.read(_CHUNK)
                    if not chunk:
                        break
                    _write_sparse(local, chunk)
                    copied += len(chunk)
                local.truncate(copied)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise InfraError(f"host {self.host.name}: copying {source} was cut: {_describe(exc)}") from None
        if copied != size:
            raise InfraError(f"host {self.host.name}: copying {source} was cut: {copied} of {size} bytes")
        os.chmod(target, stat.S_IMODE(attrs.st_mode or 0o644))
        os.utime(target, (attrs.st_atime or time.time(), attrs.st_mtime or time.time()))


def _quiet_prefetch(remote: paramiko.SFTPFile) -> None:
    """paramiko's prefetch thread dies with a traceback on stderr when the connection is cut
    under it; the reading thread reports the cut (InfraError): the thread's own is only noise."""
    requests = getattr(remote, "_prefetch_thread", None)
    if requests is None:
        return

    def quietly(*args, **kwargs):
        try:
            requests(*args, **kwargs)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    remote._prefetch_thread = quietly


def _write_sparse(local, chunk: bytes) -> None:
    """Write chunk, leaving each all-zero _HOLE-sized piece a hole (seeked over)."""
    view = memoryview(chunk)
    for start in range(0, len(chunk), _HOLE):
        end = min(start + _HOLE, len(chunk))
        if chunk.count(0, start, end) == end - start:
            local.seek(end - start, os.SEEK_CUR)
        else:
            local.write(view[start:end])


def _detect_silence(transport: paramiko.Transport) -> None:
    """A host that vanishes without a word (powered off, cut off) ends the connection within a
    minute or so, not TCP's quarter of an hour: SSH keepalives keep data in flight, and the
    kernel gives up on it unanswered (TCP_USER_TIMEOUT) or on an idle peer (TCP keepalive)."""
    transport.set_keepalive(KEEPALIVE_SECONDS)
    sock = transport.sock
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, SILENCE_SECONDS * 1000)
    except (OSError, AttributeError):
        pass  # not a TCP socket, or a kernel without these: TCP's own timeouts apply


def _describe(exc: BaseException) -> str:
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) and exc.errors:
        exc = next(iter(exc.errors.values()))  # one address's socket error: "Connection refused"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = describe_os_error(exc)
    return " ".join(text.split())


def tail(output: str, lines: int = 3, chars: int = 400) -> str:
    """The last lines of a command's output, as one line for an error message."""
    last = [line.strip() for line in output.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(last)[-chars:] or "no output"


connect = Connection.connect
