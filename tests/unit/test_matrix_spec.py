"""The matrix file (docs/nightly.md): expansion, ids, expected outcomes, shards, and each bad
input refused with one line naming the file, group and key."""
from __future__ import annotations

from pathlib import Path

import pytest

from dumpbed.errors import DumpbedError
from dumpbed.matrix import cellrun, spec

EXAMPLE = Path(__file__).parents[2] / "examples" / "nightly" / "matrix.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return path


def test_a_group_expands_to_the_product_of_its_lists_in_order(tmp_path):
    cells = spec.load(_write(tmp_path, '''
[g]
disk = ["virtio-blk", "lsi"]
crash = ["nmi", "panic"]
fault = ["none", "eio-at=40"]
[h]
disk = "nvme"
crash = "nmi"
memory = "32M"
accel = "tcg"
args = ["--no-fill"]
'''))
    assert [c.id for c in cells[:3]] == ["g/virtio-blk/nmi/none/64M/auto", "g/virtio-blk/nmi/eio-at=40/64M/auto",
                                         "g/virtio-blk/panic/none/64M/auto"]
    assert len(cells) == 9 and [c.index for c in cells] == list(range(9))
    last = cells[-1]
    assert last.id == "h/nvme/nmi/none/32M/tcg"
    assert last.run_words() == ["--disk", "nvme", "--crash", "nmi", "--memory", "32M", "--accel", "tcg", "--no-fill"]
    # the fault table's outcome: a failing device leaves a partial dump
    assert {c.fault: c.expect for c in cells[:2]} == {None: "complete", "eio-at=40": "partial"}
    assert "/" not in cells[1].slug and cells[1].slug == "g--virtio-blk--nmi--eio-at=40--64M--auto"


def test_require_kvm_turns_auto_into_kvm_and_leaves_an_explicit_tcg(tmp_path):
    cells = spec.load(_write(tmp_path, '[g]\ndisk = "virtio-blk"\ncrash = "nmi"\naccel = ["auto", "tcg"]\n'))
    assert [c.run_words(require_kvm=True)[7] for c in cells] == ["kvm", "tcg"]
    assert [c.run_words()[7] for c in cells] == ["auto", "tcg"]


def test_several_faults_in_one_cell(tmp_path):
    (cell,) = spec.load(_write(tmp_path, '[g]\ndisk = "virtio-scsi"\ncrash = "nmi"\nfault = "slow=16,pause=1@w3"\n'))
    assert cell.run_words()[-4:] == ["--fault", "slow=16", "--fault", "pause=1@w3"]


def test_a_cell_round_trips_through_the_plan(tmp_path):
    cells = spec.load(_write(tmp_path, '[g]\ndisk = "lsi"\ncrash = ["nmi", "hang"]\nfault = "kill"\n'))
    plan = cellrun.Plan(out=tmp_path, cells=cells, slots=[None], require_kvm=False)
    plan.save(tmp_path / "plan.json")
    again = cellrun.Plan.load(tmp_path / "plan.json")
    assert again.cells == cells and [c.expect for c in again.cells] == ["partial", "partial"]


@pytest.mark.parametrize("text, message", [
    ("", "no groups"),
    ("[g]\ndisk = 'virtio-blk'\n", "no 'crash'"),
    ("[g]\ndisk = 'virtio-blk'\ncrash = 'nmi'\ncolour = 'red'\n", "unknown key 'colour'"),
    ("[g]\ndisk = []\ncrash = 'nmi'\n", "disk is an empty list"),
    ("[g]\ndisk = ['lsi', 'lsi']\ncrash = 'nmi'\n", "names a value twice"),
    ("[g]\ndisk = 3\ncrash = 'nmi'\n", "disk must be a word or a list of words"),
    ("[g]\ndisk = 'floppy'\ncrash = 'nmi'\n", "cell g/floppy/nmi/none/64M/auto: argument --disk: invalid choice"),
    ("[g]\ndisk = 'virtio-blk'\ncrash = 'nmi'\nfault = 'melt'\n", "cell g/virtio-blk/nmi/melt/64M/auto"),
    ("[g]\ndisk = 'nvme'\ncrash = 'nmi'\nfault = 'pause=1'\n", "does not apply to a nvme dump disk"),
    ("[g]\ndisk = 'virtio-blk'\ncrash = 'nmi'\nmemory = '-5M'\n", "--memory"),
    ("[g]\ndisk = 'virtio-blk'\ncrash = 'nmi'\naccel = 'hvf'\n", "argument --accel: invalid choice"),
    ("['a b']\ndisk = 'virtio-blk'\ncrash = 'nmi'\n", "a group's name is letters"),
    ("g = 1\n", "not a table"),
    ("[g\n", "not TOML"),
    ("[a]\ndisk = 'lsi'\ncrash = 'nmi'\n[b]\ndisk = 'lsi'\ncrash = 'nmi'\n", None),  # ids differ by group: fine
])
def test_bad_matrix_files_are_one_line_errors(tmp_path, text, message):
    path = _write(tmp_path, text)
    if message is None:
        assert len(spec.load(path)) == 2
        return
    with pytest.raises(DumpbedError) as exc:
        spec.load(path)
    assert message in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(DumpbedError, match="matrix file .*nothing.toml: No such file"):
        spec.load(tmp_path / "nothing.toml")


@pytest.mark.parametrize("text", ["0/4", "5/4", "1", "a/b", "1/0", "-1/2"])
def test_bad_shards_are_refused(text):
    with pytest.raises(DumpbedError, match="--shard"):
        spec.parse_shard(text)


def test_shards_are_disjoint_and_whole_on_the_shipped_matrix():
    cells = spec.load(EXAMPLE)
    assert len(cells) > 20
    for n in (1, 2, 3, 4, 7):
        shards = [spec.shard(cells, i, n) for i in range(1, n + 1)]
        ids = [c.id for s in shards for c in s]
        assert sorted(ids) == sorted(c.id for c in cells) and len(ids) == len(set(ids))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced by count
    assert spec.parse_shard("2/4") == (2, 4) and spec.shard(cells, 2, 4)[0] is cells[1]


def test_places_are_the_slots_host_then_one_other_host():
    def slot(name):
        return {"host": {"name": name}}

    plan = cellrun.Plan(out=Path("."), cells=[], slots=[slot("a"), slot("b"), slot("a")], require_kvm=False)
    assert [p["host"]["name"] for p in plan.places(0)] == ["a", "b"]
    assert [p["host"]["name"] for p in plan.places(1)] == ["b", "a"]
    assert [p["host"]["name"] for p in plan.places(2)] == ["a", "b"]
    alone = cellrun.Plan(out=Path("."), cells=[], slots=[slot("a"), slot("a")], require_kvm=False)
    assert [p["host"]["name"] for p in alone.places(1)] == ["a"]  # no other host: no retry
    assert cellrun.Plan(out=Path("."), cells=[], slots=[None], require_kvm=False).places(3) == [None]
