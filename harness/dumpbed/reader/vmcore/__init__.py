"""Readers of what Linux's makedumpfile writes (docs/vmcore-formats.md): the kdump-compressed
format (kdump_compressed.py) and ELF vmcores (elf_vmcore.py), the kernel log inside them
(dmesg.py).

    with vmcore.open("/dev/sdb2") as core:          # or a file object; offset/length: a window
        core.status, core.reason                    # complete / partial / corrupt / unsupported / none
        core.vmcoreinfo["OSRELEASE"]
        for pfn, page in core.pages(): ...
        core.read_page(0x1000)                      # bytes, or None when not held
        core.dumped_pfns(), core.dumped_ranges()

open() never raises on what it finds in the file (an unreadable path or a negative offset is
the caller's error: OSError / ValueError).
"""
from __future__ import annotations

from typing import Optional

from dumpbed.reader.vmcore.base import STATUSES, Finding, Vmcore  # noqa: F401
from dumpbed.reader.vmcore.elf_vmcore import ElfVmcore
from dumpbed.reader.vmcore.kdump_compressed import OLD_SIGNATURE, SIGNATURE, KdumpCompressed
from dumpbed.reader.vmcore.source import PathOrFile, Source

FLATTENED_SIGNATURE = b"makedumpfile\0\0\0\0"
ELF_MAGIC = b"\x7fELF"
_PROBE = 4096
__all__ = ["open", "Vmcore", "KdumpCompressed", "ElfVmcore", "NotAVmcore", "Finding", "STATUSES"]


class NotAVmcore(Vmcore):
    """What is there is no vmcore: nothing written (none), another format (unsupported), or
    bytes no writer produces (corrupt)."""
    format = "none"

    def __init__(self, source: Source, status: str, reason: str, format: str = "none"):
        super().__init__(source)
        self.format = format
        self.note(status, reason)

    def read_page(self, pfn: int) -> Optional[bytes]:
        return None


def open(path_or_fileobj: PathOrFile, offset: int = 0, length: Optional[int] = None,
         verify: bool = False) -> Vmcore:  # noqa: A001 (the API's name)
    """The vmcore in the window [offset, offset + length) of a file, its format recognised by
    its first bytes. verify=True reads (decompresses) every page before returning."""
    src = Source(path_or_fileobj, offset, length)
    head = src.read(0, _PROBE)
    if head[:8] in (SIGNATURE, OLD_SIGNATURE):
        core: Vmcore = KdumpCompressed(src)
    elif head[:4] == ELF_MAGIC:
        core = ElfVmcore(src)
    elif head[:16] == FLATTENED_SIGNATURE:
        core = NotAVmcore(src, "unsupported", "makedumpfile's flattened format (-F): reassemble it with "
                                              "`makedumpfile -R FILE < FLATTENED` first", "flattened")
    elif not head:
        core = NotAVmcore(src, "none", "empty: nothing was written")
    elif not head.strip(b"\0"):
        core = NotAVmcore(src, "none", f"the first {len(head)} bytes are zero: no vmcore was written")
    else:
        core = NotAVmcore(src, "corrupt", f"no vmcore signature (KDUMP or ELF): starts with {head[:8]!r}",
                          "unknown")
    if verify:
        core.verify()
    return core
