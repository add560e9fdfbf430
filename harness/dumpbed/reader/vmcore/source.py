"""A bounded window of bytes to read a vmcore from: a file (path) or an open binary file
object, from `offset` for `length` bytes (the whole rest of the file when None).

A dump partition is a window of a disk image: nothing past its end is ever read. Reads never
raise on a short file: they return what there is (possibly b""), and the caller decides what a
short read means (docs/vmcore-formats.md, "Classification").
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Optional, Union

PathOrFile = Union[str, os.PathLike, BinaryIO]


class Source:
    def __init__(self, path_or_fileobj: PathOrFile, offset: int = 0, length: Optional[int] = None):
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"offset {offset} / length {length}: must not be negative")
        if isinstance(path_or_fileobj, (str, os.PathLike)):
            self.name = str(Path(path_or_fileobj))
            self._f: BinaryIO = open(path_or_fileobj, "rb")
            self._owned = True
        else:
            self.name = getattr(path_or_fileobj, "name", None) or "<file object>"
            self._f = path_or_fileobj
            self._owned = False
        self.offset = offset
        end = self._file_size()
        available = max(0, end - offset)
        self.length = available if length is None else min(length, available)

    def _file_size(self) -> int:
        f = self._f
        try:
            return os.fstat(f.fileno()).st_size or _seek_end(f)
        except (AttributeError, OSError, io.UnsupportedOperation):
            return _seek_end(f)

    def read(self, pos: int, n: int) -> bytes:
        """Up to n bytes at pos (relative to the window); fewer at the window's end."""
        if pos < 0 or n <= 0 or pos >= self.length:
            return b""
        n = min(n, self.length - pos)
        self._f.seek(self.offset + pos)
        out = self._f.read(n)
        return out if isinstance(out, bytes) else bytes(out)

    def read_exact(self, pos: int, n: int) -> Optional[bytes]:
        """Exactly n bytes at pos, or None when the window ends before."""
        data = self.read(pos, n)
        return data if len(data) == n else None

    def close(self) -> None:
        if self._owned:
            self._f.close()


def _seek_end(f: BinaryIO) -> int:
    try:
        here = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(here)
        return end
    except (AttributeError, OSError, io.UnsupportedOperation):
        return 0
