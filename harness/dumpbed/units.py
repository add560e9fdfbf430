"""Sizes, once: binary units, the sector the trace events count in, the page."""
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
SECTOR = 512  # QEMU's sector, virtio-blk's unit, and the canary's
PAGE = 4096
