"""What a network dump leaves outside the guest, read back (harness/dumpbed/net/evidence.py and
capture/netlog.py): link.pcap as the real link writes it, the dump server's netdumpd.jsonl, and
the server's events as the command log's commands."""
from __future__ import annotations

import json
import os
import socket

import dpkt
import pytest

from dumpbed.capture import netlog
from dumpbed.errors import DumpbedError
from dumpbed.images import layout as layout_mod
from dumpbed.net import evidence
from dumpbed.net import link as link_mod
from dumpbed.net import protocol
from dumpbed.net.link import TO_GUEST, Faults, Link
from dumpbed.net.protocol import Message, MsgType
from dumpbed.units import MiB

DUMP_ID = bytes(range(16))
# Not the contract's guest MAC: the direction comes from the server's MAC, never from the guest's
GUEST_MAC = bytes.fromhex("020000000001")
GUEST_IP = link_mod.GUEST_IP
ROOM = (1 << 20, 512, 8704, 32)


def guest_frame(payload: bytes, dport: int = protocol.SERVER_PORT) -> bytes:
    udp = dpkt.udp.UDP(sport=protocol.GUEST_PORT, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    ip = dpkt.ip.IP(src=GUEST_IP, dst=link_mod.SERVER_IP, p=17, ttl=64, id=1, data=udp)
    ip.len = 20 + udp.ulen
    return bytes(dpkt.ethernet.Ethernet(dst=link_mod.SERVER_MAC, src=GUEST_MAC, type=dpkt.ethernet.ETH_TYPE_IP,
                                        data=ip))


def arp_request() -> bytes:
    arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=GUEST_MAC, spa=GUEST_IP, tha=bytes(6), tpa=link_mod.SERVER_IP)
    frame = bytes(dpkt.ethernet.Ethernet(dst=b"\xff" * 6, src=GUEST_MAC, type=dpkt.ethernet.ETH_TYPE_ARP, data=arp))
    return frame + bytes(60 - len(frame))


@pytest.fixture
def link_run(tmp_path):
    """A run directory whose link.pcap the real link wrote: ARP, a HERALD and a DATA answered, a
    UDP datagram to another port, then a DATA whose ACK the link corrupted on its way to the
    guest. Returns (run directory, the frames the guest sent and got, in order)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    link = Link(server.getsockname(), tmp_path)
    guest = socket.socket(fileno=os.dup(link.qemu_fd))
    guest.settimeout(5)
    link.close_qemu_end()
    wire = []

    def exchange(frame: bytes, reply=None) -> None:
        guest.send(frame)
        wire.append(frame)
        if reply is not None:
            datagram, addr = server.recvfrom(65536)
            server.sendto(protocol.encode(reply(protocol.decode(datagram))), addr)
        if reply is not None or frame[12:14] == b"\x08\x06":
            wire.append(guest.recv(65536))

    try:
        with link:
            exchange(arp_request())
            exchange(guest_frame(protocol.encode(Message(MsgType.HERALD, False, 1, DUMP_ID,
                                                         payload=protocol.HERALD.pack(512, 8704, 32)))),
                     lambda m: protocol.room_ack(m, *ROOM))
            exchange(guest_frame(protocol.encode(Message(MsgType.DATA, False, 2, DUMP_ID, 8192, 0, bytes(4096)))),
                     protocol.ack)
            exchange(guest_frame(b"not for the dump server", dport=9999))
            link.set_faults(Faults(corrupt=1.0), TO_GUEST)
            exchange(guest_frame(protocol.encode(Message(MsgType.DATA, False, 3, DUMP_ID, 12288, 0, bytes(512)))),
                     protocol.ack)
    finally:
        guest.close()
        server.close()
    return tmp_path, wire


def test_frames_of_the_real_links_pcap(link_run):
    run, wire = link_run
    frames = evidence.frames(run)
    assert [(f.kind, f.from_guest) for f in frames] == [
        ("arp", True), ("arp", False),
        ("netdump", True), ("netdump", False),  # HERALD, its ACK
        ("netdump", True), ("netdump", False),  # DATA, its ACK
        ("udp", True),
        ("netdump", True), ("netdump", False)]  # DATA, its corrupted ACK
    assert [f.length for f in frames] == [len(w) for w in wire]
    assert frames == sorted(frames, key=lambda f: f.t)
    herald_ack = frames[3].message
    assert herald_ack.name == "HERALD-ACK" and herald_ack.room() == ROOM  # a small payload is kept
    data = frames[4]
    assert data.message.name == "DATA" and (data.message.seq, data.message.offset) == (2, 8192)
    assert data.message.payload == b"" and data.payload_bytes == 4096  # a DATA's payload is not kept
    assert frames[5].message.name == "DATA-ACK" and frames[5].payload_bytes == 0
    assert frames[6].message is None and frames[6].problem is None
    corrupted = frames[8]
    assert corrupted.message is None and corrupted.problem  # the guest must drop it: no message
    assert frames[7].message.seq == 3 and frames[7].payload_bytes == 512


def test_frames_needs_a_readable_pcap(tmp_path):
    with pytest.raises(DumpbedError, match="no such file"):
        evidence.frames(tmp_path)
    (tmp_path / evidence.PCAP_FILE).write_bytes(b"not a pcap at all, not even its magic")
    with pytest.raises(DumpbedError, match="not a readable pcap"):
        evidence.frames(tmp_path)


def write_events(run, events, extra_lines=()) -> None:
    lines = [json.dumps(e) for e in events] + list(extra_lines)
    (run / evidence.SERVER_EVENTS_FILE).write_text("\n".join(lines) + "\n")


def event(t, name, type_, seq, offset=0, size=0, status=0, received=None):
    return {"t": t, "event": name, "client": "127.0.0.1:40000", "seq": seq, "offset": offset, "bytes": size,
            "received": t - 0.001 if received is None else received, "status": status, "type": type_,
            "dump_id": DUMP_ID.hex()}


def test_server_events(tmp_path):
    assert evidence.server_events(tmp_path) == []  # no dump server, no events
    events = [event(10.0, "herald", "HERALD", 1), event(10.1, "write", "DATA", 2, 0, 4096)]
    write_events(tmp_path, events, ["", "   "])  # blank lines are no events
    assert evidence.server_events(tmp_path) == events
    write_events(tmp_path, events, ['{"event": "write", "t": 10.2'])  # a line cut short
    with pytest.raises(DumpbedError, match="line 3 is not JSON"):
        evidence.server_events(tmp_path)
    write_events(tmp_path, events, ['{"event": "write"}'])
    with pytest.raises(DumpbedError, match="line 3 has no time"):
        evidence.server_events(tmp_path)
    write_events(tmp_path, events, ["[1, 2]"])
    with pytest.raises(DumpbedError, match="line 3 has no time"):
        evidence.server_events(tmp_path)


def test_server_events_as_commands_at_disk_offsets(tmp_path):
    layout = layout_mod.DiskLayout.for_dump(4 * MiB, canary_seed=3)
    layout_mod.save(layout, tmp_path / "layout.json")
    write_events(tmp_path, [
        event(10.00, "query", "QUERY", 0),
        event(10.01, "herald", "HERALD", 1),
        event(10.03, "write", "DATA", 3, 4096, 512, received=10.025),
        event(10.02, "write", "DATA", 2, 0, 4096, received=10.015),  # taken first: listed first
        event(10.04, "duplicate", "DATA", 2, 0, 4096),  # answered again, not done again
        event(10.05, "refused", "DATA", 4, 1 << 40, 512, status=28),
        event(10.06, "refused", "FLUSH", 5, status=5),  # a refused FLUSH did nothing
        event(10.07, "flush", "FLUSH", 6),
        event(10.08, "ignored", "DATA", 9, 0, 512),
        event(10.09, "finish", "FINISH", 7),
    ])
    commands = netlog.commands(tmp_path, first_seq=100)
    got = [(c.kind, c.opcode, c.offset, c.length, c.status) for c in commands]
    base = layout.dump_offset
    assert got == [("write", "DATA", base, 4096, 0), ("write", "DATA", base + 4096, 512, 0),
                   ("write", "DATA", base + (1 << 40), 512, 28), ("flush", "FLUSH", None, 0, 0),
                   ("flush", "FINISH", None, 0, 0)]
    assert {c.disk for c in commands} == {netlog.DISK}
    assert sorted(c.seq for c in commands) == list(range(100, 105))
    assert (commands[0].issued, commands[0].completed) == (10.015, 10.02)
    assert all(c.issued <= c.completed for c in commands)
    assert netlog.commands(tmp_path / "nothing-here") == []  # no server, no commands (and no layout read)
