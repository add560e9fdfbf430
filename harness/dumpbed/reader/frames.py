"""The frames of a compressed area (docs/dump-format.md, "Compressed bodies"): the one place of
their rules and of their decoding.

An area's data is cut into frames of 65536 bytes (the last one holds the rest); each is a
16-byte header {kind, raw_bytes, payload_bytes, raw_crc} and its payload (one LZ4 block, or the
data itself), stored back to back from the area's disk_offset. walk() reads the frame headers of
one area and checks their kinds and sizes against the area's length and stored_bytes, decoding
every frame too when asked (decode_into: the payload must decode to exactly raw_bytes bytes whose
CRC32C is raw_crc). It never raises on what the bytes say: the first broken rule is the index's
`problem`, and the frames before it stay usable (an index of a partial area's whole frames).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Optional

import cramjam
import google_crc32c

from dumpbed.errors import DumpbedError
from dumpbed.units import PAGE

FRAME_DATA = 65536  # data bytes of every frame but an area's last
FRAME_HEADER = 16
KIND_LZ4, KIND_RAW = 1, 2
KIND_NAMES = {KIND_LZ4: "LZ4", KIND_RAW: "RAW"}
_HEADER = struct.Struct("<IIII")
_STEP = 2 << 20  # stored bytes read at a time (the frames checked while they are in the caches)

Read = Callable[[int, int], Optional[bytes]]  # partition offset, length -> bytes, None past the end


class AreaDataError(DumpbedError):
    """An area's data cannot be read back: a frame that breaks a rule, or the image ends."""


@dataclass(frozen=True)
class Frame:
    offset: int  # partition offset of its header
    kind: int
    raw_bytes: int
    payload_bytes: int
    raw_crc: int

    @property
    def end(self) -> int:
        return self.offset + FRAME_HEADER + self.payload_bytes


@dataclass
class FrameIndex:
    """The frames of one area that follow the rules, in order: frame k holds the data's bytes
    [65536 k, 65536 k + raw_bytes). `problem` names the first rule broken (None: none)."""

    label: str  # "area 5 (ram-high)": what the messages name
    checked: bool = False  # every frame decoded to its raw_crc when walked (walk's `decode`)
    frames: list[Frame] = field(default_factory=list)
    problem: Optional[str] = None
    problem_offset: Optional[int] = None

    @property
    def data_bytes(self) -> int:
        """Data bytes the usable frames hold, from the area's start."""
        return sum(f.raw_bytes for f in self.frames)


def frame_count(length: int) -> int:
    return -(-length // FRAME_DATA)


def expected_raw(length: int, k: int) -> int:
    """raw_bytes of frame k of an area of `length` data bytes."""
    return min(FRAME_DATA, length - k * FRAME_DATA)


def header_problem(kind: int, raw_bytes: int, payload_bytes: int, want_raw: int) -> Optional[str]:
    """The frame header's own rules: its kind, its raw_bytes where it stands, its payload size."""
    if kind not in KIND_NAMES:
        return f"kind {kind} (1 LZ4, 2 RAW)"
    if raw_bytes != want_raw:
        return (f"raw_bytes {raw_bytes}, expected {want_raw} (65536, the area's last frame the rest of its "
                f"length)")
    if kind == KIND_RAW and payload_bytes != raw_bytes:
        return f"RAW with payload_bytes {payload_bytes} != raw_bytes {raw_bytes}"
    if kind == KIND_LZ4 and not 1 <= payload_bytes < raw_bytes:
        return f"LZ4 with payload_bytes {payload_bytes} (1..raw_bytes - 1 = {raw_bytes - 1}: else it is stored RAW)"
    return None


def decode_into(frame: Frame, payload, out=None, check_crc: bool = True) -> Optional[str]:
    """Decode one frame's payload into `out` (a writable buffer of exactly raw_bytes; None: a RAW
    frame only checked, not copied anywhere); the problem, or None when it decodes, using the
    whole payload, to raw_bytes bytes of raw_crc (the CRC not computed again with `check_crc`
    False: a frame a walk found of its raw_crc already)."""
    if frame.kind == KIND_RAW:
        if not check_crc:
            if out is not None:
                out[:] = payload
            return None
        data = bytes(payload)  # (the CRC takes bytes only: the one copy, from which `out` is filled)
        if out is not None:
            out[:] = data
    else:
        if out is None:
            out = bytearray(frame.raw_bytes)
        try:
            n = cramjam.lz4.decompress_block_into(payload, out)
        except cramjam.DecompressionError as e:
            return f"LZ4 payload does not decode ({e})"
        if n != frame.raw_bytes:
            return f"LZ4 payload decodes to {n} bytes, raw_bytes says {frame.raw_bytes}"
        if not check_crc:
            return None
        data = bytes(out)
    crc = google_crc32c.value(data)
    if crc != frame.raw_crc:
        return f"data CRC32C 0x{crc:08x}, raw_crc says 0x{frame.raw_crc:08x}"
    return None


class _Stored:
    """Sequential reads of an area's stored bytes, a few MiB at a time."""

    def __init__(self, read: Read, start: int, end: int):
        self.read, self.start, self.end = read, start, end
        self.buf, self.buf_at = b"", start

    def take(self, at: int, n: int) -> Optional[memoryview]:
        """Bytes [at, at+n) (at never before the last take's start); None past the stored
        bytes or the image."""
        if at + n > self.end:
            return None
        if not (self.buf_at <= at and at + n <= self.buf_at + len(self.buf)):
            size = min(max(n, _STEP), self.end - at)
            data = self.read(at, size)
            if data is None:
                return None
            self.buf, self.buf_at = data, at
        return memoryview(self.buf)[at - self.buf_at:at - self.buf_at + n]


FRAMES_KEPT = 1 << 18  # frames a DecodedStore keeps at most (16 GiB of data, some 100 MB of entries)
RUNS_KEPT = 1 << 12


class DecodedStore:
    """The frames that decoded, kept for reads to come (Decoded), and the runs of them walks
    took. One validation has one: the frames its plain read of the image decoded serve the reads
    of the disk's states the consistency sweep makes later from the same bytes, each frame keyed
    by the CRCs of the chunks that hold it. Bounded: a store that reaches its limit starts over."""

    def __init__(self):
        self.frames: dict = {}
        self.runs: dict = {}

    def take(self, other: "DecodedStore") -> None:
        """Keep the frames and runs another store kept too (the validation's, sent to its sweep)."""
        self.frames.update(other.frames)
        self.runs.update(other.runs)


class Decoded:
    """Frames that decoded, by their partition offset, each with what its bytes were then (the
    CRCs of the chunks that hold it, `span(start, end)`, the chunks' place and size with them):
    one found again in the same bytes is neither read nor decoded again (the consistency oracle
    reads an area growing through many states of the disk). And, by the offset of its first
    frame, the run of whole frames the last walk from there took, with the CRCs of the chunks
    holding the whole run: the next walk takes it at once while those bytes are the same,
    rather than a frame at a time (an area growing through hundreds of states, each walk would
    otherwise look up every frame it had before). Both are kept in `kept`. With `look` False,
    frames are only left there for reads to come (a read that decodes every frame itself)."""

    def __init__(self, kept: DecodedStore, span: Callable[[int, int], Optional[tuple]], look: bool = True):
        self.store, self.runs, self.span = kept.frames, kept.runs, span
        self.look = look

    def known(self, at: int) -> Optional[Frame]:
        hit = self.store.get(at) if self.look else None
        if hit is None:
            return None
        frame, then = hit
        return frame if self.span(frame.offset, frame.end) == then else None

    def add(self, frame: Frame) -> None:
        now = self.span(frame.offset, frame.end)
        if now is not None:
            if len(self.store) >= FRAMES_KEPT:
                self.store.clear()
            self.store[frame.offset] = (frame, now)

    def known_run(self, at: int) -> tuple:
        """The frames of 65536 data bytes the last walk from `at` took, back to back from `at`,
        if the chunks that hold them all still have the CRCs they had; else none."""
        hit = self.runs.get(at) if self.look else None
        if hit is None:
            return ()
        run, then = hit
        return run if self.span(at, run[-1].end) == then else ()

    def add_run(self, frames: list[Frame]) -> None:
        """The frames a walk took from its start (each decoded, now or before): their leading
        frames of 65536 data bytes, kept as one run (one per start offset: the last walk's)."""
        whole = len(frames)
        while whole and frames[whole - 1].raw_bytes != FRAME_DATA:
            whole -= 1
        if not whole:
            return
        now = self.span(frames[0].offset, frames[whole - 1].end)
        if now is not None:
            if len(self.runs) >= RUNS_KEPT:
                self.runs.clear()
            self.runs[frames[0].offset] = (tuple(frames[:whole]), now)


def _run_taken(run: tuple, count: int, stored_end: int) -> int:
    """How many frames of a known run (frames of 65536 data bytes from the area's start) an area
    of `count` frames ending at stored_end takes as they are: never its last frame (its raw_bytes
    is the rest of the length: checked as any frame is), only frames inside stored_bytes."""
    m = min(len(run), count - 1)
    while m and run[m - 1].end > stored_end:  # (an area shorter than when the run was taken)
        m -= 1
    return m


def walk(read: Read, label: str, disk_offset: int, length: int, stored_bytes: int, may_be_cut: bool,
         decode: bool, decoded: Optional[Decoded] = None) -> FrameIndex:
    """The frames of an area: exactly the frames its `length` needs, in exactly stored_bytes;
    or, for an area that may be cut (a partial area: the PARTIAL component's last area of a
    dump not COMPLETE), the frames wholly inside stored_bytes, `length` their data (a multiple
    of 65536) and stored_bytes a page multiple, the bytes after them not decoded. With
    `decoded`, a frame that decoded before from the same bytes is taken as it was (and the
    run of them the last walk from disk_offset took, at once)."""
    fi = FrameIndex(label, checked=decode)
    stored = _Stored(read, disk_offset, disk_offset + stored_bytes)
    at = disk_offset
    count = frame_count(length)
    cached = decode and decoded is not None
    first = 0
    if cached and count > 1:
        run = decoded.known_run(at)
        first = _run_taken(run, count, disk_offset + stored_bytes) if run else 0
        if first:
            fi.frames.extend(run[:first])
            at = run[first - 1].end
    scratch = None  # an LZ4 frame's data, checked and dropped: one buffer for all
    for k in range(first, count):
        frame = decoded.known(at) if cached else None
        if frame is None:
            raw = stored.take(at, FRAME_HEADER)
            if raw is None:
                return _fail(fi, k, at, f"its header lies past stored_bytes {stored_bytes} (or the image)")
            frame = Frame(at, *_HEADER.unpack(raw))
            fresh = True
        else:
            fresh = False
        problem = header_problem(frame.kind, frame.raw_bytes, frame.payload_bytes, expected_raw(length, k))
        if problem:
            return _fail(fi, k, at, problem)
        if frame.end > disk_offset + stored_bytes:
            return _fail(fi, k, at, f"ends at 0x{frame.end:x}, past the area's stored_bytes {stored_bytes} "
                                    f"(to 0x{disk_offset + stored_bytes:x})")
        if fresh:
            payload = stored.take(at + FRAME_HEADER, frame.payload_bytes)
            if payload is None:
                return _fail(fi, k, at, f"ends at 0x{frame.end:x}, past the image")
            if decode:
                out = None
                if frame.kind != KIND_RAW:
                    scratch = scratch if scratch is not None else bytearray(FRAME_DATA)
                    out = memoryview(scratch)[:frame.raw_bytes]
                problem = decode_into(frame, payload, out)
                if problem:
                    return _fail(fi, k, at, problem)
                if decoded is not None:
                    decoded.add(frame)
        fi.frames.append(frame)
        at = frame.end
    if cached:
        decoded.add_run(fi.frames)
    used = at - disk_offset
    if used != stored_bytes:
        problem = _cut_problem(stored, at, length, stored_bytes) if may_be_cut else \
            f"its {len(fi.frames)} frames take {used} bytes, stored_bytes says {stored_bytes}"
        if problem:
            fi.problem, fi.problem_offset = problem, at
    return fi


def _cut_problem(stored: _Stored, at: int, length: int, stored_bytes: int) -> Optional[str]:
    """A partial area's bytes after its whole frames: the start of the next frame, never a whole one."""
    if length % FRAME_DATA or stored_bytes % PAGE:
        return (f"its frames take {at - stored.start} bytes of stored_bytes {stored_bytes}: a partial area has "
                f"length a multiple of 65536 (it is {length}) and stored_bytes a page multiple")
    raw = stored.take(at, FRAME_HEADER)
    if raw is not None:
        kind, raw_bytes, payload_bytes, _ = _HEADER.unpack(raw)
        if kind in KIND_NAMES and at + FRAME_HEADER + payload_bytes <= stored.end:
            return (f"a whole frame follows its {length // FRAME_DATA} frames within stored_bytes {stored_bytes}, "
                    f"but length {length} leaves it out")
    return None


def _fail(fi: FrameIndex, k: int, at: int, problem: str) -> FrameIndex:
    fi.problem, fi.problem_offset = f"frame {k} at partition offset 0x{at:x}: {problem}", at
    return fi


def decode_range(read: Read, fi: FrameIndex, first: int, last: int, cached: Optional[tuple[int, bytes]] = None,
                 out=None) -> memoryview:
    """The data of frames first..last (inclusive) of an index, from one read of their stored
    bytes, decoded into `out` when given (a writable buffer of at least their data bytes: a
    caller that reads a GiB a step at a time reuses one), else into a new buffer; a view of
    exactly their data. `cached` (k, data): frame k decoded before, not read again when it is
    the first. AreaDataError when a frame breaks a rule or the image ends."""
    frames = fi.frames[first:last + 1]
    total = sum(f.raw_bytes for f in frames)
    buf = memoryview(out)[:total] if out is not None else memoryview(bytearray(total))
    if len(buf) != total:
        raise ValueError(f"decode_range: {len(buf)} bytes of buffer for {total} bytes of data")
    pos = 0
    if cached is not None and cached[0] == first:
        buf[:len(cached[1])] = cached[1]
        pos, frames, first = len(cached[1]), frames[1:], first + 1
    if not frames:
        return buf
    start, end = frames[0].offset, frames[-1].end
    stored = read(start, end - start)
    if stored is None:
        raise AreaDataError(f"{fi.label}: its frames at partition offset 0x{start:x} lie past the image")
    view = memoryview(stored)
    for k, f in enumerate(frames, first):
        payload = view[f.offset + FRAME_HEADER - start:f.end - start]
        problem = decode_into(f, payload, buf[pos:pos + f.raw_bytes], check_crc=not fi.checked)
        if problem:
            raise AreaDataError(f"{fi.label}: frame {k} at partition offset 0x{f.offset:x}: {problem}")
        pos += f.raw_bytes
    return buf
