"""Whole-file writes for the nightly outputs (results.json, junit.xml, report.html): a reader
never sees half of a file, and a failed write leaves neither half a file nor a temp file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union


def write_atomically(path: Path, data: Union[bytes, str], *, fsync: bool = False, private: bool = True) -> None:
    """Write data at path whole: into a temp file beside it (same directory, so same filesystem),
    then os.replace over path. Creates path's directory. str is written in text mode (the
    locale's encoding, as open() does), bytes as they are. fsync: flush the data to the disk
    before the replace. private: the file keeps mkstemp's owner-only mode 0600; else it gets the
    mode a plain open() would give a new file (0666 less the umask).

    Raises OSError as the underlying calls do; the temp file is removed on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w" if isinstance(data, str) else "wb") as f:
            if not private:
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc, 4.7 and
    later): setting it to read it back would race with other threads' file creation."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
