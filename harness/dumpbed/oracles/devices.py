"""The dump devices of a run (primary, and the secondary restart target) and the `devices`
oracle: each device holds the dump it should, with the generation and role it should.

Without a fault, the primary holds the complete dump (generation 1) and the secondary, if any,
is untouched. When the primary fails mid-dump and a secondary is configured, the dump
restarts there (docs/dump-format.md, "Restart"): the primary keeps a partial dump of
generation 1, the secondary a complete one of generation 2 that names the failure.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dumpbed.guest_interface import Errno
from dumpbed.images import layout as layout_mod
from dumpbed.images.layout import DiskLayout
from dumpbed.oracles.base import Check, make_check
from dumpbed.reader import dumpfmt

SECONDARY_LAYOUT = "secondary.layout.json"


@dataclass
class DumpDevice:
    role: str  # "primary" or "secondary"
    kind: str
    image: Path
    layout: DiskLayout


def dump_devices(run_dir: Path, scenario: dict) -> list[DumpDevice]:
    """The run's dump devices, primary first."""
    topology = scenario.get("topology") or {"kind": scenario["disk"]}
    primary = layout_mod.load(run_dir / "layout.json")
    devices = [DumpDevice("primary", topology["kind"], run_dir / primary.image, primary)]
    secondary = topology.get("secondary")
    if secondary:
        layout = layout_mod.load(run_dir / SECONDARY_LAYOUT)
        devices.append(DumpDevice("secondary", secondary["kind"], run_dir / layout.image, layout))
    return devices


def dump_of_record(dumps: dict[str, dumpfmt.Dump]) -> str:
    """The role whose dump the content oracles judge: the secondary once it holds a dump."""
    secondary = dumps.get("secondary")
    return "secondary" if secondary is not None and secondary.status != "none" else "primary"


def summary(role: str, kind: str, dump: dumpfmt.Dump) -> dict:
    """One device's line of the report: its dump status and generation."""
    h = dump.header
    return {
        "role": role, "kind": kind, "status": dump.status,
        "generation": h.generation if h else None,
        "device_role": getattr(h, "device_role", None) if h else None,
        "header_status": h.status_name if h else None,
        "failure": h.failure if h else None,
        "restart_error": getattr(h, "restart_error", None) if h else None,
        "body_written": h.body_written if h else None,
        "first_inconsistency": dump.first_inconsistency,
    }


def check_devices(dumps: dict[str, dumpfmt.Dump], restart_expected: bool, restart_errno: int = Errno.EIO) -> Check:
    """Each device holds the dump the scenario implies (see the module docstring). `restart_errno`:
    what the primary's failure must have been (the fault's: EIO from a disk, ETIMEDOUT from a
    network dump's link or server)."""
    primary, secondary = dumps["primary"], dumps.get("secondary")
    problems: list[str] = []
    if restart_expected:
        problems += _expect(primary, "primary", {"partial"}, generation=1, device_role=1)
        if secondary is None:
            problems.append("a restart is expected but there is no secondary device")
        else:
            problems += _expect(secondary, "secondary", {"complete"}, generation=2, device_role=2)
            h = secondary.header
            if h is not None and getattr(h, "restart_error", None) != restart_errno:
                problems.append(f"secondary: restart_error {getattr(h, 'restart_error', None)}, "
                                f"expected {int(restart_errno)} ({Errno(restart_errno).name}, the injected fault)")
    else:
        problems += _expect(primary, "primary", {"complete", "partial", "corrupt", "none"}, generation=1,
                            device_role=1, allow_none=True)
        if secondary is not None and secondary.status != "none":
            problems.append(f"secondary: holds a {secondary.status} dump, but the primary never failed")
    detail = "; ".join(f"{role} {d.status}" + (f" generation {d.header.generation}" if d.header else "")
                       for role, d in dumps.items())
    return make_check("devices", problems, detail)


def _expect(dump: dumpfmt.Dump, role: str, statuses: set[str], generation: int, device_role: int,
            allow_none: bool = False) -> list[str]:
    if dump.status not in statuses:
        return [f"{role}: {dump.status} dump, expected {' or '.join(sorted(statuses))}"]
    h = dump.header
    if h is None:
        return [] if allow_none else [f"{role}: no valid header"]
    problems = []
    if h.generation != generation:
        problems.append(f"{role}: generation {h.generation}, expected {generation}")
    role_field: Optional[int] = getattr(h, "device_role", None)
    if role_field != device_role:
        problems.append(f"{role}: device_role {role_field}, expected {device_role}")
    return problems
