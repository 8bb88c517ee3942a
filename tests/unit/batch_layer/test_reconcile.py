from batch_layer.billing import UsageRow
from batch_layer.reconcile import reconcile
from tests.unit.batch_layer.fixtures import DAY


def usage(key, total, removed=0, in_stream=0):
    return UsageRow(key[0], key[1], DAY, total, {"default": total}, 0, 0, 0, 0,
                    raw_count=total + removed, duplicates_removed=removed,
                    duplicates_in_stream=in_stream)


def test_equal_counts_are_ok():
    [row] = reconcile(DAY, [usage(("p", "k"), 10)], {("p", "k"): 10}, {})
    assert (row.difference, row.unexplained, row.status) == (0, 0, "ok")


def test_late_events_explain_a_lower_stream_count():
    [row] = reconcile(DAY, [usage(("p", "k"), 100)], {("p", "k"): 93}, {("p", "k"): 7})
    assert (row.difference, row.late_beyond_lateness, row.unexplained, row.status) == (
        7, 7, 0, "explained")


def test_resent_duplicates_explain_a_higher_stream_count():
    [row] = reconcile(DAY, [usage(("p", "k"), 100, removed=5, in_stream=3)],
                      {("p", "k"): 103}, {})
    assert (row.difference, row.unexplained, row.status) == (-3, 0, "explained")
    assert row.duplicates_removed == 5


def test_other_differences_are_flagged_and_one_sided_keys_appear():
    rows = reconcile(DAY, [usage(("p", "a"), 10)], {("p", "a"): 8, ("p", "b"): 4},
                     {("p", "a"): 1})
    by_key = {r.api_key: r for r in rows}
    assert (by_key["a"].unexplained, by_key["a"].status) == (1, "unexplained")
    assert (by_key["b"].batch_count, by_key["b"].difference, by_key["b"].status) == (
        0, -4, "unexplained")
