"""What QEMU is given: the guest kernel's build, the dump disk's layout, GPT and canary fill, the disks and controllers of a run."""
