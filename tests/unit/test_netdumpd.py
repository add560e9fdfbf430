"""The dump server (harness/dumpbed/net/server.py, docs/netdump-protocol.md section 7) driven by a
simulated guest: no QEMU, no link. One test runs `dumpbed netdumpd` itself and talks UDP to it."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from procs import free_port

from dumpbed import cli
from dumpbed.capture import blklog
from dumpbed.guest_interface import Errno
from dumpbed.images import gpt
from dumpbed.images.layout import DiskLayout
from dumpbed.net import protocol
from dumpbed.net import server as netserver
from dumpbed.net.protocol import Message, MsgType
from dumpbed.units import KiB, MiB

GUEST = ("10.0.2.15", 20024)
DUMP_ID = bytes.fromhex("0123456789abcdef0123456789abcdef")
OTHER_ID = bytes.fromhex("fedcba9876543210fedcba9876543210")


class Guest:
    """The guest side of one dump, as far as the server can tell: numbered messages, each
    handed to the server and its replies decoded."""

    def __init__(self, server: netserver.NetdumpServer, client=GUEST, dump_id: bytes = DUMP_ID,
                 block: int = 512, max_data: int = 8704, window: int = 32):
        self.server, self.client, self.dump_id = server, client, dump_id
        self.block, self.max_data, self.window = block, max_data, window
        self.next_seq = 1

    def message(self, kind: MsgType, offset: int = 0, payload: bytes = b"", seq: int | None = None) -> Message:
        if seq is None:
            seq, self.next_seq = self.next_seq, self.next_seq + 1
        return Message(kind, False, seq, self.dump_id, offset, 0, payload)

    def send(self, m: Message | bytes) -> list[Message]:
        data = protocol.encode(m) if isinstance(m, Message) else m
        return [protocol.decode(r) for r in self.server.handle(data, self.client)]

    def one(self, m: Message | bytes) -> Message:
        replies = self.send(m)
        assert len(replies) == 1, replies
        return replies[0]

    def query(self) -> Message:
        return self.one(Message(MsgType.QUERY, False, 0, protocol.NO_DUMP_ID))

    def herald(self) -> Message:
        return self.one(self.message(MsgType.HERALD, payload=protocol.HERALD.pack(self.block, self.max_data,
                                                                                  self.window)))

    def data(self, offset: int, payload: bytes) -> Message:
        return self.one(self.message(MsgType.DATA, offset, payload))

    def flush(self) -> Message:
        return self.one(self.message(MsgType.FLUSH))

    def finish(self) -> Message:
        return self.one(self.message(MsgType.FINISH))

    def write(self, offset: int, payload: bytes) -> None:
        """A writer write: DATA pieces of at most max_data, each acknowledged with status 0."""
        for at in range(0, len(payload), self.max_data):
            ack = self.data(offset + at, payload[at:at + self.max_data])
            assert (ack.type, ack.ack, ack.status) == (MsgType.DATA, True, 0)


def make_image(path: Path, block: int = 512) -> tuple[Path, int, int]:
    """A dump disk as the harness makes it (sparse, no canary): (path, partition offset, size)."""
    layout = DiskLayout.for_dump(4 * MiB, block_size=block, canary_seed=7, image=path.name)
    gpt.write(path, layout)
    return path, layout.dump_offset, layout.dump_size


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def log_size(image: Path) -> int:
    return blklog.log_path(image).stat().st_size


@pytest.fixture
def image(tmp_path):
    return make_image(tmp_path / "dump.img")


@pytest.fixture
def server(image):
    srv = netserver.NetdumpServer(netserver.OneImage(image[0]))
    srv.start()
    yield srv
    srv.close()


def test_a_whole_dump_lands_byte_exact_and_its_write_log_reads_back(image, server):
    path, part, size = image
    guest = Guest(server)
    q = guest.query()
    assert (q.type, q.ack, q.seq, q.status) == (MsgType.QUERY, True, 0, 0)
    assert q.room() == (size, 512, 8704, 64)
    h = guest.herald()
    assert (h.type, h.ack, h.seq, h.status, h.dump_id) == (MsgType.HERALD, True, 1, 0, DUMP_ID)
    assert h.room() == (size, 512, 8704, 32)
    rng = random.Random(1)
    body = rng.randbytes(300 * KiB)
    leader = rng.randbytes(4 * KiB)
    guest.write(68 * KiB, body)
    assert guest.flush().status == 0
    guest.write(64 * KiB, leader)
    assert guest.flush().status == 0
    assert guest.finish().status == 0
    server.close()

    with open(path, "rb") as f:
        f.seek(part + 64 * KiB)
        assert f.read(len(leader) + len(body)) == leader + body
        f.seek(part)
        assert f.read(64 * KiB) == bytes(64 * KiB)  # nothing else touched
    log = blklog.read(blklog.log_path(path))
    assert log.cut_short == ""
    kinds = ["flush" if e.is_flush else "write" for e in log.entries]
    pieces = -(-len(body) // 8704)
    assert kinds == ["write"] * pieces + ["flush", "write", "flush", "flush"]  # FINISH's fdatasync last
    assert log.superblock_entries == len(log.entries)
    written = b"".join(log.data(e) for e in log.writes[:pieces])
    assert written == body
    assert log.writes[0].offset == part + 68 * KiB
    assert log.writes[-1].offset == part + 64 * KiB and log.data(log.writes[-1]) == leader
    assert all(e.length <= 8704 for e in log.writes)

    evs = events(path.parent / netserver.EVENTS_FILE)
    assert [e["event"] for e in evs] == ["query", "herald"] + ["write"] * pieces + ["flush", "write", "flush",
                                                                                   "finish"]
    for e in evs:
        assert set(e) == {"t", "event", "client", "seq", "offset", "bytes", "received", "status", "type",
                          "dump_id"}
        assert e["dump_id"] == (DUMP_ID if e["event"] != "query" else protocol.NO_DUMP_ID).hex()
        assert e["client"] == "10.0.2.15:20024" and e["status"] == 0 and e["received"] <= e["t"]
    assert [e["seq"] for e in evs] == list(range(0, len(evs)))
    assert evs[2]["offset"] == 68 * KiB and evs[2]["bytes"] == 8704 and evs[2]["type"] == "DATA"
    assert [e["type"] for e in evs[-3:]] == ["DATA", "FLUSH", "FINISH"]


def test_duplicates_are_acknowledged_again_and_not_written_again(image, server):
    path, part, size = image
    guest = Guest(server)
    herald = guest.message(MsgType.HERALD, payload=protocol.HERALD.pack(512, 8704, 32))
    first = guest.one(herald)
    again = guest.one(herald)
    assert again == first and again.room() == (size, 512, 8704, 32)
    data = guest.message(MsgType.DATA, 0, b"A" * 1024)
    assert guest.one(data).status == 0
    before = log_size(path)
    for _ in range(3):  # retransmissions, or the link's duplicates: byte for byte the same
        ack = guest.one(data)
        assert (ack.type, ack.seq, ack.status) == (MsgType.DATA, data.seq, 0)
    flush = guest.message(MsgType.FLUSH)
    assert guest.one(flush).status == 0
    after_flush = log_size(path)
    assert guest.one(flush).status == 0
    assert log_size(path) == after_flush > before
    log = blklog.read(blklog.log_path(path))
    assert [e.is_flush for e in log.entries] == [False, True]
    assert server.counts["duplicate"] == 5
    evs = events(path.parent / netserver.EVENTS_FILE)
    assert [e["event"] for e in evs] == ["herald", "duplicate", "write", "duplicate", "duplicate", "duplicate",
                                         "flush", "duplicate"]


def test_a_refused_message_is_refused_again_when_retransmitted(image, server):
    path, part, size = image
    guest = Guest(server)
    guest.herald()
    bad = guest.message(MsgType.DATA, size, b"\0" * 512)
    assert guest.one(bad).status == Errno.ENOSPC
    assert guest.one(bad).status == Errno.ENOSPC
    evs = events(path.parent / netserver.EVENTS_FILE)[-2:]
    assert [(e["event"], e["type"], e["offset"], e["bytes"], e["status"]) for e in evs] == [
        ("refused", "DATA", size, 512, Errno.ENOSPC), ("duplicate", "DATA", size, 512, Errno.ENOSPC)]


def test_reordered_data_is_fine(image, server):
    path, part, size = image
    guest = Guest(server)
    guest.herald()
    pieces = [(i * 4096, bytes([i]) * 4096) for i in range(20)]
    messages = [guest.message(MsgType.DATA, off, data) for off, data in pieces]
    random.Random(3).shuffle(messages)
    for m in messages:
        ack = guest.one(m)
        assert (ack.seq, ack.status) == (m.seq, 0)
    assert guest.flush().status == 0
    with open(path, "rb") as f:
        f.seek(part)
        assert f.read(20 * 4096) == b"".join(d for _, d in pieces)
    log = blklog.read(blklog.log_path(path))
    assert [e.offset - part for e in log.writes] == [m.offset for m in messages]


def test_flush_with_a_lower_seq_missing_is_eio(image, server):
    path, _, _ = image
    guest = Guest(server)
    guest.herald()
    lost = guest.message(MsgType.DATA, 0, b"x" * 512)  # never arrives
    guest.data(512, b"y" * 512)
    ack = guest.flush()
    assert (ack.type, ack.status) == (MsgType.FLUSH, Errno.EIO)
    assert not any(e.is_flush for e in blklog.read(blklog.log_path(path)).entries)
    # once the missing one came, a new FLUSH is taken
    assert guest.one(lost).status == 0
    assert guest.flush().status == 0


@pytest.mark.parametrize("offset, length, status", [
    ("end", 512, Errno.ENOSPC),  # just past the end
    ("end-512", 1024, Errno.ENOSPC),  # straddles the end
    ("far", 512, Errno.ENOSPC),
    (100, 512, Errno.EINVAL),  # not block-aligned
    (0, 700, Errno.EINVAL),  # not whole blocks
    (0, 0, Errno.EINVAL),  # no block at all
    (0, 8704 + 512, Errno.EINVAL),  # more than max_data
])
def test_data_outside_the_rules_is_refused_and_not_written(image, server, offset, length, status):
    path, part, size = image
    offset = {"end": size, "end-512": size - 512, "far": 1 << 62}.get(offset, offset)
    guest = Guest(server)
    guest.herald()
    ack = guest.data(offset, (b"netdumpd-refused" * 1000)[:length])
    assert (ack.type, ack.status) == (MsgType.DATA, status)
    assert blklog.read(blklog.log_path(path)).entries == []
    with open(path, "rb") as f:
        assert b"netdumpd-refused" not in f.read()
    assert events(path.parent / netserver.EVENTS_FILE)[-1]["event"] == "refused"


def test_max_data_and_window_are_the_smaller_of_the_guests_and_the_servers(tmp_path):
    path, _, size = make_image(tmp_path / "dump.img", block=4096)
    srv = netserver.NetdumpServer(netserver.OneImage(path))  # the link's MTU, 9000: 8192 in 4096-byte blocks
    assert Guest(srv, block=4096, max_data=65536, window=100).herald().room() == (size, 4096, 8192, 64)
    srv.close()
    srv = netserver.NetdumpServer(netserver.OneImage(path))
    assert Guest(srv, block=4096, max_data=12345, window=8).herald().room() == (size, 4096, 8192, 8)
    srv.close()


def test_herald_with_the_wrong_block_size_or_no_room_is_refused(image, server):
    for kwargs in ({"block": 4096}, {"max_data": 100}, {"window": 0}):
        ack = Guest(server, **kwargs).herald()
        assert ack.status == Errno.EINVAL
        assert ack.room()[0] == image[2]  # the room comes along anyway
    assert server.started == 0
    assert Guest(server, max_data=1024).herald().room() == (image[2], 512, 1024, 32)


def test_max_data_is_whole_blocks_after_the_headers():
    assert protocol.max_data_for(9000, 512) == 8704 and protocol.max_data_for(9000, 4096) == 8192
    assert protocol.max_data_for(1500, 512) == 1024
    assert protocol.max_data_for(1500, 4096) == 0  # not one block fits: a HERALD would be refused


@pytest.mark.parametrize("damage", ["crc", "truncated", "magic", "version", "header_bytes", "short", "empty",
                                    "type"])
def test_malformed_datagrams_are_dropped_and_counted(image, server, damage):
    guest = Guest(server)
    guest.herald()
    good = bytearray(protocol.encode(guest.message(MsgType.DATA, 0, b"z" * 512)))
    if damage == "crc":
        good[-1] ^= 1
    elif damage == "truncated":
        good = good[:-100]
    elif damage == "magic":
        good[0:4] = b"XXXX"
    elif damage == "version":
        good[4] = 2
    elif damage == "header_bytes":
        good[7] = 40
    elif damage == "short":
        good = good[:30]
    elif damage == "empty":
        good = b""
    elif damage == "type":
        good[5] = 9
    assert guest.send(bytes(good)) == []
    assert server.counts["malformed"] == 1
    assert blklog.read(blklog.log_path(image[0])).entries == []
    assert [e["event"] for e in events(image[0].parent / netserver.EVENTS_FILE)] == ["herald"]


def test_random_and_mangled_datagrams_never_break_the_server(tmp_path):
    srv = netserver.NetdumpServer(netserver.ImageDir(tmp_path, MiB))
    rng = random.Random(11)
    guest = Guest(srv)
    guest.herald()
    for i in range(3000):
        kind = rng.choice(list(MsgType))
        payload = rng.randbytes(rng.choice([0, 12, 512, 1024, 8704]))
        m = Message(kind, rng.random() < 0.1, rng.choice([0, 1, 2, i, rng.getrandbits(32)]),
                    rng.choice([DUMP_ID, OTHER_ID, bytes(16)]), rng.choice([0, 512, 4096, rng.getrandbits(64)]),
                    rng.choice([0, 5]), payload)
        data = bytearray(protocol.encode(m))
        if rng.random() < 0.3:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        for reply in srv.handle(bytes(data), rng.choice([GUEST, ("10.0.2.16", 1)])):
            assert protocol.decode(reply).ack
    srv.close()
    assert srv.counts["malformed"] > 0 and srv.counts["ignored"] > 0
    assert blklog.read(tmp_path / f"10.0.2.15-{DUMP_ID.hex()}.writes").cut_short == ""


def test_messages_of_another_dump_id_are_ignored(image, server):
    guest = Guest(server)
    guest.herald()
    stranger = Guest(server, dump_id=OTHER_ID)
    stranger.next_seq = 2
    assert stranger.send(stranger.message(MsgType.DATA, 0, b"s" * 512)) == []
    assert stranger.send(stranger.message(MsgType.FLUSH)) == []
    # and the image takes one dump: another HERALD is ignored too
    stranger.next_seq = 1
    assert stranger.send(stranger.message(MsgType.HERALD, payload=protocol.HERALD.pack(512, 8704, 32))) == []
    # ACKs are not the guest's to send
    assert guest.send(protocol.ack(guest.message(MsgType.DATA, 0, b""))) == []
    assert blklog.read(blklog.log_path(image[0])).entries == []
    assert [e["event"] for e in events(image[0].parent / netserver.EVENTS_FILE)] == ["herald"] + ["ignored"] * 4
    assert server.counts["ignored"] == 4


def test_with_a_dump_id_only_that_dump_takes_the_image(image):
    srv = netserver.NetdumpServer(netserver.OneImage(image[0], dump_id=DUMP_ID))
    assert Guest(srv, dump_id=OTHER_ID).send(
        Guest(srv, dump_id=OTHER_ID).message(MsgType.HERALD, payload=protocol.HERALD.pack(512, 8704, 32))) == []
    assert Guest(srv).herald().status == 0
    srv.close()


def test_after_finish_data_is_estale(image, server):
    guest = Guest(server)
    guest.herald()
    early = guest.message(MsgType.DATA, 0, b"e" * 512)
    assert guest.one(early).status == 0
    finish = guest.message(MsgType.FINISH)
    assert guest.one(finish).status == 0
    size = log_size(image[0])
    assert guest.data(512, b"l" * 512).status == Errno.ESTALE
    assert guest.flush().status == Errno.ESTALE
    assert guest.one(early).status == 0  # a duplicate from before is answered as it was
    assert guest.one(finish).status == 0
    assert log_size(image[0]) == size


def test_standalone_creates_an_image_per_dump_that_find_dump_partition_finds(tmp_path):
    images = netserver.ImageDir(tmp_path / "dumps", 8 * MiB)
    srv = netserver.NetdumpServer(images)
    srv.start()
    guest = Guest(srv)
    assert guest.query().room() == (8 * MiB, 512, 8704, 64)
    assert guest.herald().room() == (8 * MiB, 512, 8704, 32)
    path = tmp_path / "dumps" / f"10.0.2.15-{DUMP_ID.hex()}.img"
    assert gpt.find_dump_partition(path) == (MiB, 8 * MiB, 512)
    assert path.stat().st_blocks * 512 < path.stat().st_size  # sparse
    guest.write(8 * MiB - 8704, b"\x5a" * 8704)  # the partition's last bytes
    assert guest.data(8 * MiB, b"\0" * 512).status == Errno.ENOSPC
    assert guest.finish().status == 0
    other = Guest(srv, dump_id=OTHER_ID)  # another dump of the same client: another image
    assert other.herald().status == 0
    srv.close()
    with open(path, "rb") as f:
        f.seek(MiB + 8 * MiB - 8704)
        assert f.read(8704) == b"\x5a" * 8704
    assert gpt.parse(path).dump_partition().name == "dumpbed-dump"  # the GPT is intact after the dump
    assert blklog.read(path.with_suffix(".writes")).writes[0].offset == MiB + 8 * MiB - 8704
    assert (tmp_path / "dumps" / f"10.0.2.15-{OTHER_ID.hex()}.img").exists()
    assert (tmp_path / "dumps" / netserver.EVENTS_FILE).exists()
    # an image that already exists (the server restarted) is never clobbered
    srv = netserver.NetdumpServer(netserver.ImageDir(tmp_path / "dumps", 8 * MiB))
    assert Guest(srv).herald().status == Errno.EEXIST
    srv.close()


def test_max_dumps_refuses_more_dumps_and_says_when_done(tmp_path):
    srv = netserver.NetdumpServer(netserver.ImageDir(tmp_path, MiB), max_dumps=1)
    guest = Guest(srv)
    guest.herald()
    assert Guest(srv, dump_id=OTHER_ID).herald().status == Errno.EBUSY
    assert not srv.done
    guest.finish()
    assert srv.done
    srv.close()


def test_a_64_mib_dump_keeps_memory_bounded(tmp_path):
    size = 64 * MiB
    srv = netserver.NetdumpServer(netserver.ImageDir(tmp_path, size))
    guest = Guest(srv, max_data=8192)
    guest.herald()
    piece = bytes(range(256)) * 32  # 8 KiB

    def send(start: int, end: int) -> None:
        for offset in range(start, end, len(piece)):
            assert guest.data(offset, piece).status == 0

    send(0, MiB)  # warm up (files, caches)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        send(MiB, size)
        assert guest.flush().status == 0
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert now - base < 256 * KiB, now - base
    assert peak - base < 1 * MiB, peak - base  # 63 MiB went through: nothing of it stayed
    dump = next(iter(srv.dumps.values()))
    assert dump.bytes == size and not dump.above and dump.low == dump.writes + 3
    srv.close()
    assert blklog.read(tmp_path / f"10.0.2.15-{DUMP_ID.hex()}.writes").entries[-1].is_flush


def test_seqs_far_ahead_of_the_window_are_refused(image, server):
    guest = Guest(server)
    guest.herald()
    ack = guest.one(guest.message(MsgType.DATA, 0, b"f" * 512, seq=2 + netserver.SEQ_SPAN))
    assert ack.status == Errno.EINVAL
    assert guest.one(guest.message(MsgType.DATA, 0, b"f" * 512, seq=1)).status == Errno.EINVAL


# -- the command ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--image", "missing.img"], "no such image"),
    (["--image", "plain.img"], "no GPT"),
    (["--image", "dump.img", "--size", "1G"], "--size goes with --dir"),
    (["--image", "dump.img", "--dump-id", "xyz"], "not a dump id"),
    (["--dir", "out", "--dump-id", "00" * 16], "--dump-id goes with --image"),
    (["--dir", "out", "--size", "lots"], "--size lots: not a size"),
    (["--dir", "out", "--size", "1000"], "not a positive multiple"),
    (["--dir", "out", "--listen", "localhost"], "not HOST:PORT"),
    (["--dir", "out", "--max-dumps", "0"], "at least 1"),
    (["--dir", "out", "--log", "nowhere/events.jsonl"], "not a file in an existing directory"),
    (["--image", "dump.img", "--dir", "out"], "not allowed with argument"),
    (["--dir", "out", "--listen", ":0", "--listen-fd", "3"], "not allowed with argument"),
    (["--dir", "out", "--listen-fd", "987"], "--listen-fd 987: not an open socket"),
    ([], "one of the arguments --image --dir is required"),
])
def test_bad_options_are_one_line_errors_before_anything_is_written(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "dump.img")
    (tmp_path / "plain.img").write_bytes(bytes(MiB))
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        status = cli.main(["netdumpd", *args])
    except SystemExit as exc:  # argparse's own
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("dumpbed: error:") and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_port_in_use_is_an_error(tmp_path, capsys):
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        status = cli.main(["netdumpd", "--dir", str(tmp_path / "out"), "--listen",
                           f"127.0.0.1:{taken.getsockname()[1]}"])
    finally:
        taken.close()
    assert status == 2
    assert "dumpbed: error: --listen" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_netdumpd_on_a_socket_its_parent_bound_syncs_an_unfinished_dump_at_sigterm(tmp_path):
    """As the harness runs it: the socket bound here, handed over with --listen-fd."""
    sock = netserver.bind("127.0.0.1", 0)
    address = sock.getsockname()
    env = dict(os.environ, PYTHONPATH=str(Path(cli.__file__).resolve().parents[1]))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "dumpbed.cli", "netdumpd", "--listen-fd", str(sock.fileno()),
                                 "--dir", str(tmp_path), "--size", "1M"], pass_fds=(sock.fileno(),),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    finally:
        sock.close()  # the server's copy is the one
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as guest:
            guest.settimeout(20)  # sent before the server runs: the datagram waits in its socket
            for m in (Message(MsgType.HERALD, False, 1, DUMP_ID, payload=protocol.HERALD.pack(512, 8704, 32)),
                      Message(MsgType.DATA, False, 2, DUMP_ID, 0, payload=b"t" * 1024)):
                guest.sendto(protocol.encode(m), address)
                reply = protocol.decode(guest.recv(65536))
                assert (reply.type, reply.seq, reply.status) == (m.type, m.seq, 0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"listening on 127.0.0.1:{address[1]}" in err and "stopped (SIGTERM)" in err, err
    assert "unfinished: 1 writes" in out, out
    log = blklog.read(tmp_path / f"127.0.0.1-{DUMP_ID.hex()}.writes")  # unfinished: synced at the stop
    assert [e.is_flush for e in log.entries] == [False, True] and log.superblock_entries == 2
    assert [e["event"] for e in events(tmp_path / netserver.EVENTS_FILE)] == ["herald", "write"]


def test_netdumpd_serves_a_dump_over_udp_and_stops_on_sigterm(tmp_path):
    path, part, size = make_image(tmp_path / "dump.img")
    port = free_port(socket.SOCK_DGRAM)
    env = dict(os.environ, PYTHONPATH=str(Path(cli.__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "dumpbed.cli", "netdumpd", "--listen", f"127.0.0.1:{port}",
                             "--image", str(path), "--dump-id", DUMP_ID.hex()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    try:
        def ask(m: Message) -> Message:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # retransmitted until the server is up and answers
                sock.sendto(protocol.encode(m), ("127.0.0.1", port))
                try:
                    reply = protocol.decode(sock.recv(65536))
                except socket.timeout:
                    assert proc.poll() is None, proc.communicate()
                    continue
                assert (reply.type, reply.seq, reply.ack) == (m.type, m.seq, True)
                return reply
            raise AssertionError("no answer from netdumpd")

        assert ask(Message(MsgType.QUERY, False, 0, protocol.NO_DUMP_ID)).room() == (size, 512, 8704, 64)
        assert ask(Message(MsgType.HERALD, False, 1, DUMP_ID, payload=protocol.HERALD.pack(512, 8704, 32))).status == 0
        payload = random.Random(5).randbytes(8704)
        assert ask(Message(MsgType.DATA, False, 2, DUMP_ID, 4096, payload=payload)).status == 0
        assert ask(Message(MsgType.FLUSH, False, 3, DUMP_ID)).status == 0
        assert ask(Message(MsgType.FINISH, False, 4, DUMP_ID)).status == 0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and "started" in lines[0] and "finished: 1 writes" in lines[1], out
    assert f"listening on 127.0.0.1:{port}" in err and "stopped (SIGTERM)" in err, err
    with open(path, "rb") as f:
        f.seek(part + 4096)
        assert f.read(8704) == payload
    log = blklog.read(path.with_suffix(".writes"))
    assert [e.is_flush for e in log.entries] == [False, True, True]
    assert [e["event"] for e in events(tmp_path / netserver.EVENTS_FILE)] == ["query", "herald", "write", "flush",
                                                                             "finish"]
    # nothing left behind: the port is free again, no stray files
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.img", "dump.writes", "netdumpd.jsonl"]


KILLED_MID_WRITE = """
import os, sys
from dumpbed.capture import blklog
from dumpbed.net import server as netserver

image, log = sys.argv[1], sys.argv[2]
target = netserver.Target(image, 0, 1 << 20, 512, blklog.WriteLogWriter(log))
write_entry = target.log.write

def killed_first(offset, data):  # the kill arrives between the image write and its log entry
    os.kill(os.getpid(), netserver.KILL_SIGNAL)
    write_entry(offset, data)

target.log.write = killed_first
target.write(4096, b"\\xa5" * 512)
print("survived")
"""


def test_a_server_killed_between_an_image_write_and_its_log_entry_dies_after_the_entry(tmp_path):
    """server-kill's signal is held off while the server writes the image and logs it: the kill
    lands after both, so the write log still explains the image."""
    image, log = tmp_path / "disk.img", tmp_path / "disk.img.writes"
    image.write_bytes(bytes(1 << 20))
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(image), str(log)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -netserver.KILL_SIGNAL, proc.stderr  # killed, at the signal's default action
    assert "survived" not in proc.stdout
    assert image.read_bytes()[4096:4608] == b"\xa5" * 512
    (entry,) = blklog.read(log).writes  # the entry was written before the kill ended the process
    assert (entry.offset, entry.length) == (4096, 512)
