"""The netdump messages (docs/netdump-protocol.md, section 5): encode and decode, nothing else;
and the harness link's addresses (section 4), defined here once.

One message is one UDP datagram: a 48-byte big-endian header, then the payload. decode() refuses
anything the page says a receiver drops (bad magic, version, header size, length, CRC32C) with
MalformedMessage, so a caller never acts on half a message. peek() reads the header only (no
CRC32C, no copy): for a counter or a trigger, never to act on the data.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple, Optional

import google_crc32c

MAGIC = 0x44424E44  # "DBND"
VERSION = 1
HEADER = struct.Struct(">IBBHIIQ16sII")  # magic version type header_bytes seq payload offset dump_id status crc
HEADER_BYTES = HEADER.size  # 48
ACK_FLAG = 0x80

# The harness's link (docs/netdump-protocol.md, section 4)
SERVER_MAC = "52:54:00:db:00:02"  # answered by the link's ARP
SERVER_IP = "10.0.2.2"
SERVER_PORT = 20023
GUEST_MAC = "52:54:00:12:34:56"  # set on the QEMU device
GUEST_IP = "10.0.2.15"
GUEST_PORT = 20024
LINK_MTU = 9000
# QUERY and HERALD ACK payload: partition_bytes, block_size, max_data, window
ROOM = struct.Struct(">QIII")
# HERALD payload: block_size, max_data, window
HERALD = struct.Struct(">III")
NO_DUMP_ID = bytes(16)
# Ethernet (14) + IPv4 (20) + UDP (8) before a message
FRAME_OVERHEAD = 14 + 20 + 8
ETHER_MIN_FRAME = 60


class MsgType(enum.IntEnum):
    QUERY = 1
    HERALD = 2
    DATA = 3
    FLUSH = 4
    FINISH = 5


class MalformedMessage(ValueError):
    """A datagram that is no netdump message: dropped unanswered."""


@dataclass(frozen=True)
class Message:
    type: MsgType
    ack: bool  # an acknowledgment of a message of `type`
    seq: int
    dump_id: bytes
    offset: int = 0
    status: int = 0
    payload: bytes = b""

    @property
    def name(self) -> str:
        return f"{self.type.name}{'-ACK' if self.ack else ''}"

    def room(self) -> tuple[int, int, int, int]:
        """(partition_bytes, block_size, max_data, window) of a QUERY or HERALD ACK."""
        if not (self.ack and self.type in (MsgType.QUERY, MsgType.HERALD)) or len(self.payload) != ROOM.size:
            raise MalformedMessage(f"{self.name}: no room fields")
        return ROOM.unpack(self.payload)

    def herald(self) -> tuple[int, int, int]:
        """(block_size, max_data, window) of a HERALD."""
        if self.ack or self.type is not MsgType.HERALD or len(self.payload) != HERALD.size:
            raise MalformedMessage(f"{self.name}: no herald fields")
        return HERALD.unpack(self.payload)


def crc(header_without_crc: bytes, payload: bytes) -> int:
    return google_crc32c.extend(google_crc32c.value(header_without_crc), payload)


def encode(m: Message) -> bytes:
    if len(m.dump_id) != 16:
        raise ValueError("dump_id is 16 bytes")
    kind = int(m.type) | (ACK_FLAG if m.ack else 0)
    head = HEADER.pack(MAGIC, VERSION, kind, HEADER_BYTES, m.seq, len(m.payload), m.offset, m.dump_id, m.status, 0)
    head = head[:-4] + struct.pack(">I", crc(head, m.payload))
    return head + m.payload


def decode(data: bytes) -> Message:
    if len(data) < HEADER_BYTES:
        raise MalformedMessage(f"{len(data)} bytes: shorter than a header")
    magic, version, kind, header_bytes, seq, payload_bytes, offset, dump_id, status, got = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MalformedMessage(f"magic 0x{magic:08x}")
    if version != VERSION:
        raise MalformedMessage(f"version {version}")
    if header_bytes != HEADER_BYTES:
        raise MalformedMessage(f"header_bytes {header_bytes}")
    if payload_bytes != len(data) - HEADER_BYTES:
        raise MalformedMessage(f"payload_bytes {payload_bytes}, the datagram has {len(data) - HEADER_BYTES}")
    try:
        mtype = MsgType(kind & ~ACK_FLAG)
    except ValueError:
        raise MalformedMessage(f"type 0x{kind:02x}") from None
    payload = bytes(data[HEADER_BYTES:])
    want = crc(bytes(data[:HEADER_BYTES - 4]) + b"\0\0\0\0", payload)
    if got != want:
        raise MalformedMessage(f"crc32c 0x{got:08x}, the message's is 0x{want:08x}")
    return Message(mtype, bool(kind & ACK_FLAG), seq, dump_id, offset, status, payload)


class Peek(NamedTuple):
    """A message's header fields, as peek() reads them."""
    type: MsgType
    ack: bool
    seq: int
    offset: int
    payload_bytes: int
    dump_id: bytes

    @property
    def name(self) -> str:
        return f"{self.type.name}{'-ACK' if self.ack else ''}"


def peek(data) -> Optional[Peek]:
    """The header of a datagram whose magic, version, header size, type and length are a
    message's, its CRC32C unchecked and its payload not copied; None for anything else."""
    if len(data) < HEADER_BYTES:
        return None
    magic, version, kind, header_bytes, seq, payload_bytes, offset, dump_id, _, _ = HEADER.unpack_from(data)
    if (magic != MAGIC or version != VERSION or header_bytes != HEADER_BYTES
            or payload_bytes != len(data) - HEADER_BYTES):
        return None
    try:
        mtype = MsgType(kind & ~ACK_FLAG)
    except ValueError:
        return None
    return Peek(mtype, bool(kind & ACK_FLAG), seq, offset, payload_bytes, dump_id)


def ack(of: Message, status: int = 0, payload: bytes = b"") -> Message:
    return Message(of.type, True, of.seq, of.dump_id, 0, status, payload)


def room_ack(of: Message, partition_bytes: int, block_size: int, max_data: int, window: int) -> Message:
    return ack(of, 0, ROOM.pack(partition_bytes, block_size, max_data, window))


def max_data_for(mtu: int, block_size: int) -> int:
    """The most data bytes a DATA carries at this MTU: whole blocks after the IPv4, UDP and
    message headers (8704 at MTU 9000 with 512-byte blocks; 1024 at 1500)."""
    room = mtu - 20 - 8 - HEADER_BYTES
    return max(0, room // block_size * block_size)
