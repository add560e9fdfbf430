"""What docs/guest-interface.md defines that the host speaks: the shell's prompt and the error
numbers the guest reports (guest/lib/errno.h, Linux's numbers; tests/unit/test_vocabulary.py
holds them to the header)."""
from enum import IntEnum

PROMPT = "dumpbed> "  # the guest shell's prompt on the console
# The values of the `compress` word, with the header's `compression` each asks for: how the dump's
# body holds the areas' data (docs/dump-format.md, "Compressed bodies"); "off" is the guest's
# default and is never written on the command line.
COMPRESSIONS = {"off": 0, "lz4": 1}


class Errno(IntEnum):
    EPERM = 1
    ENOENT = 2
    EIO = 5
    ENXIO = 6
    E2BIG = 7
    EAGAIN = 11
    ENOMEM = 12
    EFAULT = 14
    EBUSY = 16
    EEXIST = 17
    ENODEV = 19
    EINVAL = 22
    ENOSPC = 28
    EROFS = 30
    ERANGE = 34
    ENODATA = 61
    EMSGSIZE = 90
    ENOTSUP = 95
    ETIMEDOUT = 110
    EINPROGRESS = 115
    ESTALE = 116


def errno_name(value: int) -> str:
    """EIO for 5; the number itself for one the guest does not define."""
    try:
        return Errno(value).name
    except ValueError:
        return str(value)
