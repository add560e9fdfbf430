"""What the fuzzing found, one plain test each (docs/fuzzing.md, "Findings")."""

from __future__ import annotations

import os

import pytest
import synth

from harness import dumpfmt
from harness.validate import validate_image, validate_run


@pytest.fixture
def run(tmp_path):
    return synth.make_run(tmp_path / "run", samples="all")


def read(run):
    return dumpfmt.read(run.image, run.part_offset, run.part_bytes, run.block_size)



