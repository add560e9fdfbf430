"""The device's write log: every write and flush the dump disk's backend received, with its data.

QEMU's `blklogwrites` block driver sits between the dump disk's format node and its image file
(harness/dumpbed/images/topology.py) and appends each request to a log file once the request has completed on
the file, in the format of Linux's dm-log-writes:

    sector 0            superblock: u64 magic 0x6a736677736872, u64 version 1, u64 nr_entries,
                        u32 sector size (512 here); the rest of the sector zero
    from sector 1       one entry per request: a sector holding u64 sector, u64 nr_sectors,
                        u64 flags (1 FLUSH, 2 FUA, 4 DISCARD, 8 MARK), u64 data_len, zeros;
                        then nr_sectors sectors of data (none for a discard or a flush)

Entries are in completion order (the file write first, then the log write), `sector` and
`nr_sectors` in log sectors of the whole disk. QEMU rewrites the superblock's nr_entries only on
a flush and every few thousand entries, so a QEMU that was killed leaves entries past it: the
reader walks entries until the end of the file and ignores nr_entries, stopping at the first
entry that cannot be one (unknown flags, data past the end of the file: the last log write was
cut short).

A flush is logged only when there is something to flush: QEMU's block layer skips a flush that
follows no write (`bdrv_co_flush`: flushed_gen == write_gen). So the device's own command log
(harness/dumpbed/capture/cmdlog.py) is the record of every flush the guest asked for; this log is the record of
what reached the disk, and in which order.

Pure: reads files, no QEMU. Data stays on disk: an entry knows where its bytes are in the log.
WriteLogWriter writes the same format (the dump server's log of its pwrites, net/server.py).
"""
from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from dumpbed.errors import DumpbedError

MAGIC = 0x6A736677736872
VERSION = 1
FLAG_FLUSH, FLAG_FUA, FLAG_DISCARD, FLAG_MARK = 1, 2, 4, 8
_KNOWN_FLAGS = FLAG_FLUSH | FLAG_FUA | FLAG_DISCARD | FLAG_MARK
_SUPER = struct.Struct("<QQQI")  # magic, version, nr_entries, sector size
_ENTRY = struct.Struct("<QQQQ")  # sector, nr_sectors, flags, data_len
LOG_SUFFIX = ".writes"  # dump.img -> dump.writes
SECTOR_SIZE = 512  # the log sector size the harness gives blklogwrites (log-sector-size)


@dataclass(frozen=True)
class Entry:
    index: int  # position in the log, 0-based
    offset: int  # byte offset on the disk
    length: int  # bytes (0 for a flush)
    flags: int
    data_at: int  # byte offset of the data in the log file

    @property
    def is_flush(self) -> bool:
        return bool(self.flags & FLAG_FLUSH)

    @property
    def is_write(self) -> bool:
        return not self.flags & (FLAG_FLUSH | FLAG_DISCARD | FLAG_MARK)

    @property
    def end(self) -> int:
        return self.offset + self.length

    def describe(self) -> str:
        if self.is_flush:
            return f"flush (log entry {self.index})"
        return f"write of {self.length} bytes at disk offset 0x{self.offset:x} (log entry {self.index})"


@dataclass
class WriteLog:
    path: Path
    sector_size: int
    entries: list[Entry]
    superblock_entries: int  # what the superblock says (may lag: see above)
    cut_short: str = ""  # why the walk stopped before the end of the file, if it did

    @property
    def writes(self) -> list[Entry]:
        return [e for e in self.entries if e.is_write]

    def data(self, entry: Entry, start: int = 0, length: int | None = None) -> bytes:
        """Bytes [start, start+length) of a write's data (all of it by default)."""
        length = entry.length - start if length is None else length
        if start < 0 or length < 0 or start + length > entry.length:
            raise ValueError(f"bytes {start}..{start + length} of a {entry.length}-byte write")
        with open(self.path, "rb") as f:
            return os.pread(f.fileno(), length, entry.data_at + start)

    def opener(self) -> "LogData":
        return LogData(self)


class LogData:
    """An open log for many reads (the consistency sweep reads thousands of pieces)."""

    def __init__(self, log: WriteLog):
        self.log = log
        self._file = open(log.path, "rb")

    def read(self, entry: Entry, start: int, length: int) -> bytes:
        """Bytes [start, start+length) of an entry's data."""
        return self.read_at(entry.data_at + start, length)

    def read_at(self, position: int, length: int) -> bytes:
        """`length` bytes at a position of the log file (within an entry's data)."""
        data = os.pread(self._file.fileno(), length, position)
        if len(data) != length:
            raise DumpbedError(f"{self.log.path}: {length} bytes at log offset {position} run past its end")
        return data

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "LogData":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def log_path(image: Path) -> Path:
    """Where the write log of a disk image lives (dump.img -> dump.writes)."""
    image = Path(image)
    return image.with_suffix(LOG_SUFFIX)


def read(path: str | Path) -> WriteLog:
    """Parse a write log; a DumpbedError if the file is not one."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(_SUPER.size)
    except OSError as exc:
        raise DumpbedError(f"{path}: cannot read the write log: {exc.strerror or exc}") from None
    if len(head) < _SUPER.size:
        head = bytes(_SUPER.size)  # empty: QEMU never wrote to the disk
    magic, version, nr_entries, sector_size = _SUPER.unpack(head)
    if (magic, version, nr_entries, sector_size) == (0, 0, 0, 0):
        # QEMU writes the superblock at the first flush: a log whose QEMU died before one has
        # none yet, but its entries are there, in the sector size the harness set.
        sector_size = SECTOR_SIZE
    elif magic != MAGIC or version != VERSION:
        raise DumpbedError(f"{path}: not a write log (magic 0x{magic:x}, version {version})")
    if sector_size < _ENTRY.size or sector_size & (sector_size - 1) or sector_size > 1 << 20:
        raise DumpbedError(f"{path}: write log sector size {sector_size} is not a power of two >= 32")
    entries: list[Entry] = []
    cut = ""
    at = sector_size
    with open(path, "rb") as f:
        fd = f.fileno()
        while at + _ENTRY.size <= size:
            sector, nr_sectors, flags, _data_len = _ENTRY.unpack(os.pread(fd, _ENTRY.size, at))
            data_bytes = 0 if flags & (FLAG_DISCARD | FLAG_FLUSH) else nr_sectors * sector_size
            if flags & ~_KNOWN_FLAGS:
                cut = f"entry {len(entries)} at log offset {at} has unknown flags 0x{flags:x}"
                break
            if at + sector_size + data_bytes > size:
                cut = f"entry {len(entries)} at log offset {at} runs past the end of the log (a write cut short)"
                break
            if flags == 0 and nr_sectors == 0 and sector == 0:
                break  # zeros: the end of what was written (a preallocated or sparse tail)
            entries.append(Entry(len(entries), sector * sector_size, nr_sectors * sector_size
                                 if not flags & FLAG_FLUSH else 0, flags, at + sector_size))
            at += sector_size + data_bytes
    return WriteLog(path, sector_size, entries, nr_entries, cut)


def pwrite_all(fd: int, parts, offset: int) -> None:
    """Write the buffers `parts` one after another at `offset` (os.pwritev, again after a short
    write); an OSError if the file takes nothing."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        done = os.pwritev(fd, views, offset)
        if done <= 0:
            raise OSError(errno.EIO, "short write")
        offset += done
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if done:
            views[0] = views[0][done:]


class WriteLogWriter:
    """Appends writes and flushes to a write log as QEMU's blklogwrites does: a superblock in
    log sector 0, then per write a sector (sector, nr_sectors, flags 0, data_len 0) and its data,
    per flush a sector with flags FLUSH; sectors and sizes in SECTOR_SIZE log sectors of the
    whole disk. The superblock's entry count is rewritten at each flush and at close."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.sector = SECTOR_SIZE
        self.entries = 0
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self._at = self.sector
        self._superblock()

    def _superblock(self) -> None:
        pwrite_all(self._fd, [_SUPER.pack(MAGIC, VERSION, self.entries, self.sector).ljust(self.sector, b"\0")], 0)

    def _entry(self, sector: int, nr_sectors: int, flags: int) -> bytes:
        return _ENTRY.pack(sector, nr_sectors, flags, 0).ljust(self.sector, b"\0")

    def write(self, disk_offset: int, data) -> None:
        if disk_offset % self.sector or len(data) % self.sector:
            raise ValueError(f"a write of {len(data)} bytes at {disk_offset} is not whole log sectors")
        pwrite_all(self._fd, [self._entry(disk_offset // self.sector, len(data) // self.sector, 0), data], self._at)
        self._at += self.sector + len(data)
        self.entries += 1

    def flush(self) -> None:
        pwrite_all(self._fd, [self._entry(0, 0, FLAG_FLUSH)], self._at)
        self._at += self.sector
        self.entries += 1
        self._superblock()

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self._superblock()
            os.fdatasync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
