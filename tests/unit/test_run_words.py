"""`run --host` sends the host the words of the user's options (cli._words_of): parsed again,
they must give the same options, whatever was typed (abbreviations, --opt=value, repeats)."""
from __future__ import annotations

import pytest

from dumpbed import cli

RUN = cli._subparser("run")


@pytest.mark.parametrize("typed", [
    [],
    ["--disk", "lsi", "--crash", "hang", "--memory", "32M", "--accel", "tcg"],
    ["--disk=nvme", "--block-size=4096", "--disk-size", "1G", "--no-fill", "--level", "0"],
    ["--fault", "kill@50%", "--fault", "slow=16", "--secondary", "virtio-blk"],
    ["--append", "testfault=irq-on pinpool=4M", "--guest-arg", "x=1", "--guest-arg", "y=2"],
    ["--disk", "virtio-scsi", "--target", "3", "--lun", "2", "--other-disks", "2", "--workload", "--stop-disk"],
    ["--ram-below-4g", "64M", "--memory", "96M", "--firmware", "seabios", "--components", "all"],
    ["--mem", "64M", "--acc", "kvm"],  # argparse's abbreviations, spelled out whole for the host
])
def test_words_parse_back_to_the_same_options(typed):
    args = cli.build_parser().parse_args(["run", *typed, "--host", "h", "--hosts", "f", "--out", "o", "--json"])
    words = cli._words_of(args, RUN, cli._NOT_FOR_THE_HOST)
    assert not {"--host", "--hosts", "--out", "--json"} & set(words)
    again = cli.build_parser().parse_args(["run", *words, "--host", "h", "--hosts", "f", "--out", "o", "--json"])
    assert vars(again) == vars(args)


def test_hosts_without_host_and_kernel_with_host_are_refused(tmp_path, capsys):
    assert cli.main(["run", "--hosts", str(tmp_path / "h.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "--hosts names the hosts file of --host" in capsys.readouterr().err
    kernel = tmp_path / "k"
    kernel.write_bytes(b"x")
    assert cli.main(["run", "--host", "a", "--kernel", str(kernel), "--out", str(tmp_path / "o")]) == 2
    assert "--kernel and --initrd name files on this machine" in capsys.readouterr().err
    assert cli.main(["run", "--host", "a", "--hosts", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dumpbed: error:") and "none.toml" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]
