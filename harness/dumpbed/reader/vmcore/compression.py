"""The per-page compressors of makedumpfile's kdump-compressed format, through their
libraries: zlib (the standard library), LZO (lzallright: LZO1X, what makedumpfile's
lzo1x_1_compress writes), snappy and zstd (cramjam). A library that is missing makes its pages
unreadable with a clear reason, never an ImportError at import time.

decompress() returns exactly `page_size` bytes or raises PageDataError: a page's compressed
data is hostile input, and the output is bounded (never more than page_size is produced).
"""
from __future__ import annotations

import zlib

DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8
DUMP_DH_EXCLUDED_VMEMMAP = 0x10
DUMP_DH_COMPRESSED_ZSTD = 0x20
COMPRESSION_MASK = DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO | DUMP_DH_COMPRESSED_SNAPPY \
    | DUMP_DH_COMPRESSED_ZSTD
NAMES = {0: "none", DUMP_DH_COMPRESSED_ZLIB: "zlib", DUMP_DH_COMPRESSED_LZO: "lzo",
         DUMP_DH_COMPRESSED_SNAPPY: "snappy", DUMP_DH_COMPRESSED_ZSTD: "zstd"}


class PageDataError(Exception):
    """A page's data does not decompress to one page."""


def _zlib(data: bytes, page_size: int) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, page_size)
    except zlib.error as e:
        raise PageDataError(f"zlib: {e}") from None
    if not d.eof:
        raise PageDataError("zlib: the stream does not end within one page" if d.unconsumed_tail
                            else "zlib: the stream is cut short")
    return out


def _lzo(data: bytes, page_size: int) -> bytes:
    try:
        from lzallright import LZOCompressor, LZOError
    except ImportError:
        raise PageDataError("lzo: the lzallright library is not installed") from None
    try:
        return LZOCompressor.decompress(data, output_size_hint=page_size)
    except (LZOError, ValueError, OverflowError) as e:
        raise PageDataError(f"lzo: {type(e).__name__} {e}") from None


def _cramjam(kind: str):
    def run(data: bytes, page_size: int) -> bytes:
        try:
            import cramjam
        except ImportError:
            raise PageDataError(f"{kind}: the cramjam library is not installed") from None
        codec = getattr(cramjam, kind)
        try:
            if kind == "snappy":
                # makedumpfile writes raw snappy (snappy_compress), not the framed format
                n = _snappy_length(data)
                if n != page_size:
                    raise PageDataError(f"snappy: says {n} bytes, not one page of {page_size}")
                return bytes(codec.decompress_raw(data))
            out = bytearray(page_size)
            n = codec.decompress_into(data, out)
            if n != page_size:
                raise PageDataError(f"zstd: {n} bytes, not one page of {page_size}")
            # a frame that holds more than one page fails in decompress_into (the buffer is
            # too small), so out is exactly the page
            return bytes(out)
        except cramjam.DecompressionError as e:
            raise PageDataError(f"{kind}: {e}") from None
    return run


def _snappy_length(data: bytes):
    """The uncompressed length a raw snappy block starts with (a varint), or None."""
    n = shift = 0
    for i, b in enumerate(data[:5]):
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n
        shift += 7
    return None


_DECODERS = {DUMP_DH_COMPRESSED_ZLIB: _zlib, DUMP_DH_COMPRESSED_LZO: _lzo,
             DUMP_DH_COMPRESSED_SNAPPY: _cramjam("snappy"), DUMP_DH_COMPRESSED_ZSTD: _cramjam("zstd")}


def decompress(flag: int, data: bytes, page_size: int) -> bytes:
    """One page from data compressed as `flag` says (one DUMP_DH_COMPRESSED_* bit)."""
    decode = _DECODERS.get(flag)
    if decode is None:
        raise PageDataError(f"compression flags {flag:#x} unknown")
    out = decode(bytes(data), page_size)
    if len(out) != page_size:
        raise PageDataError(f"{NAMES[flag]}: {len(out)} bytes, not one page of {page_size}")
    return out


def available() -> dict[str, bool]:
    """Which compressors this environment can read."""
    import importlib.util

    has = lambda name: importlib.util.find_spec(name) is not None  # noqa: E731
    return {"zlib": True, "lzo": has("lzallright"), "snappy": has("cramjam"), "zstd": has("cramjam")}
