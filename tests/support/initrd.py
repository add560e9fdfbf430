"""Broken capture environments for the linux-kdump tests: the image's initramfs with a changed
/init laid over it.

Linux unpacks an initramfs made of several cpio archives one after the other, a later file
replacing an earlier one of the same name (Documentation/driver-api/early-userspace/
buffer-format.rst): the image's own initrd, then a small uncompressed newc archive of ours,
holds our /init. The first kernel's initrd also carries the capture kernel's initrd
(/boot/initrd-capture, what `kexec -p` loads): it gets the same overlay.
"""
from __future__ import annotations
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INIT = REPO / "images" / "linux-kdump" / "init"


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    return _pad4(header + encoded) + _pad4(data)


def newc(files: dict[str, tuple[int, bytes]]) -> bytes:
    """An uncompressed newc cpio archive of {name: (mode, bytes)}, with its trailer."""
    out = b"".join(_entry(name, mode, data, i + 1) for i, (name, (mode, data)) in enumerate(files.items()))
    return out + _entry("TRAILER!!!", 0, b"", 0)


def with_init(image_dir: Path, out_dir: Path, old: str, new: str) -> tuple[Path, Path]:
    """The image's kernel and a first-kernel initrd whose /init (both kernels') has `old`
    replaced by `new` (which must occur in it exactly once): (vmlinuz, initrd)."""
    text = INIT.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {INIT}"
    init = text.replace(old, new).encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    capture = _pad4((image_dir / "initrd-capture").read_bytes()) + newc({"init": (0o100755, init)})
    first = _pad4((image_dir / "initrd").read_bytes()) + newc({
        "init": (0o100755, init), "boot": (0o040755, b""), "boot/initrd-capture": (0o100644, capture)})
    (out_dir / "initrd").write_bytes(first)
    return image_dir / "vmlinuz", out_dir / "initrd"


def image_dir() -> Path:
    """The linux-kdump image of the cache (built when missing)."""
    from dumpbed.guests import recipes

    return recipes.build(recipes.load("linux-kdump")).kernel.parent


