"""What boots: guest profiles (the interface a guest speaks, how READY and DONE are told, the
crash kinds and oracles that apply), the kernel files QEMU is given, and the images/ recipes
that build them into a cache keyed by the hash of their inputs (docs/guest-profiles.md)."""
