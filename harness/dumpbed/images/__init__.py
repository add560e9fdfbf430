"""What QEMU is given as disks: the dump disk's layout, GPT and canary fill, the disks and controllers of a run."""
