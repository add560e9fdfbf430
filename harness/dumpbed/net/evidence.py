"""What a network dump left outside the guest (docs/netdump-protocol.md, sections 7 and 8): the
frames on the link (link.pcap, as they crossed the guest's side) and the dump server's events
(netdumpd.jsonl), read into plain records for the oracles and the command log. The names of
those files (and of link.json) are defined here, for the link and the server that write them."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from dumpbed.errors import DumpbedError
from dumpbed.net import protocol

PCAP_FILE = "link.pcap"  # the link's frames (net/link.py)
LINK_JSON_FILE = "link.json"  # the link's counters (net/link.py)
SERVER_EVENTS_FILE = "netdumpd.jsonl"  # the dump server's events (net/server.py)
_SERVER_MAC = bytes.fromhex(protocol.SERVER_MAC.replace(":", ""))


@dataclass(frozen=True)
class Frame:
    """One frame on the link's guest side."""
    t: float  # host time (time.time())
    from_guest: bool  # the guest sent it (else the link gave it to the guest)
    length: int  # the whole Ethernet frame, no FCS
    kind: str  # "arp", "netdump", "udp" (not a netdump message), "other"
    # For "netdump": the message; a DATA's without its payload (a dump's pcap is as big as the
    # dump), whose size is payload_bytes
    message: Optional[protocol.Message] = None
    problem: Optional[str] = None  # why a datagram on the netdump port is no message
    payload_bytes: int = 0  # the message's payload bytes


def frames(run_dir: Path) -> list[Frame]:
    """Every frame of link.pcap, in the order the link saw them."""
    import dpkt

    path = Path(run_dir) / PCAP_FILE
    if not path.is_file():
        raise DumpbedError(f"{path}: no such file (the link's frames of a network dump)")
    with open(path, "rb") as f:
        try:
            return list(_read(dpkt, dpkt.pcap.Reader(f)))
        except (ValueError, dpkt.dpkt.Error) as exc:
            raise DumpbedError(f"{path}: not a readable pcap file ({exc})") from None


def _read(dpkt, reader) -> Iterator[Frame]:
    for stamp, raw in reader:
        t = float(stamp)  # a nanosecond pcap gives Decimals
        eth = dpkt.ethernet.Ethernet(raw)
        from_guest = eth.src != _SERVER_MAC  # every frame the link builds is from the server's MAC
        if isinstance(eth.data, dpkt.arp.ARP):
            yield Frame(t, from_guest, len(raw), "arp")
            continue
        ip = eth.data
        if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP):
            yield Frame(t, from_guest, len(raw), "other")
            continue
        udp = ip.data
        if protocol.SERVER_PORT not in (udp.sport, udp.dport):
            yield Frame(t, from_guest, len(raw), "udp")
            continue
        try:
            m = protocol.decode(bytes(udp.data))
        except protocol.MalformedMessage as exc:
            yield Frame(t, from_guest, len(raw), "netdump", None, str(exc))
            continue
        size = len(m.payload)
        if m.type is protocol.MsgType.DATA:
            m = dataclasses.replace(m, payload=b"")
        yield Frame(t, from_guest, len(raw), "netdump", m, payload_bytes=size)


def server_events(run_dir: Path) -> list[dict]:
    """The dump server's events (netdumpd.jsonl), in the order it wrote them; [] without the file."""
    path = Path(run_dir) / SERVER_EVENTS_FILE
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            raise DumpbedError(f"{path}: line {n} is not JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("t"), (int, float)):
            raise DumpbedError(f"{path}: line {n} has no time")
        out.append(event)
    return out
