"""nightly/history.py: nights kept in SQLite and the regressions docs/nightly.md defines:
passed -> fails on the same host, and a rate more than 20 % below the median of the last 7
passing rated runs on the host (from 3 of them)."""
from __future__ import annotations

import sqlite3

import pytest
from test_nightly_results import COMMIT, make_cell, make_doc

from dumpbed.errors import DumpbedError
from dumpbed.nightly import history

CELL = "virtio/virtio-blk/nmi/none/64M/auto"


def _night(db, k: int, *cells: dict, label=None) -> int:
    """Night k (a day apart from the others) with these cells."""
    doc = make_doc(list(cells), started=f"2026-12-{k + 1:02d}T01:00:00Z", finished=f"2026-12-{k + 1:02d}T02:00:00Z")
    return history.record(db, doc, label)


def _nights(db, outcomes_rates, host="kvm1") -> list[int]:
    return [_night(db, k, make_cell(0, outcome=o, mib_s=r if o != "error" else None, host=host))
            for k, (o, r) in enumerate(outcomes_rates)]


def _kinds(db, night) -> list[tuple[str, str, str]]:
    return [(r["cell"], r["host"], r["kind"]) for r in history.regressions(db, night)]


def test_record_creates_the_schema_and_keeps_rows(tmp_path):
    db = tmp_path / "h.sqlite"
    cells = [make_cell(0), make_cell(1, crash="panic", outcome="error")]
    night = _night(db, 0, *cells, label="nightly #1")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(history.SCHEMA_VERSION,)]
        assert conn.execute("SELECT time, commit_id, label FROM night").fetchall() == [
            ("2026-12-01T01:00:00Z", COMMIT, "nightly #1")]
        rows = conn.execute("SELECT cell, host, outcome, mib_s FROM result WHERE night = ? ORDER BY cell",
                            (night,)).fetchall()
    assert rows == [("virtio/virtio-blk/nmi/none/64M/auto", "kvm1", "pass", 800.0),
                    ("virtio/virtio-blk/panic/none/64M/auto", None, "error", None)]


def test_recording_a_night_again_replaces_it(tmp_path):
    db = tmp_path / "h.sqlite"
    first = _night(db, 0, make_cell(0))
    assert _night(db, 0, make_cell(0, outcome="fail"), label="again") == first
    assert _night(db, 1, make_cell(0)) != first
    assert [t["outcome"] for t in history.trend(db, CELL, "kvm1")] == ["fail", "pass"]


def test_pass_then_fail_is_newly_failing(tmp_path):
    db = tmp_path / "h.sqlite"
    nights = _nights(db, [("pass", 800), ("fail", 800)])
    assert _kinds(db, nights[0]) == []
    (found,) = history.regressions(db, nights[1])
    assert (found["cell"], found["host"], found["kind"]) == (CELL, "kvm1", "newly-failing")
    assert f"night {nights[0]}" in found["detail"] and found["figures"]["last_pass_night"] == nights[0]


def test_fail_then_fail_is_not_new(tmp_path):
    db = tmp_path / "h.sqlite"
    nights = _nights(db, [("pass", 800), ("fail", 800), ("fail", 800)])
    assert _kinds(db, nights[1]) == [(CELL, "kvm1", "newly-failing")]  # the doctored-free control
    assert _kinds(db, nights[2]) == []


def test_an_infrastructure_error_is_not_a_regression_and_not_a_judged_night(tmp_path):
    db = tmp_path / "h.sqlite"
    nights = _nights(db, [("pass", 800), ("error", None), ("fail", 800)])
    assert _kinds(db, nights[1]) == []
    # the last night that judged the cell passed: the fail after the error is new
    assert _kinds(db, nights[2]) == [(CELL, "kvm1", "newly-failing")]


def test_the_first_night_of_a_cell_is_never_a_regression(tmp_path):
    db = tmp_path / "h.sqlite"
    (night,) = _nights(db, [("fail", 10)])
    assert _kinds(db, night) == []


def test_another_hosts_history_is_ignored(tmp_path):
    db = tmp_path / "h.sqlite"
    _night(db, 0, make_cell(0, host="kvm2"))
    for k in range(1, 8):
        _night(db, k, make_cell(0, host="kvm2", mib_s=1000))
    night = _night(db, 8, make_cell(0, host="kvm1", outcome="fail", mib_s=10))
    assert _kinds(db, night) == []
    control = _night(db, 9, make_cell(0, host="kvm2", outcome="fail", mib_s=10))
    assert _kinds(db, control) == [(CELL, "kvm2", "newly-failing"), (CELL, "kvm2", "throughput")]


MEDIAN_OF_7 = [("pass", r) for r in (1000, 400, 990, 1010, 1000, 2000, 1005)]  # median 1000


@pytest.mark.parametrize("rate,flagged", [(750, True), (799, True), (800, False), (850, False), (2000, False)])
def test_throughput_against_the_median_of_the_last_7(tmp_path, rate, flagged):
    db = tmp_path / "h.sqlite"
    # an eighth, older run far above: only the last 7 count
    nights = _nights(db, [("pass", 5000)] * 3 + MEDIAN_OF_7 + [("pass", rate)])
    found = history.regressions(db, nights[-1])
    assert [r["kind"] for r in found] == (["throughput"] if flagged else [])
    if flagged:
        assert found[0]["figures"]["median_mib_s"] == 1000 and found[0]["figures"]["runs"] == 7
        assert f"{rate:.1f} MiB/s" in found[0]["detail"] and "1000.0" in found[0]["detail"]


def test_throughput_drop_of_25_percent_flagged_15_not(tmp_path):
    db = tmp_path / "h.sqlite"
    nights = _nights(db, MEDIAN_OF_7 + [("pass", 750), ("pass", 850)])
    assert [r["kind"] for r in history.regressions(db, nights[-2])] == ["throughput"]
    assert history.regressions(db, nights[-2])[0]["figures"]["drop"] == pytest.approx(0.25)
    # the last 7 now hold the 750 (and not the first 1000): their median is still 1000
    assert history.regressions(db, nights[-1]) == []


@pytest.mark.parametrize("earlier,judged", [(2, False), (3, True)])
def test_fewer_than_3_earlier_rates_no_judgement(tmp_path, earlier, judged):
    db = tmp_path / "h.sqlite"
    # failing, unrated and errored nights do not count as rated passing runs
    noise = [("fail", 1000), ("pass", None), ("error", None)]
    nights = _nights(db, noise + [("pass", 1000)] * earlier + [("pass", 100)])
    assert bool(history.regressions(db, nights[-1])) is judged


def test_a_rate_on_another_accelerator_is_not_compared(tmp_path):
    db = tmp_path / "h.sqlite"
    for k in range(5):
        _night(db, k, make_cell(0, mib_s=1000))
    night = _night(db, 5, make_cell(0, mib_s=50, accel="tcg"))
    assert _kinds(db, night) == []


def test_nights_are_ordered_by_time_not_by_recording(tmp_path):
    """An old night recorded late is judged against the nights before it, not the latest."""
    db = tmp_path / "h.sqlite"
    later = _night(db, 5, make_cell(0, outcome="fail"))
    earlier = _night(db, 2, make_cell(0))
    assert _kinds(db, later) == [(CELL, "kvm1", "newly-failing")]
    assert _kinds(db, earlier) == []


def test_trend_oldest_first_limited_and_until(tmp_path):
    db = tmp_path / "h.sqlite"
    nights = _nights(db, [("pass", 100 + k) for k in range(20)])
    _night(db, 25, make_cell(0, host="kvm2"))
    trend = history.trend(db, CELL, "kvm1")
    assert [t["mib_s"] for t in trend] == [100.0 + k for k in range(6, 20)]
    assert set(trend[0]) == {"night", "time", "label", "outcome", "mib_s"}
    assert trend[0]["time"] == "2026-12-07T01:00:00Z"
    assert [t["night"] for t in history.trend(db, CELL, "kvm1", limit=3, until=nights[4])] == nights[2:5]
    assert history.trend(db, CELL, "kvm3") == []


def test_a_file_that_is_not_a_history_is_a_dumpbed_error(tmp_path):
    (tmp_path / "junk").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(DumpbedError, match="history"):
        history.record(tmp_path / "junk", make_doc([]))
    with sqlite3.connect(tmp_path / "other.sqlite") as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(DumpbedError, match="not a dumpbed history"):
        history.record(tmp_path / "other.sqlite", make_doc([]))


def test_a_newer_history_is_refused(tmp_path):
    db = tmp_path / "h.sqlite"
    night = _night(db, 0, make_cell(0))
    history.regressions(db, night)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (history.SCHEMA_VERSION + 1,))
    with pytest.raises(DumpbedError, match="newer dumpbed"):
        history.regressions(db, night)


def test_an_unknown_night_is_a_dumpbed_error(tmp_path):
    db = tmp_path / "h.sqlite"
    _night(db, 0, make_cell(0))
    with pytest.raises(DumpbedError, match="no night 99"):
        history.regressions(db, 99)


def test_readers_do_not_create_a_history(tmp_path):
    db = tmp_path / "typo.sqlite"
    with pytest.raises(DumpbedError, match="no such file"):
        history.trend(db, CELL, "kvm1")
    assert history.latest_night(db) is None
    assert not db.exists()


def test_check_path_refuses_what_could_not_be_used_and_creates_nothing(tmp_path):
    history.check_path(tmp_path / "new.sqlite")  # can be created
    assert not (tmp_path / "new.sqlite").exists()
    with pytest.raises(DumpbedError, match="no directory"):
        history.check_path(tmp_path / "nowhere" / "h.sqlite")
    (tmp_path / "junk").write_bytes(b"not sqlite" * 200)
    with pytest.raises(DumpbedError, match="history"):
        history.check_path(tmp_path / "junk")
    _night(tmp_path / "h.sqlite", 0, make_cell(0))
    history.check_path(tmp_path / "h.sqlite")
