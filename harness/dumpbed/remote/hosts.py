"""The hosts file (docs/nightly.md, "The hosts file"): where the matrix's cells may run."""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dumpbed.errors import DumpbedError

DEFAULT_WORKDIR = "~/.cache/dumpbed-remote"
# A host's name keys pytest-xdist workers, results.json and the history: a plain word.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEYS = ("address", "port", "user", "key_file", "known_hosts", "slots", "workdir")
REQUIRED = ("address", "user", "key_file", "known_hosts")


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    slots: int
    workdir: str  # on the host: `~` is the host's home

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"

    def to_dict(self) -> dict:
        """JSON-able: handed to pytest-xdist workers."""
        return {"name": self.name, "address": self.address, "port": self.port, "user": self.user,
                "key_file": str(self.key_file), "known_hosts": str(self.known_hosts), "slots": self.slots,
                "workdir": self.workdir}

    @classmethod
    def from_dict(cls, d: dict) -> "Host":
        return cls(name=d["name"], address=d["address"], port=int(d["port"]), user=d["user"],
                   key_file=Path(d["key_file"]), known_hosts=Path(d["known_hosts"]), slots=int(d["slots"]),
                   workdir=d["workdir"])


def load_hosts(path: Path) -> list[Host]:
    """The hosts of a hosts file, in its order. Any bad input is a DumpbedError naming the file,
    the host and the key, before anything connects."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DumpbedError(f"{path}: no such hosts file") from None
    except OSError as exc:
        raise DumpbedError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DumpbedError(f"{path}: not a valid TOML file: {exc}") from None
    unknown = sorted(set(data) - {"defaults", "hosts"})
    if unknown:
        raise DumpbedError(f"{path}: unknown table or key {unknown[0]!r} (a hosts file has [defaults] and "
                           f"[hosts.NAME] tables)")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise DumpbedError(f"{path}: defaults: must be a table ([defaults])")
    _check_keys(path, "[defaults]", defaults)
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        raise DumpbedError(f"{path}: no hosts: add a [hosts.NAME] table per host")
    return [_host(path, name, defaults, table) for name, table in hosts.items()]


def _check_keys(path: Path, where: str, table: dict) -> None:
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise DumpbedError(f"{path}: {where}: unknown key {unknown[0]!r} (the keys are {', '.join(KEYS)})")


def _host(path: Path, name: str, defaults: dict, table: Any) -> Host:
    where = f"host {name}"
    if not NAME.fullmatch(name):
        raise DumpbedError(f"{path}: host {name!r}: bad name: letters, digits, '.', '-' and '_', "
                           f"starting with a letter or digit")
    if not isinstance(table, dict):
        raise DumpbedError(f"{path}: {where}: must be a table ([hosts.{name}])")
    _check_keys(path, where, table)
    merged = {**defaults, **table}
    for key in REQUIRED:
        if key not in merged:
            raise DumpbedError(f"{path}: {where}: {key}: missing (required, here or in [defaults])")

    def text(key: str, default=None) -> str:
        value = merged.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise DumpbedError(f"{path}: {where}: {key}: must be a non-empty string, not {value!r}")
        return value

    def integer(key: str, default: int, low: int, high: int) -> int:
        value = merged.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise DumpbedError(f"{path}: {where}: {key}: must be a whole number from {low} to {high}, not {value!r}")
        return value

    def existing_file(key: str) -> Path:
        # Relative to the hosts file; `~` is the controller's home.
        file = path.parent / Path(text(key)).expanduser()
        if not file.is_file():
            raise DumpbedError(f"{path}: {where}: {key}: no such file: {file}")
        return file.absolute()

    address = text("address")
    if any(c.isspace() for c in address) or address.startswith("-"):
        raise DumpbedError(f"{path}: {where}: address: not a host name or IP address: {address!r}")
    return Host(name=name, address=address, port=integer("port", 22, 1, 65535), user=text("user"),
                key_file=existing_file("key_file"), known_hosts=existing_file("known_hosts"),
                slots=integer("slots", 1, 1, 1024), workdir=text("workdir", DEFAULT_WORKDIR))


HOSTS_ENV = "DUMPBED_HOSTS"  # the hosts file `run --host` reads without --hosts


def default_hosts_file() -> Path:
    """`run --host`'s hosts file without --hosts: $DUMPBED_HOSTS, else the user's config."""
    import os

    if os.environ.get(HOSTS_ENV):
        return Path(os.environ[HOSTS_ENV])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "dumpbed" / "hosts.toml"


def find_host(path: Path, name: str) -> Host:
    """The host of this name in the hosts file; a DumpbedError naming the ones there."""
    hosts = load_hosts(path)
    for host in hosts:
        if host.name == name:
            return host
    raise DumpbedError(f"--host {name}: no such host in {path} (its hosts: {', '.join(h.name for h in hosts)})")
