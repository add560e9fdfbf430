"""The oracles of a network dump's link (docs/netdump-protocol.md, section 9), from the frames
the link saw on the guest's side (link.pcap): evidence from outside the guest.

- write-sizes, for a network dump: every frame the guest sent after the crash is DUMPQUERY's
  max_tsize or a multiple of min_tsize within [min_tsize, max_tsize], and is an ARP frame or a
  netdump message to the server; every DATA is whole blocks at a block-aligned offset, at most
  the dump's max_data, inside the partition.
- acks: the guest never had more than the window's messages unacknowledged (ACKs counted as the
  link delivered them to it), sent FLUSH and FINISH only with everything before acknowledged,
  and said DONE complete only after its FINISH was acknowledged; its retransmissions and the
  server's duplicates counted.
"""
from __future__ import annotations

from typing import Optional

from dumpbed.net import protocol
from dumpbed.net.evidence import Frame
from dumpbed.oracles.base import Check, make_check

MIN_TSIZE = protocol.ETHER_MIN_FRAME
MAX_TSIZE = 14 + protocol.LINK_MTU
T = protocol.MsgType


def _after(frames: list[Frame], crashed: Optional[float]) -> list[Frame]:
    return [f for f in frames if crashed is None or f.t >= crashed]


def _dump_room(frames: list[Frame], dump_id: bytes) -> Optional[tuple[int, int, int, int]]:
    """(partition_bytes, block_size, max_data, window) of the dump's HERALD ACK, as delivered."""
    for f in frames:
        m = f.message
        if not f.from_guest and m is not None and m.ack and m.type is T.HERALD and m.dump_id == dump_id:
            try:
                return m.room()
            except protocol.MalformedMessage:
                return None
    return None


def check_frames(frames: list[Frame], crashed: Optional[float], dump_id: bytes) -> Check:
    mine = [f for f in _after(frames, crashed) if f.from_guest]
    room = _dump_room(frames, dump_id)
    problems: list[str] = []
    t0 = crashed or (mine[0].t if mine else 0.0)

    def at(f: Frame) -> str:
        return f"+{(f.t - t0) * 1000:.2f} ms"

    data = 0
    for f in mine:
        if not MIN_TSIZE <= f.length <= MAX_TSIZE or (f.length != MAX_TSIZE and f.length % MIN_TSIZE):
            problems.append(f"a frame of {f.length} bytes at {at(f)}: DUMPQUERY allows {MAX_TSIZE} or a multiple of "
                            f"{MIN_TSIZE} from {MIN_TSIZE} to {MAX_TSIZE}")
        if f.kind not in ("arp", "netdump"):
            problems.append(f"a frame of {f.length} bytes at {at(f)} is neither ARP nor a netdump message ({f.kind})")
        elif f.kind == "netdump" and f.message is None:
            problems.append(f"a datagram to the dump server at {at(f)} is no netdump message: {f.problem}")
        m = f.message
        if m is None or m.type is not T.DATA or m.ack:
            continue
        data += 1
        if room is None:
            continue
        partition, block, max_data, _ = room
        size = f.payload_bytes
        if m.offset % block or size % block or size == 0:
            problems.append(f"DATA seq {m.seq} at {at(f)}: {size} bytes at partition offset 0x{m.offset:x}, not whole "
                            f"{block}-byte blocks")
        if size > max_data:
            problems.append(f"DATA seq {m.seq} at {at(f)}: {size} bytes, the dump's max_data is {max_data}")
        if m.offset + size > partition:
            problems.append(f"DATA seq {m.seq} at {at(f)}: ends at 0x{m.offset + size:x}, past the partition's "
                            f"{partition} bytes")
    if room is None and data:
        problems.append("DATA messages were sent, but no HERALD of this dump was acknowledged to the guest")
    return make_check("write-sizes", problems,
                      f"{len(mine)} frames from the guest after the crash ({data} DATA), each {MAX_TSIZE} bytes or a "
                      f"multiple of {MIN_TSIZE}; every DATA whole blocks inside the partition, at most max_data")


# A message unacknowledged for longer than the guest's I/O timeout fails the exchange with
# ETIMEDOUT and leaves the window (docs/netdump-protocol.md, section 6): the guest's clock and the
# host's differ a little (TCG's virtual TSC), so the host gives it up a little earlier.
GIVE_UP_SLACK = 0.8


def check_acks(frames: list[Frame], crashed: Optional[float], dump_id: bytes, done_time: Optional[float],
               done_complete: bool, server_duplicates: int, io_timeout: Optional[float] = None) -> Check:
    """`io_timeout`: the guest's iotimeout in seconds (None: messages never given up)."""
    after = _after(frames, crashed)
    room = _dump_room(after, dump_id)
    window = room[3] if room else None
    unacked: dict[tuple[int, int], float] = {}  # (type, seq) -> first sent
    acked: set[int] = set()
    sent: set[tuple[int, int]] = set()
    retransmitted = 0
    given_up = 0
    finish_acked: Optional[float] = None
    problems: list[str] = []
    t0 = crashed or (after[0].t if after else 0.0)
    for f in after:
        m = f.message
        if m is None or m.dump_id != dump_id:
            continue
        key = (int(m.type), m.seq)
        if not f.from_guest:
            if m.ack:
                acked.add(m.seq)
                unacked.pop(key, None)
                if m.type is T.FINISH and m.status == 0 and finish_acked is None:
                    finish_acked = f.t
            continue
        if m.ack:
            continue
        if key in sent:
            retransmitted += 1
            continue
        sent.add(key)
        if io_timeout is not None:  # given up after ETIMEDOUT: out of the window
            for old in [k for k, first in unacked.items() if f.t - first > io_timeout * GIVE_UP_SLACK]:
                del unacked[old]
                given_up += 1
        when = f"+{(f.t - t0) * 1000:.2f} ms"
        if window is not None and len(unacked) >= window:
            problems.append(f"{m.type.name} seq {m.seq} sent at {when} with {len(unacked)} messages unacknowledged, "
                            f"the window is {window}")
        if m.type in (T.FLUSH, T.FINISH):
            early = sorted(s for (_, s) in unacked if s < m.seq)
            if early:
                problems.append(f"{m.type.name} seq {m.seq} sent at {when} before the acknowledgment of seq "
                                f"{', '.join(map(str, early[:5]))}{' ...' if len(early) > 5 else ''}")
        unacked[key] = f.t
    if done_complete:
        if finish_acked is None:
            problems.append("the guest said DONE complete, but no FINISH of this dump was acknowledged to it")
        elif done_time is not None and done_time < finish_acked:
            problems.append(f"the guest said DONE complete {(finish_acked - done_time) * 1000:.2f} ms before its "
                            "FINISH was acknowledged to it")
    if room is None and sent:
        problems.append("messages of this dump were sent, but no HERALD ACK reached the guest")
    return make_check("acks", problems,
                      f"{len(sent)} messages of this dump, {len(acked)} acknowledged to the guest, never more than the "
                      f"window ({window}) in flight; FLUSH and FINISH only after everything before; "
                      f"{retransmitted} retransmissions by the guest, {server_duplicates} duplicates at the server"
                      + (f"; {given_up} messages given up after the I/O timeout" if given_up else ""))
