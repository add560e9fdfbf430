"""The network dump's link oracles (dumpbed.oracles.netlink) on synthetic frames: a correct
exchange passes, and each way a guest can break the protocol fails the check that owns it."""
from __future__ import annotations

import dataclasses

import pytest

from dumpbed.net import protocol as p
from dumpbed.net.evidence import Frame
from dumpbed.oracles import netlink

ID = bytes(range(16))
OTHER = bytes(16)
ROOM = (1 << 20, 512, 8704, 4)  # partition, block, max_data, window
T = p.MsgType


class Wire:
    """Frames in order with increasing times; sizes as the guest pads them; a DATA's payload
    not kept, as net/evidence.py reads them."""

    def __init__(self):
        self.frames: list[Frame] = []
        self.t = 100.0

    def _add(self, from_guest: bool, m: p.Message, length: int = 0) -> None:
        self.t += 0.001
        size = length or max(60, -(-(p.FRAME_OVERHEAD + p.HEADER_BYTES + len(m.payload)) // 60) * 60)
        kept = dataclasses.replace(m, payload=b"") if m.type is T.DATA else m
        self.frames.append(Frame(self.t, from_guest, size, "netdump", kept, payload_bytes=len(m.payload)))

    def send(self, kind: T, seq: int, offset: int = 0, payload: bytes = b"", length: int = 0, dump_id=ID):
        self._add(True, p.Message(kind, False, seq, dump_id, offset, 0, payload), length)

    def ack(self, kind: T, seq: int, status: int = 0, room=None, dump_id=ID):
        payload = p.ROOM.pack(*room) if room else b""
        self._add(False, p.Message(kind, True, seq, dump_id, 0, status, payload))

    def good_dump(self, writes: int = 6) -> "Wire":
        self.send(T.HERALD, 1, payload=p.HERALD.pack(512, 8704, 32))
        self.ack(T.HERALD, 1, room=ROOM)
        seq = 2
        for n in range(writes):
            self.send(T.DATA, seq, offset=n * 1024, payload=bytes(1024))
            self.ack(T.DATA, seq)
            seq += 1
        self.send(T.FLUSH, seq)
        self.ack(T.FLUSH, seq)
        self.send(T.FINISH, seq + 1)
        self.ack(T.FINISH, seq + 1)
        return self


def acks(wire: Wire, done_at=None, complete=True, duplicates=0):
    return netlink.check_acks(wire.frames, 99.0, ID, done_at if done_at is not None else wire.t + 1, complete,
                              duplicates)


def test_a_correct_exchange_passes_both():
    wire = Wire().good_dump()
    assert netlink.check_frames(wire.frames, 99.0, ID).ok
    check = acks(wire)
    assert check.ok, check.detail
    assert "0 retransmissions" in check.detail


def test_retransmissions_are_counted_not_blamed():
    wire = Wire()
    wire.send(T.HERALD, 1, payload=p.HERALD.pack(512, 8704, 32))
    wire.ack(T.HERALD, 1, room=ROOM)
    wire.send(T.DATA, 2, 0, bytes(512))
    wire.send(T.DATA, 2, 0, bytes(512))  # its ACK was lost: sent again
    wire.ack(T.DATA, 2)
    wire.send(T.FINISH, 3)
    wire.ack(T.FINISH, 3)
    check = acks(wire)
    assert check.ok and "1 retransmissions by the guest" in check.detail
    assert "3 messages of this dump, 3 acknowledged" in check.detail


def test_more_in_flight_than_the_window_fails():
    wire = Wire()
    wire.send(T.HERALD, 1, payload=p.HERALD.pack(512, 8704, 32))
    wire.ack(T.HERALD, 1, room=ROOM)
    for seq in range(2, 8):  # window 4: the fifth unacknowledged message is one too many
        wire.send(T.DATA, seq, (seq - 2) * 512, bytes(512))
    check = acks(wire, complete=False)
    assert not check.ok and "DATA seq 6 sent" in check.detail and "the window is 4" in check.detail


def test_a_flush_before_the_acks_of_its_writes_fails():
    wire = Wire()
    wire.send(T.HERALD, 1, payload=p.HERALD.pack(512, 8704, 32))
    wire.ack(T.HERALD, 1, room=ROOM)
    wire.send(T.DATA, 2, 0, bytes(512))
    wire.send(T.FLUSH, 3)
    wire.ack(T.DATA, 2)
    wire.ack(T.FLUSH, 3)
    check = acks(wire, complete=False)
    assert not check.ok and "FLUSH seq 3 sent" in check.detail and "seq 2" in check.detail


def test_done_complete_without_an_acknowledged_finish_fails():
    wire = Wire().good_dump()
    del wire.frames[-1]  # the FINISH's ACK never reached the guest
    check = acks(wire)
    assert not check.ok and "no FINISH of this dump was acknowledged" in check.detail
    wire = Wire().good_dump()
    check = acks(wire, done_at=wire.frames[-1].t - 0.0005)  # DONE before the ACK arrived
    assert not check.ok and "before its FINISH was acknowledged" in check.detail


def test_another_dumps_messages_are_not_this_ones():
    wire = Wire().good_dump()
    wire.send(T.DATA, 99, 0, bytes(512), dump_id=OTHER)  # never acknowledged, another dump: ignored
    assert acks(wire).ok


@pytest.mark.parametrize("length, problem", [
    (61, "a frame of 61 bytes"), (59, "a frame of 59 bytes"), (9015, "a frame of 9015 bytes"),
    (9000, None), (9014, None)])
def test_frame_sizes_follow_dumpquery(length, problem):
    wire = Wire().good_dump()
    wire.send(T.DATA, 40, 0, bytes(512), length=length)
    check = netlink.check_frames(wire.frames, 99.0, ID)
    assert check.ok == (problem is None), check.detail
    if problem:
        assert problem in check.detail


@pytest.mark.parametrize("offset, size, problem", [
    (100, 512, "not whole 512-byte blocks"), (0, 700, "not whole 512-byte blocks"),
    (0, 9216, "the dump's max_data is 8704"), ((1 << 20) - 512, 1024, "past the partition")])
def test_data_must_fit_the_dump(offset, size, problem):
    wire = Wire().good_dump()
    wire.send(T.DATA, 40, offset, bytes(size))
    check = netlink.check_frames(wire.frames, 99.0, ID)
    assert not check.ok and any(problem in x for x in check.problems), check.problems


def test_stray_frames_and_garbage_datagrams_fail():
    wire = Wire().good_dump()
    wire.frames.append(Frame(wire.t + 0.1, True, 120, "udp"))
    wire.frames.append(Frame(wire.t + 0.2, True, 120, "netdump", None, "crc32c 0x1, the message's is 0x2"))
    check = netlink.check_frames(wire.frames, 99.0, ID)
    assert not check.ok
    assert any("neither ARP nor a netdump message" in x for x in check.problems)
    assert any("no netdump message: crc32c" in x for x in check.problems)


def test_frames_before_the_crash_are_not_the_dumps():
    wire = Wire()
    wire.send(T.QUERY, 0, length=61, dump_id=bytes(16))  # a bad size, but at boot
    for f in wire.frames:
        object.__setattr__(f, "t", 50.0)
    wire.good_dump()
    assert netlink.check_frames(wire.frames, 99.0, ID).ok


def test_messages_given_up_after_the_io_timeout_leave_the_window():
    """After ETIMEDOUT the guest forgets what it had in flight (the link was cut): its next
    messages (the FAILED headers) are no window overrun once the I/O timeout has passed, and
    are one before it."""
    def run(gap: float):
        wire = Wire()
        wire.send(T.HERALD, 1, payload=p.HERALD.pack(512, 8704, 32))
        wire.ack(T.HERALD, 1, room=ROOM)
        for seq in range(2, 6):  # the window (4), never acknowledged
            wire.send(T.DATA, seq, (seq - 2) * 512, bytes(512))
        wire.t += gap
        wire.send(T.DATA, 6, 0, bytes(512))
        return netlink.check_acks(wire.frames, 99.0, ID, None, False, 0, io_timeout=2.0)
    assert run(2.5).ok and "4 messages given up" in run(2.5).detail
    assert not run(1.0).ok


def test_without_a_herald_ack_at_the_guest_data_and_messages_fail():
    """The HERALD's ACK never reached the guest (lost, or it was another dump's): the DATA it sent
    anyway cannot be judged against a room it never got, and fails both checks."""
    for herald_ack_id in (None, OTHER):
        wire = Wire()
        wire.send(T.HERALD, 1, payload=p.HERALD.pack(512, 8704, 32))
        if herald_ack_id is not None:
            wire.ack(T.HERALD, 1, room=ROOM, dump_id=herald_ack_id)
        wire.send(T.DATA, 2, 0, bytes(512))
        wire.ack(T.DATA, 2)
        check = netlink.check_frames(wire.frames, 99.0, ID)
        assert check.problems == ["DATA messages were sent, but no HERALD of this dump was acknowledged to the guest"]
        assert not check.ok
        check = acks(wire, complete=False)
        assert check.problems == ["messages of this dump were sent, but no HERALD ACK reached the guest"]
        assert not check.ok


def test_no_herald_ack_and_nothing_sent_is_no_problem():
    wire = Wire()
    wire.send(T.QUERY, 0, dump_id=bytes(16))  # a QUERY at boot, answered
    wire.ack(T.QUERY, 0, room=ROOM, dump_id=bytes(16))
    assert netlink.check_frames(wire.frames, 99.0, ID).ok
    assert acks(wire, complete=False).ok
