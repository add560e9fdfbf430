"""Fixtures for the unit tests: synthetic runs written by tests/support/synth.py."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

import synth  # noqa: E402


@pytest.fixture
def good_run(tmp_path):
    """A complete, valid synthetic run (512-byte blocks, 8 MiB of RAM)."""
    return synth.make_run(tmp_path / "run")


@pytest.fixture(params=[512, 4096], ids=["b512", "b4096"])
def good_run_any_block(request, tmp_path):
    return synth.make_run(tmp_path / "run", block_size=request.param)


@pytest.fixture
def make_run(tmp_path):
    """make_run(**options) -> a synthetic run in a fresh directory."""
    counter = iter(range(1000))

    def make(**options):
        return synth.make_run(tmp_path / f"run{next(counter)}", **options)

    return make
