"""`dumpbed validate IMAGE` on hostile images: exit 0, 1 or 2, one line on error, never a
traceback; it passes (0) only when the image is undamaged where its leader vouches."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

from hypothesis import given, strategies as st

from dumpbed import cli

from . import mutations as m
from .bench import Bench
from .conftest import fuzz_settings
from .judge import guarded

FAMILIES = ("flips", "structures", "truncate", "zero", "swap", "foreign", "header", "directory")


def _family(name, dev, pool):
    return {
        "flips": lambda: m.bit_flips(dev), "structures": lambda: m.bit_flips(dev, m.TARGETED),
        "truncate": lambda: m.truncations(dev), "zero": lambda: m.zeroed_ranges(dev),
        "swap": lambda: m.swapped_blocks(dev), "foreign": lambda: m.foreign_headers(dev, pool),
        "header": lambda: m.header_fields(dev), "directory": lambda: m.directory_fields(dev),
    }[name]()


def _mutate(devices, pool, data) -> tuple[Bench, object]:
    dev = devices[data.draw(st.sampled_from(sorted(devices)), label="device")]
    mut = data.draw(st.sampled_from(FAMILIES).flatmap(lambda f: _family(f, dev, pool)), label="mutation")
    bench = Bench(dev)
    mut.apply(bench)
    return bench, mut


def _may_pass(bench: Bench, mut) -> bool:
    dev = bench.dev
    damaged = bench.changed_within(dev.vouched or [dev.regions["anywhere"]]) and not getattr(mut, "plausible", False)
    return dev.image_passes and not damaged


@fuzz_settings(1.0)
@given(data=st.data(), as_json=st.booleans())
def test_validate_image_exits_0_1_or_2(devices, pool, data, as_json):
    bench, mut = _mutate(devices, pool, data)
    try:
        out, err = io.StringIO(), io.StringIO()
        argv = ["validate", str(bench.dev.image)] + (["--json"] if as_json else [])
        with redirect_stdout(out), redirect_stderr(err):
            code = guarded("cli", lambda: cli.main(argv)).value
        assert code in (0, 1, 2), code
        assert "Traceback" not in err.getvalue()
        if code == 2:
            assert err.getvalue().startswith("dumpbed: error: ") and err.getvalue().count("\n") == 1
        elif as_json:
            report = json.loads(out.getvalue())
            assert (report["verdict"] == "pass") == (code == 0)
        if code == 0:
            assert _may_pass(bench, mut), "a damaged image passes `dumpbed validate`"
    finally:
        bench.restore()


@fuzz_settings(0.15)
@given(data=st.data())
def test_validate_image_command_has_no_traceback(devices, pool, data):
    """The real command, in its own process."""
    bench, mut = _mutate(devices, pool, data)
    try:
        proc = subprocess.run([sys.executable, "-m", "dumpbed.cli", "validate", str(bench.dev.image)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode in (0, 1, 2), (proc.returncode, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        if proc.returncode == 0:
            assert _may_pass(bench, mut), "a damaged image passes `dumpbed validate`"
    finally:
        bench.restore()
