"""UserHistory: what a user saw before a position, on hand-computed histories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_nodes.errors import EdgeDataError
from edge_nodes.learning.history import UserHistory


def _table(tmp_path: Path) -> Path:
    path = tmp_path / "history" / "edge_id=edge-00"
    path.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": ["U1", "U2"], "items": [[3, 1, 3, 2], [4]]}), path / "part-0.parquet")
    return path


def test_seen_before_counts_only_earlier_positions(tmp_path: Path) -> None:
    h = UserHistory.from_table(_table(tmp_path), n_items=10, extra_users=np.array(["U3"]))
    u1, u2, u3 = h.codes(np.array(["U1", "U2", "U3"]))
    assert h.length.tolist() == [4, 1, 0]
    cand = np.array([[3, 1, 2, 4, -1]] * 4)
    seen = h.seen_before(np.array([u1, u1, u1, u2]), np.array([0, 1, 3, 1]), cand)
    assert seen.tolist() == [[False, False, False, False, False],   # nothing before position 0
                             [True, False, False, False, False],    # item 3 at position 0
                             [True, True, False, False, False],     # 3, 1 (2 is at position 3 itself)
                             [False, False, False, True, False]]    # U2 saw 4
    assert not h.seen_before(np.array([u3]), np.array([0]), np.array([[3]])).any()
    assert h.codes(np.array(["nobody"])).tolist() == [-1]


def test_extend_is_causal_within_a_batch(tmp_path: Path) -> None:
    h = UserHistory.from_table(_table(tmp_path), n_items=10, extra_users=np.array(["U3"]))
    u1, u2, u3 = h.codes(np.array(["U1", "U2", "U3"])).tolist()
    pos = h.extend(np.array([u3, u1, u3]), np.array([5, 6, 7]))
    assert pos.tolist() == [0, 4, 1]
    # after its own request (position + 1), a user has seen it; U3's 7 is not seen at its 5
    seen = h.seen_before(np.array([u3, u1, u3]), pos + 1, np.array([[5, 7], [6, 3], [7, 5]]))
    assert seen.tolist() == [[True, False], [True, True], [True, True]]
    with pytest.raises(EdgeDataError):
        h.extend(np.array([-1]), np.array([1]))


def test_missing_table_says_which_stage_to_run(tmp_path: Path) -> None:
    with pytest.raises(EdgeDataError, match="edgecache features"):
        UserHistory.from_table(tmp_path / "nope", n_items=3)


def test_the_replay_reads_each_request_at_its_own_position(tmp_path: Path) -> None:
    from simulation.replay.streams import EdgeStream, with_history
    n = 4
    stream = EdgeStream("edge-00", item=np.array([5, 6, 7, 8]), user=np.array(["U1", "U3", "U1", "U2"]),
                        device_idx=np.zeros(n, np.int64), hour=np.zeros(n, np.int64),
                        ts=np.zeros(n, "datetime64[ns]"), hist=np.full((n, 2), -1))
    out, h = with_history(stream, _table(tmp_path), 10)
    assert h is not None and out.at is not None
    assert out.at.tolist() == [5, 1, 6, 2]  # U1 had 4 events, U3 (new) none, U2 one; own request included
    codes = h.codes(out.user)
    # U1's first test request has seen 5 but not its later 7; its second has seen both
    assert h.seen_before(codes[[0, 2]], out.at[[0, 2]], np.array([[5, 7], [5, 7]])).tolist() == [
        [True, False], [True, True]]
    assert [b.at.tolist() for b in out.batches(3) if b.at is not None] == [[5, 1, 6], [2]]
    assert with_history(stream, tmp_path / "none", 10) == (stream, None)
