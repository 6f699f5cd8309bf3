"""Calibration: PAV and ECE by hand, the isotonic fit repairs an overconfident predictor."""

from __future__ import annotations

import numpy as np

from simulation.replay.calibration import (
    CalibratedPredictor,
    Isotonic,
    Reliability,
    fit_isotonic,
    pav,
    summarize_calibration,
)
from simulation.replay.calibration import EdgeCalibration as EC


def test_pav_pools_adjacent_violators() -> None:
    # 0.2, 0.6, 0.4 (weights 1, 1, 3): 0.6 and 0.4 pool to (0.6 + 1.2) / 4 = 0.45
    np.testing.assert_allclose(pav(np.array([0.2, 0.6, 0.4]), np.array([1.0, 1.0, 3.0])), [0.2, 0.45, 0.45])
    np.testing.assert_allclose(pav(np.array([0.1, 0.2]), np.ones(2)), [0.1, 0.2])


def test_reliability_bins_and_ece_by_hand() -> None:
    # bin (0.2, 0.3]: p 0.25 twice, one came true (observed 0.5, gap 0.25);
    # bin (0.7, 1.0]: p 0.8 twice, both true (gap 0.2); p = 0 (no prediction) is ignored
    rel = Reliability().add(np.array([0.25, 0.25, 0.8, 0.8, 0.0]), np.array([True, False, True, True, True]))
    assert rel.ece() == round((2 * 0.25 + 2 * 0.2) / 4, 6)
    assert [(r["lo"], r["n"], r["predicted"], r["observed"]) for r in rel.rows()] == [(0.2, 2, 0.25, 0.5),
                                                                                       (0.7, 2, 0.8, 1.0)]
    assert Reliability().ece() is None


def test_isotonic_fit_repairs_an_overconfident_predictor() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.6, size=20000)
    hit = rng.random(p.size) < p / 3  # says p, is right p/3 of the time
    cal = fit_isotonic(p, hit)
    assert cal is not None
    before = Reliability().add(p, hit).ece()
    after = Reliability().add(cal(p), hit).ece()
    assert before is not None and after is not None and before > 0.08 and after < 0.01
    assert fit_isotonic(p[:100], hit[:100]) is None  # too little held-out data: no calibrator


class _Fixed:
    name = "fixed"

    def predict(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                users: np.ndarray | None = None, at: np.ndarray | None = None) -> np.ndarray:
        return np.tile(np.array([3, -1]), (hist.shape[0], 1))

    def predict_scored(self, hist: np.ndarray, device_idx: np.ndarray, hour: np.ndarray, k: int, *,
                       users: np.ndarray | None = None, at: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        return self.predict(hist, device_idx, hour, k), np.tile(np.array([0.5, 0.0]), (hist.shape[0], 1))


def test_calibrated_predictor_maps_probabilities_and_keeps_the_ranking() -> None:
    cal = CalibratedPredictor(_Fixed(), Isotonic(np.array([0.0, 1.0]), np.array([0.0, 0.2]), 1000))
    ids, probs = cal.predict_scored(np.zeros((2, 3), dtype=np.int64), np.zeros(2), np.zeros(2), 2)
    assert ids.tolist() == [[3, -1], [3, -1]]
    np.testing.assert_allclose(probs, [[0.1, 0.0], [0.1, 0.0]])


def test_summary_merges_edges() -> None:
    a = EC(None, Reliability().add(np.array([0.25]), np.array([True])), Reliability().add(np.array([0.25]),
                                                                                            np.array([True])))
    out = summarize_calibration({"edge-00": a})
    assert out["ece"] == out["ece_raw"] == 0.75 and out["calibrator"]["kind"] == "none"
    assert out["per_edge"]["edge-00"] == {"ece": 0.75, "ece_raw": 0.75, "calibrated": False}
