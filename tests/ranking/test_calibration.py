"""Logit calibration (ranking/calibration.py) against known probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from ranking.calibration import EPS, LogitCalibrator


def sample(n: int, scale: float, shift: float, seed: int = 0):
    """Raw logits z whose true probability is sigmoid(scale * z + shift)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    y = (rng.random(n) < expit(scale * z + shift)).astype(float)
    return z, y


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_recovers_the_true_probability(method):
    z, y = sample(20000, scale=0.5, shift=-1.0)
    cal = LogitCalibrator(method).fit(z, y)
    grid = np.linspace(-2, 2, 9)
    truth = expit(0.5 * grid - 1.0)
    got = cal.predict(grid)
    assert np.abs(got - truth).max() < (0.02 if method == "platt" else 0.05)
    assert np.abs(expit(grid) - truth).max() > 0.2                     # the raw sigmoid is far off
    assert np.all(np.diff(got) >= 0)                                    # monotone: ranking kept
    assert cal.fitted_method == method


def test_none_and_single_class_use_the_sigmoid():
    z = np.array([-30.0, 0.0, 2.0])
    np.testing.assert_allclose(LogitCalibrator("none").fit(z, [0, 1, 0]).predict(z),
                               np.clip(expit(z), EPS, 1 - EPS))
    one_class = LogitCalibrator("platt").fit(z, [1, 1, 1])
    assert one_class.fitted_method == "none"
    np.testing.assert_allclose(one_class.predict(z), np.clip(expit(z), EPS, 1 - EPS))
    assert LogitCalibrator("isotonic").fit(z, [0, 1, 1]).predict(np.zeros(0)).shape == (0,)


@pytest.mark.parametrize("method", ["platt", "isotonic", "none"])
def test_save_load_round_trip(tmp_path, method):
    z, y = sample(2000, scale=1.2, shift=0.3, seed=1)
    cal = LogitCalibrator(method).fit(z, y)
    cal.save(tmp_path / "c.skops")
    back = LogitCalibrator.load(tmp_path / "c.skops")
    np.testing.assert_array_equal(back.predict(z), cal.predict(z))
    assert (back.method, back.fitted_method) == (cal.method, cal.fitted_method)
