"""The harness's Ethernet link (harness/dumpbed/net/link.py) without QEMU: a fake guest on QEMU's
end of the socketpair sends frames built with dpkt, a fake dump server on 127.0.0.1 answers with
protocol.encode; every frame the guest gets is checked with dpkt."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import dpkt
import pytest

from dumpbed.errors import DumpbedError
from dumpbed.net import link as link_mod
from dumpbed.net import protocol
from dumpbed.net.link import BOTH, TO_GUEST, TO_SERVER, Faults, Link
from dumpbed.net.protocol import Message, MsgType

GUEST_MAC, GUEST_IP = link_mod.GUEST_MAC, link_mod.GUEST_IP  # 52:54:00:12:34:56, 10.0.2.15
SERVER_MAC, SERVER_IP = link_mod.SERVER_MAC, link_mod.SERVER_IP  # 52:54:00:db:00:02, 10.0.2.2
DUMP_ID = bytes(range(16))
BLOCK = 512


# -- frames, built and checked with dpkt ---------------------------------------------------------

def udp_frame(payload: bytes, *, dst_ip=SERVER_IP, dport=20023, ip_id=1, proto=17) -> bytes:
    udp = dpkt.udp.UDP(sport=20024, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    ip = dpkt.ip.IP(src=GUEST_IP, dst=dst_ip, p=proto, ttl=64, id=ip_id, data=udp)
    ip.len = 20 + udp.ulen
    frame = bytes(dpkt.ethernet.Ethernet(dst=SERVER_MAC, src=GUEST_MAC, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))
    assert udp_checksum_ok(frame)
    return frame


def arp_request(target=SERVER_IP) -> bytes:
    arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=GUEST_MAC, spa=GUEST_IP, tha=bytes(6), tpa=target)
    frame = bytes(dpkt.ethernet.Ethernet(dst=b"\xff" * 6, src=GUEST_MAC, type=dpkt.ethernet.ETH_TYPE_ARP, data=arp))
    return frame + bytes(60 - len(frame))


def message(mtype: MsgType, seq: int, offset: int = 0, payload: bytes = b"") -> bytes:
    return protocol.encode(Message(mtype, False, seq, DUMP_ID if mtype != MsgType.QUERY else bytes(16),
                                   offset, 0, payload))


def data(seq: int, blocks: int = 1) -> bytes:
    """DATA number `seq` (2, 3, ...): `blocks` blocks at offset (seq - 2) * blocks * 512."""
    body = bytes([seq & 0xFF]) * (blocks * BLOCK)
    return message(MsgType.DATA, seq, (seq - 2) * blocks * BLOCK, body)


def ip_checksum_ok(frame: bytes) -> bool:
    ip = dpkt.ethernet.Ethernet(frame).data
    return dpkt.dpkt.in_cksum(frame[14:14 + ip.hl * 4]) == 0


def udp_checksum_ok(frame: bytes) -> bool:
    ip = dpkt.ethernet.Ethernet(frame).data
    seg = frame[14 + ip.hl * 4:14 + ip.len]
    pseudo = bytes(ip.src) + bytes(ip.dst) + b"\x00\x11" + len(seg).to_bytes(2, "big")
    return ip.data.sum != 0 and dpkt.dpkt.in_cksum(pseudo + seg) == 0


def udp_payload(frame: bytes) -> bytes:
    ip = dpkt.ethernet.Ethernet(frame).data
    return bytes(ip.data.data)[:ip.data.ulen - 8]


def until(predicate, timeout=5.0, what="a condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


# -- the fake guest and server ------------------------------------------------------------------

class Guest:
    """QEMU's side: a dup of the link's QEMU end (as QEMU holds it), the link's copy closed."""

    def __init__(self, link: Link):
        self.sock = socket.socket(fileno=os.dup(link.qemu_fd))
        link.close_qemu_end()

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def recv(self, timeout: float = 2.0):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return None

    def recv_all(self, quiet: float = 0.3) -> list[bytes]:
        frames = []
        while (f := self.recv(quiet)) is not None:
            frames.append(f)
        return frames

    def close(self):
        self.sock.close()


class Server:
    """A dump server that records every datagram and acknowledges every message."""

    def __init__(self, answer: bool = True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # never lose one to a slow test
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()
        self.answer = answer
        self.got: list[tuple[float, bytes, tuple]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._closed:
            try:
                d, addr = self.sock.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            self.got.append((time.monotonic(), d, addr))
            if not self.answer:
                continue
            try:
                m = protocol.decode(d)
            except protocol.MalformedMessage:
                continue  # dropped unanswered, as the server does
            if m.type in (MsgType.QUERY, MsgType.HERALD):
                reply = protocol.room_ack(m, 1 << 30, BLOCK, 8704, 32)
            else:
                reply = protocol.ack(m)
            self.sock.sendto(protocol.encode(reply), addr)

    def messages(self) -> list[Message]:
        return [protocol.decode(d) for _, d, _ in self.got]

    def close(self):
        self._closed = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def make_link(tmp_path, server):
    """make_link(**kwargs) -> (link started, guest); both stopped at the end."""
    made = []

    def make(**kwargs):
        link = Link(server.address, tmp_path / f"link{len(made)}", **kwargs)
        guest = Guest(link)
        link.start()
        made.append((link, guest))
        return link, guest

    yield make
    for link, guest in made:
        link.stop()
        guest.close()


def acks_of(frames):
    return [protocol.decode(udp_payload(f)) for f in frames if dpkt.ethernet.Ethernet(f).type == 0x0800]


# -- ARP, forwarding, checksums -------------------------------------------------------------------

def test_arp_request_for_the_server_is_answered_with_its_mac(make_link):
    link, guest = make_link()
    guest.send(arp_request(bytes([10, 0, 2, 99])))  # not the server: ignored
    guest.send(arp_request())
    reply = guest.recv()
    assert len(reply) == 60
    eth = dpkt.ethernet.Ethernet(reply)
    assert (eth.dst, eth.src, eth.type) == (GUEST_MAC, SERVER_MAC, dpkt.ethernet.ETH_TYPE_ARP)
    arp = eth.data
    assert arp.op == dpkt.arp.ARP_OP_REPLY
    assert (arp.sha, arp.spa, arp.tha, arp.tpa) == (SERVER_MAC, SERVER_IP, GUEST_MAC, GUEST_IP)
    assert guest.recv(0.2) is None
    c = link.stop()
    assert c["arp_answered"] == 1
    assert c[TO_SERVER]["other_kinds"] == {"arp-not-for-server": 1}


def test_datagrams_are_forwarded_both_ways_with_correct_checksums(make_link, server):
    link, guest = make_link()
    sent = [message(MsgType.QUERY, 0), message(MsgType.HERALD, 1, payload=protocol.HERALD.pack(512, 8704, 32))]
    sent += [data(seq, blocks=17) for seq in range(2, 12)]
    sent += [message(MsgType.FLUSH, 12), message(MsgType.FINISH, 13)]
    for i, m in enumerate(sent):
        guest.send(udp_frame(m, ip_id=i))
        frame = guest.recv()  # one at a time: the guest waits for each ACK
        assert frame is not None, f"no ACK for message {i}"
        eth = dpkt.ethernet.Ethernet(frame)
        assert (eth.dst, eth.src, eth.type) == (GUEST_MAC, SERVER_MAC, 0x0800)
        ip = eth.data
        assert (ip.src, ip.dst, ip.ttl, ip.p, ip.mf, ip.offset) == (SERVER_IP, GUEST_IP, 64, 17, 0, 0)
        assert ip.id == i + 1  # incrementing
        assert (ip.data.sport, ip.data.dport) == (20023, 20024)
        assert ip_checksum_ok(frame) and udp_checksum_ok(frame)
        ack = protocol.decode(udp_payload(frame))
        assert ack.ack and ack.seq == protocol.decode(m).seq and ack.type == protocol.decode(m).type
    assert [d for _, d, _ in server.got] == sent  # byte for byte, in order
    assert {addr for _, _, addr in server.got} == {link.local_address}
    assert link.local_address[0] == "127.0.0.1"
    c = link.stop()
    assert c[TO_SERVER]["frames_in"] == c[TO_SERVER]["frames_out"] == len(sent)
    assert c[TO_GUEST]["frames_in"] == c[TO_GUEST]["frames_out"] == len(sent)
    assert c[TO_SERVER]["messages"] == {"QUERY": 1, "HERALD": 1, "DATA": 10, "FLUSH": 1, "FINISH": 1}
    assert c[TO_GUEST]["messages"] == {"QUERY-ACK": 1, "HERALD-ACK": 1, "DATA-ACK": 10, "FLUSH-ACK": 1,
                                       "FINISH-ACK": 1}
    assert c["guest"] == {"mac": "52:54:00:12:34:56", "ip": "10.0.2.15", "port": 20024}


def test_short_acks_are_padded_to_the_minimum_frame(make_link, server):
    link, guest = make_link()
    guest.send(udp_frame(data(2)))
    frame = guest.recv()
    assert len(frame) == 14 + 20 + 8 + 48 and udp_checksum_ok(frame)  # 90 > 60: no padding needed
    # A reply shorter than 60 bytes in all (the server's own business, but the link pads it):
    link._lock.acquire()
    try:
        short = link._udp_frame(b"hi")
    finally:
        link._lock.release()
    assert len(short) == 60 and udp_checksum_ok(short) and udp_payload(short) == b"hi"


def test_bad_checksums_and_other_frames_are_dropped_and_counted(make_link, server):
    link, guest = make_link()
    good = udp_frame(data(2))
    bad_ip = bytearray(good)
    bad_ip[24] ^= 0x01  # the IPv4 header checksum
    bad_udp = bytearray(good)
    bad_udp[-1] ^= 0x80  # a payload bit
    no_udp_sum = bytearray(good)
    no_udp_sum[40:42] = b"\0\0"
    for f in (bad_ip, bad_udp, no_udp_sum):
        guest.send(bytes(f))
    guest.send(udp_frame(data(3), dport=9999))
    guest.send(udp_frame(data(4), dst_ip=bytes([10, 0, 2, 3])))
    ipv6 = bytearray(good)
    ipv6[12:14] = b"\x86\xdd"
    guest.send(bytes(ipv6))
    guest.send(b"\x01" * 10)
    guest.send(udp_frame(data(5)))  # the one good frame
    until(lambda: len(server.got) == 1, what="the good frame")
    assert guest.recv() is not None
    assert guest.recv(0.2) is None
    assert server.messages()[0].seq == 5
    c = link.stop()
    assert c[TO_SERVER]["bad_ip_checksum"] == 1
    assert c[TO_SERVER]["bad_udp_checksum"] == 2
    assert c[TO_SERVER]["other_kinds"] == {"udp-port-9999": 1, "not-to-server-ip": 1, "ethertype-0x86dd": 1,
                                           "runt": 1}
    assert c[TO_SERVER]["frames_in"] == 8 and c[TO_SERVER]["frames_out"] == 1


def test_replies_from_another_address_are_ignored(make_link, server):
    link, guest = make_link()
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind(("127.0.0.1", 0))
    intruder.sendto(protocol.encode(protocol.ack(protocol.decode(data(2)))), link.local_address)
    intruder.close()
    until(lambda: link.counters()["foreign_datagrams"] == 1, what="the foreign datagram")
    assert guest.recv(0.2) is None


def test_repeated_messages_go_through_and_are_counted_by_type(make_link, server):
    link, guest = make_link()
    for seq in (2, 3, 3, 4, 3):
        guest.send(udp_frame(data(seq)))
    until(lambda: len(server.got) == 5, what="five datagrams")
    assert [m.seq for m in server.messages()] == [2, 3, 3, 4, 3]  # a retransmission is the guest's business
    assert len(guest.recv_all()) == 5
    c = link.stop()
    assert c[TO_SERVER]["messages"] == {"DATA": 5} and c[TO_GUEST]["messages"] == {"DATA-ACK": 5}


def test_a_datagram_to_the_server_port_that_is_no_message_is_counted_malformed(make_link, server):
    link, guest = make_link()
    guest.send(udp_frame(b"not a netdump message" * 3))
    until(lambda: len(server.got) == 1, what="the datagram")  # forwarded: the server drops it
    c = link.counters()
    assert c[TO_SERVER]["messages"] == {"malformed": 1}


def test_peek_reads_the_header_as_decode_does_without_the_crc():
    for m in (Message(MsgType.DATA, False, 7, DUMP_ID, 4096, 0, bytes(1024)),
              Message(MsgType.FINISH, True, 9, DUMP_ID, 0, 28),
              Message(MsgType.QUERY, False, 0, bytes(16))):
        raw = protocol.encode(m)
        assert protocol.peek(raw) == (m.type, m.ack, m.seq, m.offset, len(m.payload), m.dump_id)
        assert protocol.peek(memoryview(raw)).name == m.name
        bad_crc = bytearray(raw)
        bad_crc[-1 if m.payload else 47] ^= 1
        assert protocol.peek(bytes(bad_crc)) == protocol.peek(raw)  # the CRC32C is decode's to check
    good = protocol.encode(Message(MsgType.DATA, False, 7, DUMP_ID, 0, 0, bytes(512)))
    for damaged in (good[:47], good[:-1], b"XXXX" + good[4:], good[:4] + b"\x02" + good[5:],
                    good[:5] + b"\x09" + good[6:], good[:7] + b"\x28" + good[8:]):
        assert protocol.peek(damaged) is None


# -- faults ---------------------------------------------------------------------------------------

def send_paced(guest, frames, every=50, pause=0.002):
    """Send frames, pausing now and then so that no socket buffer overflows."""
    for i, f in enumerate(frames):
        guest.send(f)
        if i % every == every - 1:
            time.sleep(pause)


def delivered_seqs(tmp_path, server, seed, n=2000, p=0.3):
    link = Link(server.address, tmp_path / f"drop-{seed}-{len(server.got)}", to_server=Faults(drop=p), seed=seed)
    guest = Guest(link)
    before = len(server.got)
    with link:
        send_paced(guest, [udp_frame(data(seq)) for seq in range(2, 2 + n)])
        until(lambda: link.counters()[TO_SERVER]["frames_in"] == n, what="every frame taken")
        until(lambda: len(server.got) - before == link.counters()[TO_SERVER]["frames_out"], what="the server")
    guest.close()
    return [protocol.decode(d).seq for _, d, _ in server.got[before:]], link.counters()


def test_drop_rate_is_about_p_and_reproducible_with_a_seed(tmp_path, server):
    n = 2000
    first, c = delivered_seqs(tmp_path, server, seed=7, n=n)
    assert c[TO_SERVER]["dropped"] + c[TO_SERVER]["frames_out"] == n
    assert 0.25 < c[TO_SERVER]["dropped"] / n < 0.35  # 0.3, sd ~0.01
    assert first == sorted(first)
    again, _ = delivered_seqs(tmp_path, server, seed=7, n=n)
    assert again == first  # the same seed: the same frames lost
    other, _ = delivered_seqs(tmp_path, server, seed=8, n=n)
    assert other != first


def test_drop_towards_the_guest(make_link, server):
    link, guest = make_link(to_guest=Faults(drop=0.5), seed=3)
    n = 400
    send_paced(guest, [udp_frame(data(seq)) for seq in range(2, 2 + n)])
    until(lambda: len(server.got) == n, what="every DATA at the server")
    got = guest.recv_all()
    c = link.stop()
    assert len(got) == c[TO_GUEST]["frames_out"] == n - c[TO_GUEST]["dropped"]
    assert 0.4 < c[TO_GUEST]["dropped"] / n < 0.6
    assert c[TO_SERVER]["dropped"] == 0


def test_duplicate(make_link, server):
    link, guest = make_link(to_server=Faults(duplicate=1.0), to_guest=Faults(duplicate=0.5), seed=1)
    n = 200
    send_paced(guest, [udp_frame(data(seq)) for seq in range(2, 2 + n)])
    until(lambda: len(server.got) == 2 * n, what="every DATA twice")
    seqs = [m.seq for m in server.messages()]
    assert seqs == [s for seq in range(2, 2 + n) for s in (seq, seq)]
    got = guest.recv_all()
    c = link.stop()
    assert c[TO_SERVER]["duplicated"] == n
    assert len(got) == 2 * n + c[TO_GUEST]["duplicated"]
    assert 0.35 < c[TO_GUEST]["duplicated"] / (2 * n) < 0.65
    assert c[TO_GUEST]["frames_in"] == 2 * n  # the server acknowledged every DATA twice


def test_reorder_swaps_a_frame_with_the_next_one(make_link, server):
    link, guest = make_link(to_server=Faults(reorder=1.0, reorder_timeout_ms=2000))
    for seq in range(2, 10):
        guest.send(udp_frame(data(seq)))
    until(lambda: len(server.got) == 8, what="eight DATA")
    assert [m.seq for m in server.messages()] == [3, 2, 5, 4, 7, 6, 9, 8]
    assert link.counters()[TO_SERVER]["reordered"] == 4


def test_a_held_frame_is_released_by_the_timeout(make_link, server):
    link, guest = make_link(to_server=Faults(reorder=1.0, reorder_timeout_ms=80))
    t0 = time.monotonic()
    guest.send(udp_frame(data(2)))
    until(lambda: len(server.got) == 1, what="the held frame")
    assert server.got[0][0] - t0 >= 0.07
    c = link.counters()[TO_SERVER]
    assert (c["reorder_timeouts"], c["reordered"]) == (1, 0)


def test_reorder_rate_towards_the_guest(make_link, server):
    link, guest = make_link(to_guest=Faults(reorder=0.3, reorder_timeout_ms=20), seed=5)
    n = 300
    send_paced(guest, [udp_frame(data(seq)) for seq in range(2, 2 + n)])
    until(lambda: link.counters()[TO_GUEST]["frames_out"] == n, what="every ACK")
    seqs = [a.seq for a in acks_of(guest.recv_all())]
    assert sorted(seqs) == list(range(2, 2 + n))
    assert seqs != sorted(seqs)
    c = link.counters()[TO_GUEST]
    assert c["reordered"] + c["reorder_timeouts"] > 0.15 * n


def test_corrupt_towards_the_server_never_delivers_a_bad_frame(make_link, server):
    link, guest = make_link(to_server=Faults(corrupt=0.5), seed=11)
    n = 400
    sent = [data(seq, blocks=4) for seq in range(2, 2 + n)]
    send_paced(guest, [udp_frame(m) for m in sent])
    until(lambda: link.counters()[TO_SERVER]["frames_in"] == n, what="every frame taken")
    c = link.counters()[TO_SERVER]
    until(lambda: len(server.got) == n - c["corrupted"], what="the uncorrupted frames")
    assert 0.4 < c["corrupted"] / n < 0.6
    assert c["bad_udp_checksum"] == c["corrupted"]  # each caught by the link's own check
    got = [d for _, d, _ in server.got]
    assert all(d in sent for d in got)  # byte for byte what the guest sent: nothing corrupted got through
    for d in got:
        protocol.decode(d)  # its CRC32C holds


def test_corrupt_towards_the_guest_delivers_bad_udp_checksums(make_link, server):
    link, guest = make_link(to_guest=Faults(corrupt=1.0), seed=2)
    for seq in range(2, 22):
        guest.send(udp_frame(data(seq)))
    until(lambda: link.counters()[TO_GUEST]["frames_out"] == 20, what="twenty ACKs")
    frames = guest.recv_all()
    assert len(frames) == 20
    for f in frames:
        assert ip_checksum_ok(f)  # the header stays good: the frame reaches the guest's UDP check
        assert not udp_checksum_ok(f)
        with pytest.raises(protocol.MalformedMessage):
            protocol.decode(udp_payload(f))
    c = link.stop()
    assert c[TO_GUEST]["corrupted"] == 20
    pcap = read_pcap(link.pcap_path)
    to_guest = [f for _, f in pcap if dpkt.ethernet.Ethernet(f).src == SERVER_MAC]
    assert to_guest == frames  # the pcap holds them as delivered, corrupted


def test_delay_is_measured_and_keeps_the_order(make_link, server):
    link, guest = make_link(to_server=Faults(delay_ms=100, jitter_ms=40), seed=4)
    sent_at = {}
    for seq in range(2, 32):
        sent_at[seq] = time.monotonic()
        guest.send(udp_frame(data(seq)))
        time.sleep(0.003)
    until(lambda: len(server.got) == 30, what="thirty DATA")
    seqs = [m.seq for m in server.messages()]
    assert seqs == list(range(2, 32))  # jitter never reorders
    delays = [t - sent_at[protocol.decode(d).seq] for t, d, _ in server.got]
    print(f"\ndelay 100 ms + jitter 40 ms: measured {min(delays) * 1000:.1f}..{max(delays) * 1000:.1f} ms")
    assert min(delays) >= 0.099
    assert max(delays) < 0.5
    assert link.counters()[TO_SERVER]["delayed"] == 30


def test_faults_for_both_directions_at_construction(make_link, server):
    link, guest = make_link(to_server=Faults(drop=1.0), to_guest=Faults(delay_ms=1))
    faults = link.counters()["faults"]
    assert faults[TO_SERVER] == Faults(drop=1.0).as_dict() and faults[TO_GUEST] == Faults(delay_ms=1).as_dict()


def test_faults_change_while_running(make_link, server):
    link, guest = make_link()
    guest.send(udp_frame(data(2)))
    assert guest.recv() is not None
    link.set_faults(Faults(drop=1.0), TO_SERVER, why="the crash")
    faults = link.counters()["faults"]
    assert faults[TO_SERVER]["drop"] == 1.0 and faults[TO_GUEST]["drop"] == 0.0
    guest.send(udp_frame(data(3)))
    assert guest.recv(0.3) is None
    link.set_faults(Faults(), BOTH)
    guest.send(udp_frame(data(4)))
    assert protocol.decode(udp_payload(guest.recv())).seq == 4
    # From another thread while frames flow:
    stop = threading.Event()

    def flip():
        while not stop.is_set():
            link.set_faults(Faults(duplicate=1.0), TO_GUEST)
            link.set_faults(Faults(), TO_GUEST)

    t = threading.Thread(target=flip)
    t.start()
    send_paced(guest, [udp_frame(data(seq)) for seq in range(5, 105)])
    until(lambda: len(server.got) == 102, what="every DATA")
    stop.set()
    t.join()
    c = link.stop()
    assert c["error_count"] == 0
    assert [h["why"] for h in c["fault_history"][:4]] == ["at construction", "at construction", "the crash", ""]
    with pytest.raises(DumpbedError):
        Faults(drop=1.5)
    with pytest.raises(DumpbedError):
        link.set_faults(Faults(), "sideways")


# -- the partition and the hooks ------------------------------------------------------------------

def test_partition_at_an_offset_stops_everything_after_it(make_link, server):
    blocks = 17  # 8704 bytes a DATA
    at = 5 * blocks * BLOCK + 100  # inside DATA number 5 (seq 7)
    link, guest = make_link()
    link.partition_at(at)
    fired = []
    link.on_offset(3 * blocks * BLOCK, lambda m: fired.append((m.seq, len(server.got), threading.current_thread().name)))
    for seq in range(2, 12):
        guest.send(udp_frame(data(seq, blocks)))
        time.sleep(0.01)
    until(lambda: link.partitioned, 2, what="the partition")
    time.sleep(0.1)
    assert [m.seq for m in server.messages()] == [2, 3, 4, 5, 6]  # seq 7 reaches `at`: stopped with it
    assert len(guest.recv_all()) == 5
    assert fired == [(5, 3, "dumpbed-link")]  # called before its DATA went on
    guest.send(arp_request())  # nothing passes, ARP neither
    assert guest.recv(0.3) is None
    c = link.stop()
    assert c["partition"]["t"] is not None and "seq 7" in c["partition"]["why"]
    assert c["partition"]["seconds"] > 0.3
    assert c[TO_SERVER]["partitioned"] == 6  # seq 7..11 and the ARP request
    assert c[TO_SERVER]["messages"]["DATA"] == 10  # all taken from the guest (and in the pcap)
    assert c["hooks"][0]["seq"] == 5 and c["hooks"][0]["offset"] == 3 * blocks * BLOCK


def test_cut_stops_both_directions_at_once(make_link, server):
    link, guest = make_link(to_server=Faults(delay_ms=300))
    guest.send(udp_frame(data(2)))
    until(lambda: link.counters()[TO_SERVER]["frames_in"] == 1, what="the frame taken")
    link.cut()  # with the frame still delayed in the link
    assert link.partitioned
    # The server speaks on its own: nothing reaches the guest.
    server.sock.sendto(protocol.encode(protocol.ack(protocol.decode(data(9)))), link.local_address)
    time.sleep(0.5)
    assert server.got == []
    assert guest.recv(0.1) is None
    c = link.stop()
    assert c[TO_SERVER]["partitioned"] == 1 and c[TO_GUEST]["partitioned"] == 1
    assert c["partition"]["why"] == "cut"


def test_a_failing_hook_is_counted_and_the_link_goes_on(make_link, server):
    link, guest = make_link()

    def boom(m):
        raise RuntimeError("the hook failed")

    link.on_offset(0, boom)
    guest.send(udp_frame(data(2)))
    guest.send(udp_frame(data(3)))
    until(lambda: len(server.got) == 2, what="both DATA")
    c = link.stop()
    assert c["error_count"] == 1 and "the hook failed" in c["errors"][0]
    assert c["hooks"][0]["error"] == "RuntimeError('the hook failed')"


# -- evidence and lifecycle -----------------------------------------------------------------------

def read_pcap(path):
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        return list(reader)


def test_pcap_holds_the_guests_frames_before_faults_and_the_guests_after(make_link, server):
    t0 = time.time()
    link, guest = make_link(to_server=Faults(drop=1.0))
    sent = [arp_request(), udp_frame(data(2)), udp_frame(data(3))]
    for f in sent:
        guest.send(f)
    reply = guest.recv()
    until(lambda: link.counters()[TO_SERVER]["dropped"] == 2, what="both DATA dropped")
    link.set_faults(Faults())
    guest.send(udp_frame(data(4)))
    ack = guest.recv()
    c = link.stop()
    pcap = read_pcap(link.pcap_path)
    frames = [f for _, f in pcap]
    assert frames == [sent[0], reply, sent[1], sent[2], udp_frame(data(4)), ack]
    times = [t for t, _ in pcap]
    assert t0 <= times[0] and times == sorted(times) and times[-1] <= time.time()
    assert len(pcap) == c[TO_SERVER]["frames_in"] + c[TO_GUEST]["frames_out"]


def test_link_json_has_the_counters(make_link, server):
    link, guest = make_link(to_guest=Faults(delay_ms=5), seed=9)
    guest.send(arp_request())
    guest.recv()
    guest.send(udp_frame(data(2)))
    guest.recv()
    link.stop()
    c = json.loads(link.json_path.read_text())
    assert c["seed"] == 9 and c["server"] == "{}:{}".format(*server.address)
    assert c[TO_SERVER]["frames_in"] == 2 and c[TO_GUEST]["frames_out"] == 2
    for d in (TO_SERVER, TO_GUEST):
        assert set(link_mod._Dir.COUNTERS) <= set(c[d])
    assert c[TO_GUEST]["delayed"] == 1
    assert c["arp_answered"] == 1
    assert c["faults"][TO_GUEST]["delay_ms"] == 5
    assert c["partition"] == {"armed_at_offset": None, "t": None, "why": None, "seconds": 0.0}
    assert c["started"] <= c["stopped"]
    assert c["errors"] == []


def fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_stop_leaves_no_thread_and_no_socket(tmp_path, server):
    before_fds, before_threads = fds(), set(threading.enumerate())
    with Link(server.address, tmp_path / "l", to_server=Faults(delay_ms=50, reorder=0.5)) as link:
        guest = Guest(link)
        assert any(t.name == "dumpbed-link" for t in threading.enumerate())
        for seq in range(2, 12):
            guest.send(udp_frame(data(seq)))
        until(lambda: link.counters()[TO_SERVER]["frames_in"] == 10, what="the frames taken")
    final = link.stop()  # idempotent: what the first stop() wrote
    assert final == json.loads(link.json_path.read_text()) == link.counters()
    assert final[TO_SERVER]["frames_in"] == 10 and final["error_count"] == 0
    guest.close()
    assert set(threading.enumerate()) == before_threads
    assert fds() == before_fds
    # Stopped without ever being started, and a link never given to a guest:
    other = Link(server.address, tmp_path / "unused")
    other.stop()
    assert fds() == before_fds
    assert not (tmp_path / "unused" / "link.json").exists()
    with pytest.raises(DumpbedError):
        other.start()


def test_qemu_fd_is_gone_once_closed(tmp_path, server):
    link = Link(server.address, tmp_path / "l")
    try:
        assert link.qemu_fd >= 0
        link.close_qemu_end()
        with pytest.raises(DumpbedError):
            link.qemu_fd
    finally:
        link.stop()


# -- throughput -----------------------------------------------------------------------------------

PEERS = textwrap.dedent("""
    # The guest and the server, in a process of their own (as QEMU and netdumpd are): the guest
    # keeps WINDOW DATA of 8704 bytes in flight, the server acknowledges each.
    import json, selectors, socket, sys, time
    sys.path.insert(0, sys.argv[5])
    from test_link import udp_frame, data
    from dumpbed.net import protocol
    eth = socket.socket(fileno=int(sys.argv[1]))
    srv = socket.socket(fileno=int(sys.argv[2]))
    n, window = int(sys.argv[3]), int(sys.argv[4])
    frames = [udp_frame(data(seq, 17)) for seq in range(2, 2 + n)]
    eth.setblocking(False); srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(eth, selectors.EVENT_READ, "eth"); sel.register(srv, selectors.EVENT_READ, "srv")
    sent = acked = 0
    t0, cpu0 = time.monotonic(), time.process_time()
    while acked < n and time.monotonic() - t0 < 60:
        while sent < n and sent - acked < window:
            eth.send(frames[sent]); sent += 1
        for key, _ in sel.select(1.0):
            while True:
                try:
                    if key.data == "srv":
                        d, addr = srv.recvfrom(65536)
                        srv.sendto(protocol.encode(protocol.ack(protocol.decode(d))), addr)
                    else:
                        eth.recv(65536); acked += 1
                except BlockingIOError:
                    break
    print(json.dumps({"seconds": time.monotonic() - t0, "acked": acked, "peer_cpu": time.process_time() - cpu0}))
""")


MIN_FRAMES_PER_SECOND = 500  # far below what the link does (~20k a second): a link gone wrong, not a slow host


@pytest.mark.parametrize("window", [32])
def test_throughput(tmp_path, window):
    """The link forwards a 64 MiB dump's DATA (8000 x 8704 bytes) and their ACKs, with the guest
    and the server in another process: every DATA acknowledged, at a generous minimum rate."""
    n = 8000
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    link = Link(srv.getsockname(), tmp_path / "bench")
    peers = None
    try:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        peers = subprocess.Popen(
            [sys.executable, "-c", PEERS, str(link.qemu_fd), str(srv.fileno()), str(n), str(window),
             os.path.dirname(__file__)],
            pass_fds=(link.qemu_fd, srv.fileno()), stdout=subprocess.PIPE, env=env)
        link.close_qemu_end()
        srv.close()
        with link:
            out, _ = peers.communicate(timeout=120)
    finally:
        if peers is not None and peers.poll() is None:
            peers.kill()
            peers.wait()
        link.stop()
        srv.close()
    result = json.loads(out)
    c = link.counters()
    assert result["acked"] == n
    assert c[TO_SERVER]["frames_in"] == c[TO_SERVER]["frames_out"] == n
    assert c[TO_GUEST]["frames_in"] == c[TO_GUEST]["frames_out"] == n
    assert c[TO_SERVER]["messages"] == {"DATA": n} and c[TO_GUEST]["messages"] == {"DATA-ACK": n}
    rate = 2 * n / result["seconds"]
    assert rate > MIN_FRAMES_PER_SECOND, f"{rate:.0f} frames/s through the link"
