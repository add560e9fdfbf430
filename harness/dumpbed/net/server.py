"""The dump server `dumpbed netdumpd` (docs/netdump-protocol.md section 7, docs/netdumpd.md).

NetdumpServer is the whole protocol and nothing of the network: it is fed one datagram and the
client's address at a time (`handle`) and returns the datagrams to send back to that client, so
the unit tests drive it with a simulated guest and no socket. `serve` puts it behind an asyncio
UDP endpoint (NetdumpProtocol).

Where the dumps go is an image source: OneImage (`--image`: one pre-made dump disk, its dump
partition found through its GPT, the harness's) or ImageDir (`--dir`: each new dump gets
DIR/CLIENTIP-DUMPID.img, created sparse with a GPT and a dump partition of `--size` bytes).

Beside each image the server keeps, for the oracles, IMAGE.writes (its pwrites and fdatasyncs in
the write-log format of QEMU's blklogwrites: capture/blklog.py's WriteLogWriter) and, in the
image's directory, netdumpd.jsonl (one JSON object per event).

Memory is bounded whatever the guest sends: a dump's state is its seq set (a contiguous prefix
and at most SEQ_SPAN seqs above it), a few counters and at most MAX_REFUSED remembered refusals;
a datagram's data is gone once its pwrite and its log entry are written.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from dumpbed.capture import blklog
from dumpbed.capture.blklog import WriteLogWriter
from dumpbed.errors import DumpbedError
from dumpbed.guest_interface import Errno  # the protocol's errno values (Linux's), whatever the host's
from dumpbed.images import gpt
from dumpbed.images.layout import BLOCK_SIZES, DiskLayout
from dumpbed.net import protocol
from dumpbed.net.evidence import SERVER_EVENTS_FILE as EVENTS_FILE
from dumpbed.net.protocol import Message, MsgType

SERVER_WINDOW = 64  # the most messages in flight the server takes
DEFAULT_PORT = protocol.SERVER_PORT
DEFAULT_DIR_SIZE = "4G"  # --dir's dump partition when --size is not given
DEFAULT_BLOCK_SIZE = 512  # the block size of the images ImageDir creates
SEQ_SPAN = 4096  # how far above the lowest unanswered seq a message may be (the window is <= 64)
MAX_REFUSED = 1024  # refusals a dump remembers for its re-ACKs
MAX_FINISHED = 1024  # finished dumps remembered (for duplicates and ESTALE), oldest forgotten first
LINGER_SECONDS = 5.0  # with --max-dumps: how long the last FINISH's duplicates are still answered


def client_text(addr) -> str:
    """'10.0.2.15:20024' ('[::1]:20024' for IPv6) of a socket address."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[V6]:PORT', ':PORT' -> (host, port); a DumpbedError naming --listen."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise DumpbedError(f"--listen {text}: not HOST:PORT (e.g. 0.0.0.0:{DEFAULT_PORT})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


def parse_dump_id(text: str) -> bytes:
    """32 hex digits (dashes allowed, as in a UUID) -> the 16-byte dump id."""
    digits = text.replace("-", "")
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raw = b""
    if len(raw) != 16 or len(digits) != 32:
        raise DumpbedError(f"--dump-id {text}: not a dump id (32 hex digits, as the guest's dumpid=)")
    return raw


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


# What `server-kill` sends (net/service.py): a signal the server leaves at its default action,
# which ends the process at once as a crash would; the server holds it off only while it makes an
# image write and that write's log entry (or a sync and its log entry), so a killed server's
# write log still explains its image (the consistency oracle's premise). SIGKILL cannot be held
# off: killed between the two, the image held a write its log never told.
KILL_SIGNAL = signal.SIGUSR1


class _Whole:
    """An image change and its log entry, never parted by KILL_SIGNAL."""

    def __enter__(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {KILL_SIGNAL})

    def __exit__(self, *exc) -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {KILL_SIGNAL})  # a pending one ends us here


class Target:
    """One dump's image, open: its dump partition, its write log."""

    def __init__(self, path: Path, part_offset: int, part_bytes: int, block_size: int, log: WriteLogWriter):
        self.path = path
        self.part_offset = part_offset
        self.part_bytes = part_bytes
        self.block_size = block_size
        self.log = log
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def write(self, offset: int, data: bytes) -> None:
        """One pwrite at partition offset `offset`, then its log entry."""
        with _Whole():
            blklog.pwrite_all(self._fd, [data], self.part_offset + offset)
            self.log.write(self.part_offset + offset, data)

    def sync(self) -> None:
        with _Whole():
            os.fdatasync(self._fd)
            self.log.flush()

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.log.close()
        finally:
            os.close(self._fd)
            self._fd = -1


class OneImage:
    """`--image`: one pre-made dump disk for one dump; with dump_id, only that dump's HERALD
    takes it, otherwise the first. Its write log IMAGE.writes is created (empty) at start()."""

    def __init__(self, path: str | Path, dump_id: Optional[bytes] = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DumpbedError(f"--image {self.path}: no such image")
        if not os.access(self.path, os.R_OK | os.W_OK):
            raise DumpbedError(f"--image {self.path}: not readable and writable")
        try:
            offset, size, block = gpt.find_dump_partition(self.path)
        except gpt.GptError as exc:
            raise DumpbedError(f"--image {exc}") from None
        self.part_offset, self.part_bytes, self.block_size = offset, size, block
        self.dump_id = dump_id
        self.events_path = self.path.parent / EVENTS_FILE
        self.claimed_by: Optional[tuple] = None
        self._log: Optional[WriteLogWriter] = None

    def start(self) -> None:
        self._log = WriteLogWriter(blklog.log_path(self.path))

    def room(self, client=None) -> tuple[int, int]:
        return self.part_bytes, self.block_size

    def accepts(self, client, dump_id: bytes) -> bool:
        if self.dump_id is not None and dump_id != self.dump_id:
            return False
        return self.claimed_by is None or self.claimed_by == (client, dump_id)

    def open(self, client, dump_id: bytes) -> Target:
        if self._log is None:
            self.start()
        target = Target(self.path, self.part_offset, self.part_bytes, self.block_size, self._log)
        self.claimed_by = (client, dump_id)
        return target

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


class ImageDir:
    """`--dir`: each new dump gets DIR/CLIENTIP-DUMPID.img, a sparse disk with a GPT whose dump
    partition is `size` bytes, 1 MiB in (DiskLayout.with_dump_partition), and its write log."""

    def __init__(self, directory: str | Path, size: int, block_size: int = DEFAULT_BLOCK_SIZE):
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise DumpbedError(f"--dir {self.directory}: not a directory")
        if block_size not in BLOCK_SIZES:
            raise DumpbedError(f"block size {block_size} unsupported (512 or 4096)")
        if size <= 0 or size % block_size:
            raise DumpbedError(f"--size {size}: not a positive multiple of the {block_size}-byte block")
        self.size = size
        self.block_size = block_size
        self.events_path = self.directory / EVENTS_FILE

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def room(self, client=None) -> tuple[int, int]:
        return self.size, self.block_size

    def accepts(self, client, dump_id: bytes) -> bool:
        return True

    def image_path(self, client, dump_id: bytes) -> Path:
        return self.directory / f"{client[0]}-{dump_id.hex()}.img"

    def layout(self, name: str, dump_id: bytes) -> DiskLayout:
        return DiskLayout.with_dump_partition(self.size, self.block_size, int.from_bytes(dump_id[:4], "big"), name)

    def open(self, client, dump_id: bytes) -> Target:
        path = self.image_path(client, dump_id)
        layout = self.layout(path.name, dump_id)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)  # EEXIST: never clobber
        os.close(fd)
        try:
            gpt.write(path, layout)  # truncated to the disk's size: sparse but for the GPT
            log = WriteLogWriter(blklog.log_path(path))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Target(path, layout.dump_offset, layout.dump_size, self.block_size, log)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# The event log
# --------------------------------------------------------------------------------------------


class EventLog:
    """netdumpd.jsonl: one line per event, appended and flushed as it happens."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = open(self.path, "a", buffering=1)
        self.lost = 0  # events that could not be written (a full disk): the ACKs still go out

    def add(self, **event) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(event) + "\n")
        except OSError as exc:
            if not self.lost:
                print(f"dumpbed: netdumpd: {self.path}: {exc.strerror or exc}: events are being lost",
                      file=sys.stderr)
            self.lost += 1

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                self.lost += 1
            finally:
                try:
                    self._file.close()
                except OSError:
                    pass
                self._file = None


# --------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------


@dataclass
class Dump:
    """One dump: (client, dump_id), its image, what was negotiated, the seqs answered."""

    client: tuple
    dump_id: bytes
    target: Target
    max_data: int
    window: int
    low: int = 1  # every seq below it has been answered
    above: set = field(default_factory=set)  # answered seqs above low (at most SEQ_SPAN)
    refused: dict = field(default_factory=dict)  # seq -> the errno it was answered with
    closed: bool = False
    writes: int = 0
    bytes: int = 0
    flushes: int = 0
    duplicates: int = 0

    def answered(self, seq: int) -> Optional[int]:
        """The status this seq was acknowledged with, or None if it was not yet."""
        if seq < self.low or seq in self.above:
            return self.refused.get(seq, 0)
        return None

    def mark(self, seq: int, status: int) -> None:
        if status:
            if len(self.refused) >= MAX_REFUSED:
                return  # not remembered: a retransmission is judged again
            self.refused[seq] = status
        if seq == self.low:
            self.low += 1
            while self.low in self.above:
                self.above.remove(self.low)
                self.low += 1
        elif seq > self.low:
            self.above.add(seq)

    @property
    def room(self) -> tuple[int, int, int, int]:
        return self.target.part_bytes, self.target.block_size, self.max_data, self.window

    def describe(self) -> str:
        return f"dump {self.dump_id.hex()} from {client_text(self.client)}"


class NetdumpServer:
    """The netdump server's protocol: handle(datagram, client) -> the datagrams to send back.

    images: OneImage or ImageDir. events: where netdumpd.jsonl goes (default: the image
    source's events_path). notify(what, dump) is called with "started" and "finished" (and
    "unfinished" at close for a dump without FINISH). max_dumps: HERALDs of new dumps beyond it
    are refused (EBUSY); `done` tells when that many have finished. A DATA's most bytes are what
    the harness's link MTU (9000) carries."""

    def __init__(self, images, *, window: int = SERVER_WINDOW,
                 events: str | Path | None = None, max_dumps: Optional[int] = None,
                 notify: Optional[Callable[[str, Dump], None]] = None, clock: Callable[[], float] = time.time):
        self.images = images
        self.window = window
        self.events_path = Path(events) if events is not None else images.events_path
        self.max_dumps = max_dumps
        self.notify = notify or (lambda what, dump: None)
        self.clock = clock
        self.dumps: dict[tuple, Dump] = {}
        self.started = 0  # dumps heralded
        self.finished = 0
        self.counts: collections.Counter = collections.Counter()
        self._events: Optional[EventLog] = None
        self._started = False

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Create what the server writes before any dump: the image source's (IMAGE.writes,
        DIR), the event log."""
        if self._started:
            return
        self._started = True
        self.images.start()
        self._events = EventLog(self.events_path)

    def close(self) -> None:
        """Flush and close everything; a dump without FINISH is synced and left as it is."""
        for dump in self.dumps.values():
            if not dump.closed:
                dump.closed = True
                try:
                    dump.target.sync()
                except OSError:
                    pass
                try:
                    dump.target.close()
                except OSError as exc:
                    print(f"dumpbed: netdumpd: {dump.target.path}: {exc.strerror or exc}", file=sys.stderr)
                self.notify("unfinished", dump)
        self.images.close()
        if self._events is not None:
            self._events.close()

    @property
    def done(self) -> bool:
        """max_dumps dumps have finished."""
        return self.max_dumps is not None and self.finished >= self.max_dumps

    @staticmethod
    def server_max_data(block_size: int) -> int:
        return protocol.max_data_for(protocol.LINK_MTU, block_size)

    # -- messages -------------------------------------------------------------------------------

    def handle(self, data: bytes, client, received: Optional[float] = None) -> list[bytes]:
        """The replies (encoded) to one datagram from client."""
        if received is None:
            received = self.clock()
        if not self._started:
            self.start()
        try:
            m = protocol.decode(data)
        except protocol.MalformedMessage:
            self.counts["malformed"] += 1
            return []
        self.counts[m.name] += 1
        if m.ack:
            return self._ignore(m, client, received)  # ACKs are the server's to send
        if m.type is MsgType.QUERY:
            part_bytes, block = self.images.room(client)
            reply = protocol.room_ack(m, part_bytes, block, self.server_max_data(block), self.window)
            return self._answer(m, client, received, "query", reply)
        key = (client, m.dump_id)
        dump = self.dumps.get(key)
        if m.type is MsgType.HERALD and (dump is None or dump.answered(m.seq) is None):
            return self._herald(m, client, received, dump)
        if dump is None:
            return self._ignore(m, client, received)
        if m.type is not MsgType.HERALD and m.seq <= 1:
            return self._refuse(m, client, received, Errno.EINVAL)  # seq 1 is the HERALD's, 0 the QUERY's
        status = dump.answered(m.seq)
        if status is not None:
            dump.duplicates += 1
            if m.type is MsgType.HERALD:
                reply = protocol.ack(m, status, protocol.ROOM.pack(*dump.room))
            else:
                reply = protocol.ack(m, status)
            return self._answer(m, client, received, "duplicate", reply)
        if dump.closed:
            return self._refuse(m, client, received, Errno.ESTALE)
        if m.seq >= dump.low + SEQ_SPAN:
            return self._refuse(m, client, received, Errno.EINVAL)  # not a seq of this dump's window
        if m.type is MsgType.DATA:
            return self._data(m, client, received, dump)
        if m.type is MsgType.FLUSH:
            return self._flush(m, client, received, dump)
        return self._finish(m, client, received, dump)

    def _herald(self, m: Message, client, received: float, dump: Optional[Dump]) -> list[bytes]:
        part_bytes, block = self.images.room(client)
        server_max = self.server_max_data(block)

        def refuse(status: int) -> list[bytes]:
            reply = protocol.ack(m, status, protocol.ROOM.pack(part_bytes, block, server_max, self.window))
            return self._answer(m, client, received, "refused", reply)

        if dump is not None or not self.images.accepts(client, m.dump_id):
            if dump is not None:
                return refuse(Errno.EINVAL)  # a second HERALD of a dump, with another seq
            return self._ignore(m, client, received)
        if self.max_dumps is not None and self.started >= self.max_dumps:
            return refuse(Errno.EBUSY)
        try:
            guest_block, guest_max, guest_window = m.herald()
        except protocol.MalformedMessage:
            return refuse(Errno.EINVAL)
        max_data = min(guest_max // block * block, server_max)
        if m.seq != 1 or guest_block != block or max_data < block or guest_window < 1:
            return refuse(Errno.EINVAL)
        try:
            target = self.images.open(client, m.dump_id)
        except OSError as exc:
            return refuse(exc.errno or Errno.EIO)
        except DumpbedError:
            return refuse(Errno.EIO)
        dump = Dump(client, m.dump_id, target, max_data, min(guest_window, self.window))
        dump.mark(m.seq, 0)
        self.dumps[(client, m.dump_id)] = dump
        self.started += 1
        self.notify("started", dump)
        return self._answer(m, client, received, "herald", protocol.ack(m, 0, protocol.ROOM.pack(*dump.room)))

    def _data(self, m: Message, client, received: float, dump: Dump) -> list[bytes]:
        block, size = dump.target.block_size, len(m.payload)
        if m.offset % block or size % block or size == 0 or size > dump.max_data:
            status = Errno.EINVAL
        elif m.offset + size > dump.target.part_bytes:
            status = Errno.ENOSPC
        else:
            try:
                dump.target.write(m.offset, m.payload)
                status = 0
            except OSError as exc:
                status = exc.errno or Errno.EIO
        dump.mark(m.seq, status)
        if status:
            return self._refuse(m, client, received, status)
        dump.writes += 1
        dump.bytes += size
        return self._answer(m, client, received, "write", protocol.ack(m))

    def _flush(self, m: Message, client, received: float, dump: Dump) -> list[bytes]:
        status = Errno.EIO if dump.low < m.seq else self._sync(dump)
        dump.mark(m.seq, status)
        if status:
            return self._refuse(m, client, received, status)
        dump.flushes += 1
        return self._answer(m, client, received, "flush", protocol.ack(m))

    def _finish(self, m: Message, client, received: float, dump: Dump) -> list[bytes]:
        status = self._sync(dump)
        dump.mark(m.seq, status)
        if status:
            return self._refuse(m, client, received, status)
        dump.target.close()
        dump.closed = True
        self.finished += 1
        self._forget_old()
        reply = self._answer(m, client, received, "finish", protocol.ack(m))
        self.notify("finished", dump)
        return reply

    @staticmethod
    def _sync(dump: Dump) -> int:
        try:
            dump.target.sync()
            return 0
        except OSError as exc:
            return exc.errno or Errno.EIO

    def _forget_old(self) -> None:
        closed = [key for key, dump in self.dumps.items() if dump.closed]
        for key in closed[:max(0, len(closed) - MAX_FINISHED)]:
            del self.dumps[key]

    # -- answers and events ---------------------------------------------------------------------

    def _answer(self, m: Message, client, received: float, event: str, reply: Message) -> list[bytes]:
        self.counts[event] += 1
        self._event(event, m, client, received, reply.status)
        return [protocol.encode(reply)]

    def _refuse(self, m: Message, client, received: float, status: int) -> list[bytes]:
        return self._answer(m, client, received, "refused", protocol.ack(m, status))

    def _ignore(self, m: Message, client, received: float) -> list[bytes]:
        self.counts["ignored"] += 1
        self._event("ignored", m, client, received, 0)
        return []

    def _event(self, event: str, m: Message, client, received: float, status: int) -> None:
        if self._events is not None:
            self._events.add(t=self.clock(), event=event, client=client_text(client), seq=m.seq,
                             offset=m.offset, bytes=len(m.payload) if m.type is MsgType.DATA else 0,
                             received=received, status=status, type=m.name, dump_id=m.dump_id.hex())


# --------------------------------------------------------------------------------------------
# The UDP transport
# --------------------------------------------------------------------------------------------


class NetdumpProtocol(asyncio.DatagramProtocol):
    """The server behind an asyncio UDP endpoint: each datagram handled as it comes, in order,
    its replies sent to where it came from. Nothing a client sends stops it."""

    def __init__(self, server: NetdumpServer, on_datagram: Optional[Callable[[], None]] = None):
        self.server = server
        self.on_datagram = on_datagram
        self.transport: Optional[asyncio.DatagramTransport] = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        received = time.time()
        try:
            replies = self.server.handle(data, addr, received)
        except Exception as exc:  # a bug of ours must not end the dump of everyone else
            self.server.counts["errors"] += 1
            print(f"dumpbed: netdumpd: error on a datagram from {client_text(addr)}: {exc!r}", file=sys.stderr)
            replies = []
        for reply in replies:
            self.transport.sendto(reply, addr)
        if self.on_datagram is not None:
            self.on_datagram()

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error of an earlier sendto (the guest went away): nothing to do


RECEIVE_BUFFER = 8 << 20


def bind(host: str, port: int) -> socket.socket:
    """The server's UDP socket, bound (an OSError if the address is taken or wrong)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise DumpbedError(f"--listen {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise DumpbedError(f"--listen {host}:{port}: {exc.strerror or exc}") from None
    # A guest's window of jumbo frames (32 x 8.8 KiB) arrives at once: the default receive buffer
    # (208 KiB) would drop some, and every drop costs the guest an RTO (measured: 1 DATA in 9 sent
    # twice). The kernel caps it at net.core.rmem_max unless run as root.
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
            break
        except OSError:
            continue
    sock.setblocking(False)
    return sock


def adopt(fd: int) -> socket.socket:
    """The server's UDP socket from a descriptor a parent process bound and passed
    (`--listen-fd`); a DumpbedError if it is no bound datagram socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise DumpbedError(f"--listen-fd {fd}: not an open socket ({exc.strerror or exc})") from None
    try:
        bound = sock.type == socket.SOCK_DGRAM and sock.family in (socket.AF_INET, socket.AF_INET6) \
            and sock.getsockname()[1] != 0
    except OSError:
        bound = False
    if not bound:
        sock.detach()
        raise DumpbedError(f"--listen-fd {fd}: not a bound UDP socket")
    sock.setblocking(False)
    return sock


async def _serve(server: NetdumpServer, sock: socket.socket, linger: float) -> str:
    """The endpoint's life: until SIGTERM or SIGINT, or `linger` seconds after max_dumps finished."""
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()

    def stop(why: str) -> None:
        if not stopped.done():
            stopped.set_result(why)

    lingering = []

    def after_datagram() -> None:
        if server.done and not lingering:
            lingering.append(loop.call_later(linger, stop, f"{server.finished} dumps finished"))

    transport, _ = await loop.create_datagram_endpoint(lambda: NetdumpProtocol(server, after_datagram), sock=sock)
    sigs = (signal.SIGTERM, signal.SIGINT)
    for sig in sigs:
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        return await stopped
    finally:
        transport.close()
        for sig in sigs:
            loop.remove_signal_handler(sig)


def serve(server: NetdumpServer, sock: socket.socket, linger: float = LINGER_SECONDS) -> str:
    """Run the server on a bound socket until SIGTERM or SIGINT (or, with max_dumps, `linger`
    seconds after the last dump finished); close everything; return why it stopped. For the
    main thread (`dumpbed netdumpd`)."""
    # KILL_SIGNAL at its default action, whatever was inherited (an ignored signal stays ignored
    # across exec)
    signal.signal(KILL_SIGNAL, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {KILL_SIGNAL})
    server.start()
    try:
        return asyncio.run(_serve(server, sock, linger))
    finally:
        # a second SIGTERM or Ctrl-C must not cut the closing short
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            server.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
