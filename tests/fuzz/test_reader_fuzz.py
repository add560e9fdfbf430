"""The format reader, validate_image and validate_run fuzzed with hostile dumps (docs/fuzzing.md).

Each test draws a device (a real guest's dump disk or a synthetic one) and a mutation of one
family, applies it to the device's working copy, holds every property of judge.py, and puts
the pristine bytes back.
"""

from __future__ import annotations

from hypothesis import given, strategies as st

from . import mutations as m
from .bench import Bench
from .conftest import fuzz_settings
from .judge import hold


def _fuzz(devices, data, family, names=None, run=True):
    names = names or sorted(devices)
    dev = devices[data.draw(st.sampled_from(names), label="device")]
    muts = data.draw(family(dev), label="mutation")
    muts = muts if isinstance(muts, list) else [muts]
    bench = Bench(dev)
    try:
        for mut in muts:
            mut.apply(bench)
        hold(bench, muts, run=run)
    finally:
        bench.restore()


@fuzz_settings(1.0)
@given(data=st.data())
def test_bit_flips_anywhere(devices, data):
    _fuzz(devices, data, m.bit_flips)


@fuzz_settings(1.5)
@given(data=st.data())
def test_bit_flips_in_structures(devices, data):
    _fuzz(devices, data, lambda dev: m.bit_flips(dev, m.TARGETED))


@fuzz_settings(1.0)
@given(data=st.data())
def test_truncation(devices, data):
    _fuzz(devices, data, m.truncations)


@fuzz_settings(1.0)
@given(data=st.data())
def test_zeroed_ranges(devices, data):
    _fuzz(devices, data, m.zeroed_ranges)


@fuzz_settings(1.0)
@given(data=st.data())
def test_swapped_blocks(devices, data):
    _fuzz(devices, data, m.swapped_blocks)


@fuzz_settings(1.0)
@given(data=st.data())
def test_header_from_another_dump(devices, pool, data):
    _fuzz(devices, data, lambda dev: m.foreign_headers(dev, pool))


@fuzz_settings(2.0)
@given(data=st.data())
def test_absurd_header_values_resealed(devices, data):
    _fuzz(devices, data, m.header_fields)


@fuzz_settings(2.0)
@given(data=st.data())
def test_absurd_directory_values_resealed(devices, data):
    _fuzz(devices, data, m.directory_fields)


@fuzz_settings(1.0)
@given(data=st.data())
def test_several_mutations(devices, pool, data):
    _fuzz(devices, data, lambda dev: m.mutation_lists(dev, pool))
