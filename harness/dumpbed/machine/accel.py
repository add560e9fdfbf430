"""Pick the accelerator: KVM when /dev/kvm really works, TCG otherwise."""
from __future__ import annotations

import fcntl
import os
from typing import Optional

KVM_GET_API_VERSION = 0xAE00
KVM_API_VERSION = 12


def kvm_usable() -> tuple[bool, str]:
    """(usable, reason): open /dev/kvm and ask its API version, as QEMU itself does.
    $DUMPBED_KVM_DEVICE names another device (tests: a host without KVM)."""
    device = os.environ.get("DUMPBED_KVM_DEVICE") or "/dev/kvm"
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return False, f"{device}: {exc.strerror}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as exc:
        return False, f"{device} ioctl: {exc.strerror}"
    finally:
        os.close(fd)
    if version != KVM_API_VERSION:
        return False, f"{device} API version {version}, expected {KVM_API_VERSION}"
    return True, f"{device} works"


def choose(requested: str, guest_problem: Optional[str] = None) -> str:
    """'auto' becomes 'kvm' or 'tcg'; an explicit 'kvm' that cannot work is an error.
    guest_problem: why this host's KVM cannot run the guest although it works (the guest
    profile's kvm_problem, e.g. a PV-mode KVM and a Linux kernel), or None."""
    from dumpbed.errors import DumpbedError

    if requested == "tcg":
        return "tcg"
    usable, reason = kvm_usable()
    if usable and guest_problem:
        usable, reason = False, guest_problem
    if requested == "kvm" and not usable:
        raise DumpbedError(f"--accel kvm requested but KVM is not usable: {reason}")
    return "kvm" if usable else "tcg"


def cpu_model(accel: str) -> str:
    # Under nested KVM, -cpu host/max abort with "failed to set MSR 0x10a" (QEMU-FACTS.md);
    # without arch-capabilities they work. Under TCG, max gives SSE4.2 (the guest's crc32).
    return "host,-arch-capabilities" if accel == "kvm" else "max"
