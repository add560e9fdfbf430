from __future__ import annotations

import os

import pytest

from dumpbed.machine import accel


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


# `make matrix` (DUMPBED_FULL_MATRIX=1) runs the tests marked `matrix` whole; `make test` runs a
# sample of each sweep, and skips the tests that are too long for it (`matrix_only`).
FULL = bool(os.environ.get("DUMPBED_FULL_MATRIX"))
matrix_only = pytest.mark.skipif(not FULL, reason="too long for make test: make matrix runs it")


@pytest.fixture(scope="session")
def guest_kernel(dumpbed_guest):
    """The guest kernel: the dumpbed pytest plugin's (built once, or --dumpbed-kernel)."""
    return dumpbed_guest


def accel_params(long_under_tcg: bool = False):
    """Each integration scenario runs under TCG, and under KVM where /dev/kvm works. A scenario
    long under TCG (a 1 GiB dump: 20 s) runs its TCG half in `make test` only where KVM does not
    work, and always in `make matrix`."""
    usable, reason = accel.kvm_usable()
    tcg_marks = [pytest.mark.matrix, matrix_only] if long_under_tcg and usable else []
    return [
        pytest.param("tcg", id="tcg", marks=tcg_marks),
        pytest.param("kvm", id="kvm", marks=[pytest.mark.kvm] + ([] if usable else [pytest.mark.skip(
            reason=f"KVM not usable here: {reason}")])),
    ]
