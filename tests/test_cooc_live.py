"""LiveCounts: the federated counts re-summed during the test period, read causally by each row."""

from __future__ import annotations

import numpy as np
import pytest

from edge_nodes.errors import ModelFileError
from edge_nodes.learning import cooc_live
from edge_nodes.learning.cooc_live import LiveCounts
from edge_nodes.learning.cooc_table import CoocTable, window_pairs

N, K = 12, 4
CUT = np.datetime64("2020-01-10T00:00:00", "ns")


def _base(rng: np.random.Generator, window: int = 3, decay: float = 0.6) -> CoocTable:
    rows, cols = rng.integers(0, N, 40), rng.integers(0, N, 40)
    return CoocTable.from_coo([(rows, cols, rng.random(40) + 0.5)], N, window, decay)


def _events(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hist = rng.integers(-1, N, (n, K))
    hist[:, -1] = rng.integers(0, N, n)  # the request itself ends its window
    ts = CUT + np.sort(rng.integers(0, 10 * 86400, n)).astype("timedelta64[s]").astype("timedelta64[ns]")
    return hist, hist[:, -1].copy(), ts


def _expected(base: CoocTable, events: list[tuple[np.ndarray, np.ndarray, np.ndarray]], every_days: float,
              symmetric: bool, hist: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Brute force: per row, the table rebuilt from the base and every pair counted before the
    start of the row's refresh period."""
    every = np.timedelta64(int(every_days * 86400e9), "ns")
    out = np.empty((hist.shape[0], N))
    for i in range(hist.shape[0]):
        start = CUT + max(0, (ts[i] - CUT) // every) * every
        parts = [(base._rows, base.indices, base.counts.astype(np.float64))]
        for h, item, t in events:
            before = t < start
            parts.append(window_pairs(h[before, :-1], item[before], base.window, base.decay, symmetric))
        table = CoocTable.from_coo([tuple(np.concatenate([p[j] for p in parts]) for j in range(3))], N,
                                   base.window, base.decay)
        out[i] = table.window_scores(hist[i:i + 1])[0]
    return out


@pytest.mark.parametrize("block_rows", [10**9, 3])  # pairs expanded row by row; one product per refresh
@pytest.mark.parametrize("every_days,symmetric", [(1.0, False), (2.5, True), (0.25, False)])
def test_each_row_reads_the_pairs_counted_before_its_refresh_and_none_after(
        every_days: float, symmetric: bool, block_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cooc_live, "BLOCK_ROWS", block_rows)
    monkeypatch.setattr(cooc_live, "DENSE_BLOCK_ROWS", block_rows)
    rng = np.random.default_rng(3)
    base = _base(rng)
    events = [_events(rng, 30), _events(rng, 25)]  # two edges, summed
    live = LiveCounts.from_events(base, events, CUT, every_days, symmetric)
    hist, _, ts = _events(rng, 40)
    expected = _expected(base, events, every_days, symmetric, hist, ts)
    np.testing.assert_allclose(live.window_scores(hist, ts), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(live.window_scores_sparse(hist, ts).toarray(), expected, rtol=1e-5, atol=1e-6)
    # summed tables are built from the latest kept earlier one: any call order reads the same
    for part in (slice(None, None, -1), slice(20, None), slice(0, 20)):
        np.testing.assert_allclose(live.window_scores(hist[part], ts[part]), expected[part], rtol=1e-5, atol=1e-6)


def test_at_the_cut_and_without_times_it_is_the_base_table() -> None:
    rng = np.random.default_rng(4)
    base = _base(rng)
    events = [_events(rng, 30)]
    live = LiveCounts.from_events(base, events, CUT, 1.0, False)
    hist, _, ts = _events(rng, 20)
    np.testing.assert_allclose(live.window_scores(hist), base.window_scores(hist))
    first_day = np.full(20, CUT + np.timedelta64(3600, "s"))  # refresh 0: nothing counted yet is summed
    np.testing.assert_allclose(live.window_scores(hist, first_day), base.window_scores(hist))
    assert live.base is base and base.base is base
    with pytest.raises(ValueError, match="every_days"):
        LiveCounts.from_events(base, events, CUT, 0.0, False)


def test_a_request_never_reads_its_own_pair() -> None:
    """The pair a request adds is in no sum its own time reads (causality at the boundary)."""
    base = CoocTable.from_coo([], N, 3, 0.6)
    hist = np.array([[-1, -1, 2, 5]])
    at = CUT + np.timedelta64(2 * 86400, "s")  # exactly at a refresh boundary
    live = LiveCounts.from_events(base, [(hist, hist[:, -1].copy(), np.array([at], "datetime64[ns]"))], CUT, 1.0,
                                  False)
    assert live.window_scores(np.array([[-1, -1, -1, 2]]), np.array([at], "datetime64[ns]"))[0, 5] == 0
    later = np.array([at + np.timedelta64(86400, "s")], "datetime64[ns]")
    assert live.window_scores(np.array([[-1, -1, -1, 2]]), later)[0, 5] == pytest.approx(1.0)


def test_the_summed_tables_kept_stay_within_the_byte_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cooc_live, "BLOCK_ROWS", 1)
    monkeypatch.setattr(cooc_live, "DENSE_BLOCK_ROWS", 1)
    monkeypatch.setattr(cooc_live, "KEPT_BYTES", 1)  # less than one table: keep only the last one
    rng = np.random.default_rng(5)
    base = _base(rng)
    events = [_events(rng, 30)]
    live = LiveCounts.from_events(base, events, CUT, 1.0, False)
    hist, _, ts = _events(rng, 40)
    np.testing.assert_allclose(live.window_scores(hist, ts), _expected(base, events, 1.0, False, hist, ts),
                               rtol=1e-5, atol=1e-6)
    assert len(live._cache) == 1


@pytest.mark.parametrize("block_rows", [10**9, 3])
def test_aged_counts_weigh_every_pair_by_its_age_at_the_start_of_the_rows_refresh(
        block_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Brute force from timed pairs: at a row of refresh b (start S), a pair counted at t weighs
    2^-((S - t) / half-life), whether it was in the cut's table (aged to the cut) or counted after."""
    monkeypatch.setattr(cooc_live, "BLOCK_ROWS", block_rows)
    monkeypatch.setattr(cooc_live, "DENSE_BLOCK_ROWS", block_rows)
    half_life, every_days = 3.0, 1.0
    cut_s = CUT.astype("datetime64[s]").astype(np.int64)
    rng = np.random.default_rng(6)
    before = _events(rng, 30)
    before = (before[0], before[1], before[2] - np.timedelta64(20 * 86400, "s"))  # the training period
    r, c, v = window_pairs(before[0][:, :-1], before[1], 3, 0.6, False)
    t_before = np.concatenate(cooc_live._times(before[0][:, :-1], before[1], before[2], 3))
    base = CoocTable.from_coo([(r, c, v * age(t_before, cut_s, half_life))], N, 3, 0.6, half_life, int(cut_s))
    events = [_events(rng, 30), _events(rng, 25)]
    live = LiveCounts.from_events(base, events, CUT, every_days, False)
    hist, _, ts = _events(rng, 40)
    every = np.timedelta64(int(every_days * 86400e9), "ns")
    expected = np.empty((hist.shape[0], N))
    for i in range(hist.shape[0]):
        start = CUT + max(0, (ts[i] - CUT) // every) * every
        start_s = start.astype("datetime64[s]").astype(np.int64)
        parts = [(r, c, v * age(t_before, start_s, half_life))]
        for h, item, t in events:
            ok = t < start
            pr, pc, pv = window_pairs(h[ok, :-1], item[ok], 3, 0.6, False)
            pt = np.concatenate(cooc_live._times(h[ok, :-1], item[ok], t[ok], 3))
            parts.append((pr, pc, pv * age(pt, start_s, half_life)))
        table = CoocTable.from_coo([tuple(np.concatenate([p[j] for p in parts]) for j in range(3))], N, 3, 0.6)
        expected[i] = table.window_scores(hist[i:i + 1])[0]
    np.testing.assert_allclose(live.window_scores(hist, ts), expected, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(live.window_scores_sparse(hist, ts).toarray(), expected, rtol=1e-5, atol=1e-9)


def age(t: np.ndarray, at_s: float, half_life_days: float) -> np.ndarray:
    """2^-((at - t) / half-life) for datetime64 t, written out (not CoocTable.aged)."""
    t_s = np.asarray(t, "datetime64[s]").astype(np.int64)
    return 0.5 ** ((at_s - t_s) / (half_life_days * 86400.0))


def test_an_aged_table_round_trips_and_removes_events_at_their_weight(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    cut_s = int(CUT.astype("datetime64[s]").astype(np.int64))
    hist, item, ts = _events(rng, 20)
    ts = ts - np.timedelta64(15 * 86400, "s")
    r, c, v = window_pairs(hist[:, :-1], item, 3, 0.6, False)
    t = np.concatenate(cooc_live._times(hist[:, :-1], item, ts, 3))
    table = CoocTable.from_coo([(r, c, v * age(t, cut_s, 5.0))], N, 3, 0.6, 5.0, cut_s)
    table.save(tmp_path / "t.npz")
    again = CoocTable.load(tmp_path / "t.npz", N)
    assert (again.half_life_days, again.ref_s) == (5.0, cut_s)
    ts_s = ts.astype("datetime64[s]").astype(np.int64)
    emptied = again.without(hist[:, :-1], item, ts_s=ts_s)
    assert emptied.counts.size == 0  # every pair was made by these events, at these weights
    with pytest.raises(ValueError, match="times"):
        again.without(hist[:, :-1], item)
    with np.load(tmp_path / "t.npz") as z:
        half = {k: z[k] for k in z.files if k != "ref_s"}
    np.savez(tmp_path / "half.npz", **half)
    with pytest.raises(ModelFileError, match="ref_s"):
        CoocTable.load(tmp_path / "half.npz", N)


@pytest.mark.parametrize("cells", [2**23, 1])  # the dense bincount, and scipy's COO -> CSR past the bound
def test_summed_csr_sums_repeats_in_csr_order(cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cooc_live, "SUM_DENSE_CELLS", cells)
    rng = np.random.default_rng(8)
    rows, cols, vals = rng.integers(0, 5, 60), rng.integers(0, 7, 60), rng.random(60)
    got = cooc_live.summed_csr(rows, cols, vals, (5, 7))
    expected = np.zeros((5, 7))
    np.add.at(expected, (rows, cols), vals)
    np.testing.assert_allclose(got.toarray(), expected)
    assert got.nnz == np.count_nonzero(expected)  # no repeats left
    for i in range(5):  # each row's columns strictly ascending: canonical CSR
        assert np.all(np.diff(got.indices[got.indptr[i]:got.indptr[i + 1]]) > 0)


def test_a_call_within_one_refresh_reads_the_same_bits_as_one_spanning_refreshes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A call whose rows all read one summed table takes its product as the output; the same rows
    in a call that also spans another refresh are copied into a shared one: bit for bit the same."""
    monkeypatch.setattr(cooc_live, "DENSE_BLOCK_ROWS", 5)
    rng = np.random.default_rng(5)
    base = _base(rng)
    live = LiveCounts.from_events(base, [_events(rng, 60)], CUT, 1.0, False)
    hist, _, _ = _events(rng, 11)
    ts = np.full(11, CUT + np.timedelta64(4 * 86400 + 60, "s"))
    ts[-1] = CUT + np.timedelta64(86400 + 60, "s")  # the last row in another refresh, expanded
    alone = live.window_scores(hist[:-1], ts[:-1])
    assert np.array_equal(alone, live.window_scores(hist, ts)[:-1])
    many = np.r_[hist[:3], np.tile(hist, (30, 1))]  # more rows than a chunk: copied into the output
    assert np.array_equal(base.window_scores(hist[:3]), base.window_scores(many)[:3])
