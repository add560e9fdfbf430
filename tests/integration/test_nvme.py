"""NVMe's own scenario: the dump's commands are as large as the controller's MDTS allows."""
from __future__ import annotations

import pytest

from dumpbed.capture import blklog
from dumpbed.scenario import disks
from tests.support.reports import assert_complete

pytestmark = pytest.mark.dumpbed(memory="32M")


def test_the_dump_writes_in_commands_of_the_controllers_mdts(dumpbed_run):
    """MDTS 9 (2 MiB, where QEMU's default 7 allows 512 KiB): four times fewer commands."""
    result = dumpbed_run(disk="nvme")
    assert_complete(result)
    log = blklog.read(blklog.log_path(result.run_dir / "dump.img"))
    assert max(e.length for e in log.writes) == 4096 << disks.NVME_MDTS
    assert "sizes 512..2097152 bytes within DUMPQUERY min 512 / max 2097152" in result.check("write-sizes")["detail"]
    # several writes in flight (docs/dump-format.md, "Write order"), held to it by write-order
    assert "DUMPBED QUIESCED device=primary outstanding=6" in (result.run_dir / "result.log").read_text()
    assert "at most as many as DUMPQUERY said" in result.check("write-order")["detail"]
