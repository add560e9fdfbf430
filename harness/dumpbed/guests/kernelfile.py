"""Which kind of kernel file QEMU is given: a multiboot (v1) image or a Linux bzImage.

QEMU's `-kernel` takes both and tells them apart itself; dumpbed looks first, so a file that is
neither (a vmlinux, an ELF without a multiboot header, a typo'd path) is one clear error before
anything is written, not a QEMU that refuses to start.
"""
from __future__ import annotations

import enum
import struct
from pathlib import Path

from dumpbed.errors import DumpbedError

MULTIBOOT_MAGIC = 0x1BADB002
MULTIBOOT_SEARCH = 8192  # the header lies 32-bit aligned within the file's first 8 KiB
BZIMAGE_BOOT_FLAG = 0x1FE  # 0xAA55, as in a boot sector
BZIMAGE_HEADER = 0x202  # "HdrS": the Linux/x86 boot protocol's setup header


class KernelFormat(enum.Enum):
    MULTIBOOT = "multiboot"
    BZIMAGE = "bzImage"


def identify(path: Path, option: str = "--kernel") -> KernelFormat:
    """The format of a kernel file, or a DumpbedError naming the option and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise DumpbedError(f"{option} {path}: no such file")
    if not path.is_file():
        raise DumpbedError(f"{option} {path}: not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(MULTIBOOT_SEARCH)
    except OSError as exc:
        raise DumpbedError(f"{option} {path}: cannot be read ({exc.strerror})") from None
    if _is_bzimage(head):
        return KernelFormat.BZIMAGE
    if _has_multiboot_header(head):
        return KernelFormat.MULTIBOOT
    raise DumpbedError(f"{option} {path}: neither a multiboot kernel (no multiboot header in its first "
                       f"{MULTIBOOT_SEARCH // 1024} KiB) nor a Linux bzImage (no HdrS setup header)")


def _is_bzimage(head: bytes) -> bool:
    return (len(head) >= BZIMAGE_HEADER + 4 and head[BZIMAGE_BOOT_FLAG:BZIMAGE_BOOT_FLAG + 2] == b"\x55\xaa"
            and head[BZIMAGE_HEADER:BZIMAGE_HEADER + 4] == b"HdrS")


def _has_multiboot_header(head: bytes) -> bool:
    """Magic, flags and checksum (the three sum to 0 mod 2^32) at a 4-byte aligned offset."""
    for off in range(0, len(head) - 11, 4):
        magic, flags, checksum = struct.unpack_from("<III", head, off)
        if magic == MULTIBOOT_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return True
    return False
