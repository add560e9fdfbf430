"""The harness's Ethernet link between QEMU's NIC and the dump server (docs/netdump-protocol.md,
section 8), where the network faults happen.

QEMU's NIC sits on `-netdev dgram,local.type=fd` over one end of an AF_UNIX SOCK_DGRAM
socketpair: each datagram is one Ethernet frame. The link owns the other end and, in a thread
of its own (so the harness's main thread keeps doing its waits):

- answers ARP requests for the server's IP (10.0.2.2) with the server's MAC, and learns the
  guest's MAC, IP and port from what it sends (the addresses: net/protocol.py);
- forwards the guest's IPv4/UDP datagrams to 10.0.2.2:20023 (good IPv4 header and UDP checksums
  only) as UDP datagrams from a socket of its own (127.0.0.1, an ephemeral port) to the real dump
  server, and turns the server's answers into Ethernet/IPv4/UDP frames to the guest (checksums
  computed, IP id incrementing, TTL 64, padded to 60 bytes);
- drops and counts every other frame;
- applies the faults of each direction (`Faults`): drop, duplicate, reorder, corrupt, delay with
  jitter, and a partition from a moment on (`cut()`, or the first guest DATA reaching an offset),
  after which nothing passes either way; and calls hooks when a guest DATA reaches an offset;
- writes link.pcap (every frame taken from the guest, as the guest sent it, before faults;
  every frame given to the guest, as delivered, after faults; host time, nanoseconds) and
  link.json (its counters) when it stops. The retransmissions and duplicates are not its to
  count: the acks oracle counts the guest's from link.pcap, the server logs its own.

The pipeline of one frame, per direction:

  guest -> server: taken (pcap) -> parse, checksums checked (bad: dropped) -> message header
      read (protocol.peek: counted by type; the offset hooks and the partition trigger) ->
      partition? -> drop -> corrupt (a random bit of the UDP payload flipped: the UDP checksum
      always catches one bit, so a corrupted frame is counted as a bad checksum and dropped
      here, never delivered) -> duplicate -> reorder -> delay -> sent to the server
  server -> guest: received from the server's address -> message header read (counted) ->
      frame built (checksums) -> partition? -> drop -> corrupt (a bit of the UDP payload flipped
      after the checksums: the guest must drop it) -> duplicate -> reorder -> delay -> given to
      the guest (pcap)

The random faults act on the netdump datagrams only; ARP is answered faithfully (the guest's ARP
tries are few: a lost reply fails its boot, not its dump). The partition stops ARP too.

Random decisions come from one seeded RNG per direction, so the same frames in the same order
meet the same fate. Checksums: numpy sums large buffers (a DATA frame's 8.7 KiB in ~3 us), Python
integers small ones. The hot path parses the fixed Ethernet/IPv4/UDP headers with struct at known
offsets and builds the guest-bound UDP frames the same way; dpkt parses and builds ARP (and the
tests check every frame with dpkt).
"""
from __future__ import annotations

import collections
import json
import os
import random
import selectors
import socket
import struct
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import dpkt
import numpy as np

from dumpbed.errors import DumpbedError
from dumpbed.net import protocol
from dumpbed.net.evidence import LINK_JSON_FILE, PCAP_FILE
from dumpbed.net.protocol import GUEST_PORT, LINK_MTU, SERVER_PORT

# docs/netdump-protocol.md, section 4, as bytes on the wire
SERVER_MAC = bytes.fromhex(protocol.SERVER_MAC.replace(":", ""))
SERVER_IP = socket.inet_aton(protocol.SERVER_IP)
GUEST_MAC = bytes.fromhex(protocol.GUEST_MAC.replace(":", ""))  # until learned
GUEST_IP = socket.inet_aton(protocol.GUEST_IP)

TO_SERVER = "to-server"  # guest -> server
TO_GUEST = "to-guest"  # server -> guest
BOTH = "both"
DIRECTIONS = (TO_SERVER, TO_GUEST)

ETH_IP = 0x0800
ETH_ARP = 0x0806
ETH_HEADER = 14
MIN_FRAME = protocol.ETHER_MIN_FRAME  # 60
MAX_FRAME = 65536
SOCKET_BUFFER = 4 << 20
READ_BATCH = 64  # datagrams read from one socket before the other gets a turn
BACKLOG_FRAMES = 1024  # frames kept for a full socket (the guest not reading) before dropping
IDLE_TICK = 0.5  # the loop's longest sleep with no timer due

_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_U16 = struct.Struct("!H")
_NUMPY_FROM = 256  # bytes: below this Python integers sum faster than a numpy call
_U32 = np.dtype("<u4")
_U64 = np.uint64


def _sum16(buf) -> int:
    """An integer congruent, modulo 0xFFFF, to the ones'-complement sum of `buf`'s big-endian
    16-bit words (a trailing odd byte padded with zero). Parts of even length at even offsets add
    up: sum(a + b) = sum(a) + sum(b) (mod 0xFFFF)."""
    n = len(buf)
    if n < _NUMPY_FROM:
        return int.from_bytes(buf, "big") << (8 if n & 1 else 0)
    whole = n & ~3
    # Little-endian 32-bit words: fold to a 16-bit little-endian sum, swap its bytes (RFC 1071's
    # byte-order independence).
    s = int(np.add.reduce(np.frombuffer(buf, dtype=_U32, count=whole >> 2), dtype=_U64))
    if whole != n:
        s += int.from_bytes(bytes(buf[whole:]) + bytes(4 - (n - whole)), "little")
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ((s & 0xFF) << 8) | (s >> 8)


def checksum(*parts) -> int:
    """The Internet checksum (RFC 1071) of the concatenated parts (each of even length but the
    last): 0xFFFF minus the ones'-complement sum."""
    total = sum(_sum16(p) for p in parts)
    if not total:
        return 0xFFFF  # all zeros: the sum is +0
    return 0xFFFF - (total % 0xFFFF or 0xFFFF)  # non-zero data sums to 1..0xFFFF (-0), never +0


def _pseudo(src: bytes, dst: bytes, udp_length: int) -> bytes:
    return src + dst + b"\x00\x11" + _U16.pack(udp_length)


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ip(b: bytes) -> str:
    return ".".join(str(x) for x in b)


@dataclass(frozen=True)
class Faults:
    """The faults of one direction. Probabilities are 0..1, per frame; `delay_ms` is added to
    every frame, plus a uniform [0, jitter_ms); frames stay in order through the delay. A frame
    held for reordering goes out right after the next frame of its direction, or after
    `reorder_timeout_ms` if none comes."""
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder_timeout_ms: float = 50.0

    def __post_init__(self):
        for name in ("drop", "duplicate", "reorder", "corrupt"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise DumpbedError(f"link fault {name}: probability {p} is not within 0..1")
        for name in ("delay_ms", "jitter_ms", "reorder_timeout_ms"):
            if getattr(self, name) < 0:
                raise DumpbedError(f"link fault {name}: {getattr(self, name)} is negative")
        if self.reorder and self.reorder_timeout_ms <= 0:
            raise DumpbedError("link fault reorder: reorder_timeout_ms must be positive")

    @property
    def active(self) -> bool:
        return any((self.drop, self.duplicate, self.reorder, self.corrupt, self.delay_ms, self.jitter_ms))

    def as_dict(self) -> dict:
        return asdict(self)


NO_FAULTS = Faults()


def _directions(direction: str) -> tuple[str, ...]:
    if direction == BOTH:
        return DIRECTIONS
    if direction not in DIRECTIONS:
        raise DumpbedError(f"link direction {direction!r}: expected {TO_SERVER}, {TO_GUEST} or {BOTH}")
    return (direction,)


class _Dir:
    """One direction's counters and fault state (touched under the link's lock only)."""
    COUNTERS = ("frames_in", "bytes_in", "frames_out", "bytes_out", "dropped", "duplicated", "reordered",
                "reorder_timeouts", "corrupted", "delayed", "partitioned", "bad_ip_checksum",
                "bad_udp_checksum", "other", "backlogged", "overrun", "send_errors", "receive_errors",
                "pending_at_stop")

    def __init__(self, name: str, seed: int, faults: Faults):
        self.name = name
        for c in self.COUNTERS:
            setattr(self, c, 0)
        self.other_kinds: collections.Counter = collections.Counter()
        self.messages: collections.Counter = collections.Counter()
        self.faults = faults
        self.rng = random.Random(f"dumpbed-link/{seed}/{name}")
        self.held = None  # (frame, release time) held for reordering
        self.delayed_q: collections.deque = collections.deque()  # (release time, frame), in order
        self.last_release = 0.0
        self.backlog: collections.deque = collections.deque()  # frames the socket did not take

    def drain(self) -> int:
        """Forget every frame held, delayed or backlogged; how many there were."""
        n = len(self.delayed_q) + len(self.backlog) + (self.held is not None)
        self.delayed_q.clear()
        self.backlog.clear()
        self.held = None
        return n

    def counters(self) -> dict:
        d = {c: getattr(self, c) for c in self.COUNTERS}
        d["other_kinds"] = dict(self.other_kinds)
        d["messages"] = dict(sorted(self.messages.items()))
        return d


Hook = Callable[[protocol.Peek], None]


class Link:
    """The link: `with Link(("127.0.0.1", port), run_dir) as link:` with QEMU's NIC on
    `link.qemu_fd` (images/topology.py's -netdev; pass_fds), then `link.close_qemu_end()`.

    server: the dump server's real UDP address. out_dir: where link.pcap and link.json go.
    to_server, to_guest: each direction's Faults from the start (changeable: set_faults). seed:
    the RNGs' seed.
    """

    def __init__(self, server: tuple[str, int], out_dir: Union[str, Path], *, to_server: Faults = NO_FAULTS,
                 to_guest: Faults = NO_FAULTS, seed: int = 0):
        for f in (to_server, to_guest):
            if not isinstance(f, Faults):
                raise TypeError("the link's faults are a Faults")
        self.out_dir = Path(out_dir)
        self.pcap_path = self.out_dir / PCAP_FILE
        self.json_path = self.out_dir / LINK_JSON_FILE
        self._server = (server[0], int(server[1]))
        self.seed = seed
        self._lock = threading.RLock()
        self._dirs = {TO_SERVER: _Dir(TO_SERVER, seed, to_server), TO_GUEST: _Dir(TO_GUEST, seed, to_guest)}
        self._fault_history = [{"t": time.time(), "direction": d, "faults": self._dirs[d].faults.as_dict(),
                                "why": "at construction"} for d in DIRECTIONS]
        self._partition_at: Optional[int] = None
        self._partition_t: Optional[float] = None
        self._partition_why: Optional[str] = None
        self._partition_event = threading.Event()
        self._hooks: list[dict] = []  # {"offset", "callback", "fired"}
        self._guest_mac, self._guest_ip, self._guest_port = GUEST_MAC, GUEST_IP, GUEST_PORT
        self._ip_id = 0
        self._arp_answered = 0
        self._foreign = 0  # datagrams on the link's UDP socket not from the server
        self._errors: list[str] = []
        self._error_count = 0
        self._started_t: Optional[float] = None
        self._stopped_t: Optional[float] = None
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._stopping = False
        self._stopped = False
        self._pcap_file = None
        self._pcap: Optional[dpkt.pcap.Writer] = None
        self._selector: Optional[selectors.BaseSelector] = None
        self._want_write = {TO_SERVER: False, TO_GUEST: False}
        # The sockets: the guest's Ethernet (ours and QEMU's end), the UDP one to the server, and
        # a socketpair to wake the thread.
        self._sockets: list[socket.socket] = []
        try:
            self._eth, self._qemu_end = self._keep(*socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM))
            for s in (self._eth, self._qemu_end):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            self._eth.setblocking(False)
            self._udp = self._keep(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))[0]
            self._udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            self._udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            self._udp.bind(("127.0.0.1", 0))
            self._udp.setblocking(False)
            self._wake_r, self._wake_w = self._keep(*socket.socketpair())
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
        except BaseException:
            self._close_sockets()
            raise

    def _keep(self, *socks: socket.socket) -> tuple[socket.socket, ...]:
        self._sockets.extend(socks)
        return socks

    # -- for the harness --------------------------------------------------------------------

    @property
    def qemu_fd(self) -> int:
        """QEMU's end of the Ethernet socketpair: give it to QEMU (pass_fds)."""
        if self._qemu_end is None:
            raise DumpbedError("the link's QEMU end is closed")
        return self._qemu_end.fileno()

    def close_qemu_end(self) -> None:
        """Close this process's copy of QEMU's end, once QEMU has it."""
        with self._lock:
            if self._qemu_end is not None:
                self._sockets.remove(self._qemu_end)
                self._qemu_end.close()
                self._qemu_end = None

    @property
    def local_address(self) -> tuple[str, int]:
        """The link's UDP address: the client address the server sees."""
        return self._udp.getsockname()

    def set_faults(self, faults: Faults = NO_FAULTS, direction: str = BOTH, why: str = "") -> None:
        """Each frame from now on meets these faults (frames already held or delayed keep
        theirs). Thread-safe."""
        if not isinstance(faults, Faults):
            raise TypeError("set_faults takes a Faults")
        with self._lock:
            for d in _directions(direction):
                self._dirs[d].faults = faults
                self._fault_history.append({"t": time.time(), "direction": d, "faults": faults.as_dict(),
                                            "why": why})

    def cut(self, why: str = "cut") -> None:
        """The partition, now: once this returns, no frame passes either way (frames held or
        delayed are dropped). Idempotent."""
        with self._lock:
            self._cut_locked(why)

    def partition_at(self, offset: Optional[int]) -> None:
        """Start the partition when the guest sends a DATA reaching this partition offset
        (offset + length > it); that DATA is the first frame it stops. None: disarm."""
        with self._lock:
            self._partition_at = offset

    def on_offset(self, offset: int, callback: Hook) -> None:
        """Call `callback(header)` (the DATA's protocol.Peek) once, in the link's thread, when the
        guest sends the first DATA reaching `offset` (offset + length > it), before that DATA goes
        on (so a callback that kills the server before returning keeps that DATA from it). Keep it
        short: the link waits for it. An exception in it is counted, not raised."""
        with self._lock:
            self._hooks.append({"offset": offset, "callback": callback, "fired": None})

    @property
    def partitioned(self) -> bool:
        return self._partition_event.is_set()

    def counters(self) -> dict:
        """A snapshot of everything link.json holds (once stopped: what it holds)."""
        with self._lock:
            if self._stopped:
                return json.loads(json.dumps(self._final))
            return self._counters_locked()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> "Link":
        if self._thread is not None:
            raise DumpbedError("the link was already started")
        if self._stopped:
            raise DumpbedError("the link was stopped")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._pcap_file = open(self.pcap_path, "wb", buffering=1 << 20)
        self._pcap = dpkt.pcap.Writer(self._pcap_file, snaplen=MAX_FRAME, nano=True)
        self._started_t = time.time()
        self._thread = threading.Thread(target=self._run, name="dumpbed-link", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or not self._thread.is_alive():
            errors = "; ".join(self._errors) or "no error recorded"
            self.stop(timeout)
            raise DumpbedError(f"the link's thread did not start within {timeout:g}s ({errors})")
        return self

    def stop(self, timeout: float = 5.0) -> dict:
        """Stop the thread (joined within `timeout`), close every socket and the pcap, write
        link.json; returns the counters. Idempotent."""
        if self._stopped:
            return self._final
        if threading.current_thread() is self._thread:
            raise DumpbedError("the link cannot be stopped from its own thread (a hook)")
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        stuck = False
        if self._thread is not None:
            self._thread.join(timeout)
            stuck = self._thread.is_alive()
        with self._lock:
            self._stopped = True
            self._stopped_t = time.time()
            for d in self._dirs.values():
                d.pending_at_stop = d.drain()
            if stuck:
                self._errors.append(f"the link's thread did not stop within {timeout:g}s")
            self._final = self._counters_locked()
            self._close_sockets()
            if self._pcap_file is not None:
                try:
                    self._pcap_file.close()
                except OSError as exc:
                    self._final["errors"].append(f"link.pcap: {exc}")
                self._pcap_file = None
                self._pcap = None
        if self._started_t is not None:
            tmp = self.json_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(self._final, indent=1) + "\n")
            os.replace(tmp, self.json_path)
        if stuck:
            raise DumpbedError(f"the link's thread did not stop within {timeout:g}s (a hook still running?)")
        return self._final

    def _close_sockets(self) -> None:
        if self._selector is not None:
            try:
                self._selector.close()
            except (OSError, RuntimeError):
                pass
            self._selector = None
        for s in self._sockets:
            s.close()
        self._sockets = []
        self._qemu_end = None

    def __enter__(self) -> "Link":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            sel = selectors.DefaultSelector()
            self._selector = sel
            sel.register(self._eth, selectors.EVENT_READ, TO_SERVER)  # what the guest sends
            sel.register(self._udp, selectors.EVENT_READ, TO_GUEST)  # what the server sends
            sel.register(self._wake_r, selectors.EVENT_READ, None)
        except Exception as exc:  # noqa: BLE001 - reported by start()
            self._errors.append(f"setup: {exc!r}")
            return
        self._ready.set()
        while not self._stopping:
            try:
                events = sel.select(self._next_timeout())
            except (OSError, ValueError) as exc:
                if self._stopping:
                    break
                self._error(exc)
                time.sleep(0.01)
                continue
            with self._lock:
                if self._stopping:
                    break
                for key, mask in events:
                    try:
                        if key.data is None:
                            self._drain_wake()
                            continue
                        if mask & selectors.EVENT_WRITE:
                            self._flush_backlog(self._dirs[TO_GUEST if key.data == TO_SERVER else TO_SERVER])
                        if mask & selectors.EVENT_READ:
                            if key.data == TO_SERVER:
                                self._read_guest()
                            else:
                                self._read_server()
                    except Exception as exc:  # noqa: BLE001 - the link must keep running
                        self._error(exc)
                try:
                    self._run_timers(time.monotonic())
                    self._update_interest()
                except Exception as exc:  # noqa: BLE001
                    self._error(exc)

    def _error(self, exc: BaseException) -> None:
        self._error_count += 1
        if len(self._errors) < 20:
            self._errors.append("".join(traceback.format_exception_only(type(exc), exc)).strip())

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except BlockingIOError:
            pass

    def _next_timeout(self) -> float:
        with self._lock:
            nxt = None
            for d in self._dirs.values():
                if d.delayed_q:
                    nxt = d.delayed_q[0][0] if nxt is None else min(nxt, d.delayed_q[0][0])
                if d.held is not None:
                    nxt = d.held[1] if nxt is None else min(nxt, d.held[1])
        if nxt is None:
            return IDLE_TICK
        return min(IDLE_TICK, max(0.0, nxt - time.monotonic()))

    def _update_interest(self) -> None:
        for d, sock, data in ((TO_GUEST, self._eth, TO_SERVER), (TO_SERVER, self._udp, TO_GUEST)):
            want = bool(self._dirs[d].backlog)
            if want != self._want_write[d]:
                self._want_write[d] = want
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
                self._selector.modify(sock, events, data)

    # -- guest -> server ----------------------------------------------------------------------

    def _read_guest(self) -> None:
        d = self._dirs[TO_SERVER]
        pcap = self._pcap
        for _ in range(READ_BATCH):
            try:
                frame = self._eth.recv(MAX_FRAME)
            except BlockingIOError:
                return
            except OSError as exc:
                d.receive_errors += 1
                self._error(exc)
                return
            t = time.time()
            d.frames_in += 1
            d.bytes_in += len(frame)
            pcap.writepkt_time(frame, t)
            try:
                self._from_guest(d, frame)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the link
                self._error(exc)

    def _other(self, d: _Dir, kind: str) -> None:
        d.other += 1
        d.other_kinds[kind] += 1

    def _from_guest(self, d: _Dir, frame: bytes) -> None:
        n = len(frame)
        if n < ETH_HEADER:
            return self._other(d, "runt")
        etype = (frame[12] << 8) | frame[13]
        if etype == ETH_ARP:
            return self._arp(d, frame)
        if etype != ETH_IP:
            return self._other(d, f"ethertype-0x{etype:04x}")
        parsed = self._parse_udp(d, frame)
        if parsed is None:
            return
        payload_at, payload_end = parsed
        self._guest_mac = frame[6:12]
        self._guest_ip = frame[26:30]
        self._guest_port = (frame[payload_at - 8] << 8) | frame[payload_at - 7]
        self._note_guest_message(d, memoryview(frame)[payload_at:payload_end])
        self._faults_in(d, (frame, payload_at, payload_end))

    def _parse_udp(self, d: _Dir, frame) -> Optional[tuple[int, int]]:
        """(start, end) of the UDP payload of a good IPv4/UDP frame to the server's IP and port;
        None (counted) for anything else."""
        n = len(frame)
        if n < ETH_HEADER + 20:
            return self._other(d, "runt-ip")
        vihl = frame[14]
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20 or n < ETH_HEADER + ihl + 8:
            return self._other(d, "bad-ip-header")
        total = (frame[16] << 8) | frame[17]
        if total < ihl + 8 or ETH_HEADER + total > n:
            return self._other(d, "bad-ip-length")
        if ((frame[20] << 8) | frame[21]) & 0x3FFF:
            return self._other(d, "ip-fragment")
        if frame[23] != 17:
            return self._other(d, f"ip-proto-{frame[23]}")
        if frame[30:34] != SERVER_IP:
            return self._other(d, "not-to-server-ip")
        udp = ETH_HEADER + ihl
        dport = (frame[udp + 2] << 8) | frame[udp + 3]
        if dport != SERVER_PORT:
            return self._other(d, f"udp-port-{dport}")
        ulen = (frame[udp + 4] << 8) | frame[udp + 5]
        if ulen < 8 or ulen > total - ihl:
            return self._other(d, "bad-udp-length")
        mv = memoryview(frame)
        if checksum(mv[ETH_HEADER:udp]) != 0:
            d.bad_ip_checksum += 1
            return None
        if (frame[udp + 6] | frame[udp + 7]) == 0 or checksum(_pseudo(frame[26:30], SERVER_IP, ulen),
                                                              mv[udp:udp + ulen]) != 0:
            d.bad_udp_checksum += 1  # a checksum of 0 is "none": the contract says computed
            return None
        return udp + 8, udp + ulen

    @staticmethod
    def _count_message(d: _Dir, payload) -> Optional[protocol.Peek]:
        """The message's header (its CRC32C unchecked: the UDP checksum held), counted by type."""
        m = protocol.peek(payload)
        d.messages[m.name if m is not None else "malformed"] += 1
        return m

    def _note_guest_message(self, d: _Dir, payload) -> None:
        m = self._count_message(d, payload)
        if m is None or m.type is not protocol.MsgType.DATA or m.ack:
            return
        end = m.offset + m.payload_bytes
        for h in self._hooks:
            if h["fired"] is None and end > h["offset"]:
                h["fired"] = {"t": time.time(), "seq": m.seq, "offset": m.offset, "bytes": m.payload_bytes}
                try:
                    h["callback"](m)
                except Exception as exc:  # noqa: BLE001 - counted, the link goes on
                    h["fired"]["error"] = repr(exc)
                    self._error(exc)
        if self._partition_at is not None and end > self._partition_at and self._partition_t is None:
            self._cut_locked(f"DATA seq {m.seq} at offset {m.offset} (+{m.payload_bytes}) reached "
                             f"partition offset {self._partition_at}")

    # -- server -> guest ----------------------------------------------------------------------

    def _read_server(self) -> None:
        d = self._dirs[TO_GUEST]
        for _ in range(READ_BATCH):
            try:
                data, addr = self._udp.recvfrom(MAX_FRAME)
            except BlockingIOError:
                return
            except OSError as exc:  # ECONNREFUSED after the server died, and the like
                d.receive_errors += 1
                self._error(exc)
                continue
            if addr != self._server:
                self._foreign += 1
                continue
            d.frames_in += 1
            d.bytes_in += len(data)
            try:
                self._from_server(d, data)
            except Exception as exc:  # noqa: BLE001
                self._error(exc)

    def _from_server(self, d: _Dir, data: bytes) -> None:
        self._count_message(d, data)
        if 20 + 8 + len(data) > LINK_MTU:
            return self._other(d, "larger-than-mtu")
        self._faults_in(d, self._udp_frame(data))

    def _udp_frame(self, payload: bytes) -> bytes:
        """An Ethernet/IPv4/UDP frame from the server to the guest, checksums computed."""
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        ulen = 8 + len(payload)
        ip = _IP.pack(0x45, 0, 20 + ulen, self._ip_id, 0x4000, 64, 17, 0, SERVER_IP, self._guest_ip)
        ip = ip[:10] + _U16.pack(checksum(ip)) + ip[12:]
        udp = _UDP.pack(SERVER_PORT, self._guest_port, ulen, 0)
        c = checksum(_pseudo(SERVER_IP, self._guest_ip, ulen), udp, payload) or 0xFFFF
        frame = _ETH.pack(self._guest_mac, SERVER_MAC, ETH_IP) + ip + udp[:6] + _U16.pack(c) + payload
        if len(frame) < MIN_FRAME:
            frame += bytes(MIN_FRAME - len(frame))
        return frame

    # -- ARP ----------------------------------------------------------------------------------

    def _arp(self, d: _Dir, frame: bytes) -> None:
        try:
            arp = dpkt.arp.ARP(frame[ETH_HEADER:])
        except dpkt.UnpackError:
            return self._other(d, "bad-arp")
        if (arp.hrd, arp.pro, arp.hln, arp.pln) != (dpkt.arp.ARP_HRD_ETH, dpkt.arp.ARP_PRO_IP, 6, 4):
            return self._other(d, "arp-not-ethernet-ipv4")
        if arp.op != dpkt.arp.ARP_OP_REQUEST:
            return self._other(d, f"arp-op-{arp.op}")
        if arp.tpa != SERVER_IP:
            return self._other(d, "arp-not-for-server")
        self._guest_mac, self._guest_ip = bytes(arp.sha), bytes(arp.spa)
        if self._partition_t is not None:
            d.partitioned += 1
            return
        reply = dpkt.ethernet.Ethernet(
            dst=arp.sha, src=SERVER_MAC, type=ETH_ARP,
            data=dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REPLY, sha=SERVER_MAC, spa=SERVER_IP, tha=arp.sha, tpa=arp.spa))
        out = bytes(reply)
        out += bytes(max(0, MIN_FRAME - len(out)))
        self._arp_answered += 1
        self._deliver(self._dirs[TO_GUEST], out)

    # -- the faults -----------------------------------------------------------------------------
    # An item is what a direction carries: to the guest, the frame (bytes); to the server, the
    # guest's frame with its UDP payload's bounds (frame, start, end).

    def _faults_in(self, d: _Dir, item) -> None:
        if self._partition_t is not None:
            d.partitioned += 1
            return
        f = d.faults
        if not f.active:
            if d.held is None and not d.delayed_q:
                return self._deliver(d, item)
            return self._reorder(d, item, f)  # nothing to do but keep the order behind those
        rng = d.rng
        if f.drop and rng.random() < f.drop:
            d.dropped += 1
            return
        if f.corrupt and rng.random() < f.corrupt:
            item = self._corrupt(d, item)
            if item is None:
                return
        copies = 1
        if f.duplicate and rng.random() < f.duplicate:
            d.duplicated += 1
            copies = 2
        for _ in range(copies):
            self._reorder(d, item, f)

    def _corrupt(self, d: _Dir, item):
        """A random bit of the UDP payload flipped. Guest-bound: the frame goes on (the guest
        must drop it). Server-bound: None, the frame dropped as a bad UDP checksum, which it is
        (one flipped bit changes a ones'-complement sum by +-2**k, never a multiple of 0xFFFF:
        the link's own check, which every guest frame meets, would always catch it)."""
        d.corrupted += 1
        if d.name == TO_GUEST:  # the link's own frame: its UDP payload
            start, end = ETH_HEADER + 20 + 8, ETH_HEADER + ((item[16] << 8) | item[17])
        else:
            _, start, end = item
        if end <= start:
            return item  # no payload to flip (never for a netdump message)
        bit = d.rng.randrange((end - start) * 8)  # drawn either way: a seed's later fates stay the same
        if d.name == TO_SERVER:
            d.bad_udp_checksum += 1
            return None
        frame = bytearray(item)
        frame[start + bit // 8] ^= 1 << (bit % 8)
        return bytes(frame)

    def _reorder(self, d: _Dir, item, f: Faults) -> None:
        if d.held is not None:
            held = d.held[0]
            d.held = None
            d.reordered += 1
            self._delay(d, item, f)
            self._delay(d, held, f)
            return
        if f.reorder and d.rng.random() < f.reorder:
            d.held = (item, time.monotonic() + f.reorder_timeout_ms / 1000.0)
            return
        self._delay(d, item, f)

    def _delay(self, d: _Dir, item, f: Faults) -> None:
        if not (f.delay_ms or f.jitter_ms) and not d.delayed_q:
            return self._deliver(d, item)
        now = time.monotonic()
        release = now + (f.delay_ms + (d.rng.random() * f.jitter_ms if f.jitter_ms else 0.0)) / 1000.0
        release = max(release, d.last_release)
        d.last_release = release
        if f.delay_ms or f.jitter_ms:
            d.delayed += 1
        d.delayed_q.append((release, item))

    def _run_timers(self, now: float) -> None:
        for d in self._dirs.values():
            if d.held is not None and d.held[1] <= now:
                item = d.held[0]
                d.held = None
                d.reorder_timeouts += 1
                self._delay(d, item, d.faults)
            q = d.delayed_q
            while q and q[0][0] <= now:
                item = q.popleft()[1]
                if self._partition_t is not None:
                    d.partitioned += 1
                else:
                    self._deliver(d, item)

    def _cut_locked(self, why: str) -> None:
        if self._partition_t is not None:
            return
        self._partition_t = time.time()
        self._partition_why = why
        for d in self._dirs.values():
            d.partitioned += d.drain()
        self._partition_event.set()

    # -- out ----------------------------------------------------------------------------------

    def _deliver(self, d: _Dir, item) -> None:
        """Sent now, or kept behind the frames the socket has not taken yet (BACKLOG_FRAMES at
        most: then counted as an overrun and dropped)."""
        if not d.backlog and self._send(d, item):
            return
        if len(d.backlog) >= BACKLOG_FRAMES:
            d.overrun += 1
            return
        d.backlog.append(item)
        d.backlogged += 1

    def _send(self, d: _Dir, item) -> bool:
        """Send one item; False when the socket is full (try again when writable)."""
        try:
            if d.name == TO_GUEST:
                # The time the frame is given to the guest, taken before the send: once sent,
                # QEMU and the guest may answer it before this process runs again (the acks
                # oracle holds the guest's DONE to come after its FINISH's ACK).
                t = time.time()
                self._eth.send(item)
                n = len(item)
                self._pcap.writepkt_time(item, t)
            else:
                frame, start, end = item
                self._udp.sendto(memoryview(frame)[start:end], self._server)
                n = end - start
        except BlockingIOError:
            return False
        except OSError as exc:  # the server's port closed (ECONNREFUSED), QEMU gone (ECONNREFUSED)
            d.send_errors += 1
            if d.send_errors <= 3:
                self._error(exc)
            return True
        d.frames_out += 1
        d.bytes_out += n
        return True

    def _flush_backlog(self, d: _Dir) -> None:
        while d.backlog:
            if self._partition_t is not None:
                d.partitioned += len(d.backlog)
                d.backlog.clear()
                return
            if not self._send(d, d.backlog[0]):
                return
            d.backlog.popleft()

    # -- link.json ------------------------------------------------------------------------------

    @staticmethod
    def _hook_json(h: dict) -> dict:
        return {"offset": h["offset"], **(h["fired"] or {})}

    def _counters_locked(self) -> dict:
        end = self._stopped_t or time.time()
        return {
            "server": f"{self._server[0]}:{self._server[1]}",
            "local": "{}:{}".format(*self._udp.getsockname()) if self._udp.fileno() >= 0 else None,
            "guest": {"mac": _mac(self._guest_mac), "ip": _ip(self._guest_ip), "port": self._guest_port},
            "seed": self.seed,
            "started": self._started_t,
            "stopped": self._stopped_t,
            TO_SERVER: self._dirs[TO_SERVER].counters(),
            TO_GUEST: self._dirs[TO_GUEST].counters(),
            "arp_answered": self._arp_answered,
            "foreign_datagrams": self._foreign,
            "partition": {
                "armed_at_offset": self._partition_at,
                "t": self._partition_t,
                "why": self._partition_why,
                "seconds": (end - self._partition_t) if self._partition_t is not None else 0.0,
            },
            "hooks": [self._hook_json(h) for h in self._hooks],
            "faults": {d: self._dirs[d].faults.as_dict() for d in DIRECTIONS},
            "fault_history": list(self._fault_history),
            "errors": list(self._errors),
            "error_count": self._error_count,
        }
