"""An external suite: a driver's own tests, using only dumpbed's pytest plugin.

Nothing here imports dumpbed's internals: the fixtures (dumpbed_run, dumpbed_result), the
markers (dumpbed, dumpbed_matrix) and the --dumpbed-* options come from the plugin, which
pytest loads by itself wherever dumpbed is installed. Run it with

    pytest examples/external-suite --dumpbed-keep failed --junitxml=out.xml

The second test is broken on purpose: its guest never flushes (testfault=no-flush), so the
write-order and consistency checks fail, and the failure names them and the run directory kept.
"""
import pytest

# Small guests: each test boots one QEMU.
pytestmark = pytest.mark.dumpbed(disk="virtio-blk", memory="16M")


def test_the_driver_dumps_and_every_check_passes(dumpbed_run):
    result = dumpbed_run(crash="nmi")
    result.assert_passed()
    assert result.dump_status == "complete"


@pytest.mark.dumpbed(guest_args=["testfault=no-flush"])
def test_a_driver_that_never_flushes(dumpbed_result):
    dumpbed_result.assert_passed()
