"""The guest's dump profile (docs/guest-interface.md, "PROFILE"): where the dump's time went, read
from the result channel's PROFILE line and turned into milliseconds and shares of the dump.

    breakdown(run_dir) -> {"total_ms", "rows": [{"what", "ms", "share", "n", "per_ms"}], ...} or None
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from dumpbed.machine import resultchan
from dumpbed.units import MiB

# (field, what it is), in the order the table shows them (docs/guest-interface.md)
CATEGORIES = (
    ("write", "writes (DUMPWRITE, polled to completion or to a free slot)"),
    ("flush", "writes with DUMP_FSYNC (the write and its flush)"),
    ("crc", "chunk CRC32C (ring 3)"),
    ("copy", "staging copies (ring 3)"),
    ("meta", "directories and the table's CRC"),
    ("device", "DUMPSTART, DUMPQUERY, DUMPEND"),
    ("pin", "pinning enforcement: in and out"),
    ("lines", "PROGRESS lines (a port write per byte)"),
    ("calls", "the components' routine calls (pinning guard, ring 3)"),
    ("zip", "compressing the data into LZ4 frames, raw CRCs (ring 3)"),
)


def read(run_dir: Path) -> Optional[dict[str, int]]:
    """The PROFILE line's fields as integers, or None (a guest that prints none, a run cut short)."""
    lines = [line for line in resultchan.read_lines(Path(run_dir) / "result.log") if line.word == "PROFILE"]
    if not lines:
        return None
    try:
        return {key: int(value, 0) for key, value in lines[-1].fields.items()}
    except ValueError:
        return None


def breakdown(run_dir: Path) -> Optional[dict]:
    """The profile in milliseconds: each category's time, share of the dump, count and time per
    call; the ring 3 trips (count x the measured cost of one, already inside crc, copy and zip); the
    page-table switches; the rest (the crash handler, the facility's bookkeeping, the console)."""
    p = read(run_dir)
    if not p or not p.get("tsc_hz") or not p.get("total"):
        return None
    ms = lambda cycles: cycles * 1000.0 / p["tsc_hz"]  # noqa: E731
    total = ms(p["total"])
    rows, accounted = [], 0.0
    for key, what in CATEGORIES:
        t, n = ms(p.get(key, 0)), p.get(f"{key}_n", 0)
        accounted += t
        rows.append({"what": key, "description": what, "ms": round(t, 3), "share": round(t / total, 4),
                     "n": n, "per_ms": round(t / n, 4) if n else None})
    rest = max(0.0, total - accounted)
    rows.append({"what": "rest", "description": "the crash handler, the facility's bookkeeping, the console",
                 "ms": round(rest, 3), "share": round(rest / total, 4), "n": None, "per_ms": None})
    trips = p.get("user_calls", 0)
    write_ms = ms(p.get("write", 0)) + ms(p.get("flush", 0))
    return {
        "total_ms": round(total, 3),
        "rows": rows,
        "user_calls": trips,
        "user_call_us": round(ms(p.get("user_call", 0)) * 1000, 3),
        "user_calls_ms": round(trips * ms(p.get("user_call", 0)), 3),
        "cr3_writes": p.get("cr3_writes", 0),
        "write_bytes": p.get("write_bytes", 0),
        "zip_in": p.get("zip_in", 0),  # the data's bytes compressed (0 without compress=lz4)
        # the device's rate while the guest waited on it: bytes over the writes' own time
        "device_mib_s": round(p.get("write_bytes", 0) / MiB / (write_ms / 1000), 1) if write_ms else None,
    }
