"""What a network dump left outside the guest (docs/netdump-protocol.md, sections 7 and 8): the
frames on the link (link.pcap, as they crossed the guest's side) and the dump server's events
(netdumpd.jsonl), read into plain records for the oracles and the command log."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import dpkt

from dumpbed.errors import DumpbedError
from dumpbed.net import protocol
from dumpbed.scenario.disks import GUEST_MAC

PCAP_FILE = "link.pcap"
LINK_STATS_FILE = "link.json"
SERVER_LOG_FILE = "netdumpd.jsonl"
_GUEST_MAC = bytes.fromhex(GUEST_MAC.replace(":", ""))


@dataclass(frozen=True)
class Frame:
    """One frame on the link's guest side."""
    t: float  # host time (time.time())
    from_guest: bool  # the guest sent it (else the link gave it to the guest)
    length: int  # the whole Ethernet frame, no FCS
    kind: str  # "arp", "netdump", "udp" (not a netdump message), "other"
    message: Optional[protocol.Message] = None  # for "netdump"
    problem: Optional[str] = None  # why a datagram on the netdump port is no message


def frames(run_dir: Path) -> list[Frame]:
    """Every frame of link.pcap, in the order the link saw them."""
    path = Path(run_dir) / PCAP_FILE
    if not path.is_file():
        raise DumpbedError(f"{path}: no such file (the link's frames of a network dump)")
    with open(path, "rb") as f:
        try:
            return list(_read(dpkt.pcap.Reader(f)))
        except (ValueError, dpkt.dpkt.Error) as exc:
            raise DumpbedError(f"{path}: not a readable pcap file ({exc})") from None


def _read(reader) -> Iterator[Frame]:
    for stamp, raw in reader:
        t = float(stamp)  # a nanosecond pcap gives Decimals
        eth = dpkt.ethernet.Ethernet(raw)
        from_guest = eth.src == _GUEST_MAC
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
            yield Frame(t, from_guest, len(raw), "netdump", protocol.decode(bytes(udp.data)))
        except protocol.MalformedMessage as exc:
            yield Frame(t, from_guest, len(raw), "netdump", None, str(exc))


def server_events(run_dir: Path) -> list[dict]:
    """The dump server's events (netdumpd.jsonl), in the order it wrote them; [] without the file."""
    path = Path(run_dir) / SERVER_LOG_FILE
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


def link_stats(run_dir: Path) -> dict:
    path = Path(run_dir) / LINK_STATS_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        raise DumpbedError(f"{path}: not valid JSON") from None
