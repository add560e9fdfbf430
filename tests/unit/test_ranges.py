"""dumpbed.oracles.ranges against the plain meaning of its words: sets of byte offsets."""
from hypothesis import given, strategies as st

from dumpbed.oracles import ranges

span = st.tuples(st.integers(0, 64), st.integers(0, 64))


def _bytes(rs) -> set[int]:
    return {b for s, e in rs for b in range(s, e)}


@given(st.lists(span, max_size=8))
def test_merged_holds_the_same_bytes_in_disjoint_sorted_runs(rs):
    out = ranges.merged(rs)
    assert _bytes(out) == _bytes(rs)
    assert all(s < e for s, e in out)
    assert all(a[1] < b[0] for a, b in zip(out, out[1:]))  # touching runs are joined


@given(st.lists(span, max_size=6), st.lists(span, max_size=6))
def test_minus_is_set_difference(a, b):
    a, b = ranges.merged(a), ranges.merged(b)
    out = ranges.minus(a, b)
    assert _bytes(out) == _bytes(a) - _bytes(b)
    assert ranges.merged(out) == out


def test_a_range_left_of_the_other_is_kept_whole():
    assert ranges.minus([(0, 10)], [(10, 20)]) == [(0, 10)]
    assert ranges.minus([(0, 10)], [(2, 4), (6, 8)]) == [(0, 2), (4, 6), (8, 10)]
