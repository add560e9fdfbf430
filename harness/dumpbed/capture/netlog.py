"""The dump server's command log: a network dump's writes and flushes as the "device" (the
dump server, `dumpbed netdumpd`) took and finished them, from its netdumpd.jsonl (docs/
netdump-protocol.md, section 7), in the command log's terms (capture/cmdlog.py), so the oracles
that judge order and crash consistency read a network dump as a disk's.

A DATA is a write taken when its datagram arrived and finished when it was written and
acknowledged; a FLUSH (and the FINISH, which syncs too) a flush, finished after its fdatasync.
A refused DATA is a write that failed (status: its errno)."""
from __future__ import annotations

from pathlib import Path

from dumpbed.images import layout as layout_mod
from dumpbed.net.evidence import server_events

DISK = "net:0"  # the command log's name for the dump server's image
_KINDS = {"write": ("write", "DATA"), "flush": ("flush", "FLUSH"), "finish": ("flush", "FINISH")}


def commands(run_dir: Path, first_seq: int = 0) -> list:
    """The server's commands, in the order it took them; [] for a run without a dump server."""
    from dumpbed.capture.cmdlog import Command

    events = server_events(run_dir)
    if not events:
        return []
    dump_offset = layout_mod.load(Path(run_dir) / "layout.json").dump_offset
    out = []
    for e in events:
        name = e.get("event")
        if name == "refused" and e.get("type", "DATA") == "DATA":
            name = "write"
        if name not in _KINDS:
            continue
        kind, opcode = _KINDS[name]
        received = float(e.get("received", e["t"]))
        out.append(Command(seq=first_seq + len(out), disk=DISK, kind=kind, opcode=opcode,
                           offset=dump_offset + int(e.get("offset", 0)) if kind == "write" else None,
                           length=int(e.get("bytes", 0)) if kind == "write" else 0,
                           issued=received, completed=float(e["t"]), status=int(e.get("status", 0))))
    out.sort(key=lambda c: (c.issued, c.seq))
    return out
