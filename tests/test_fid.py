import numpy as np
import pytest

from t2igan.metrics.fid import fid_from_features, frechet_distance, statistics


def reference_draws():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2000, 64))
    b = rng.standard_normal((2000, 64)) @ (np.eye(64) + 0.1 * rng.standard_normal((64, 64))) + 0.3
    c = rng.standard_normal((50, 64))
    d = rng.standard_normal((50, 64)) + 0.1
    return a, b, c, d


def test_reference_values():
    a, b, c, d = reference_draws()
    np.testing.assert_allclose(a[0, :3], [0.12573022, -0.13210486, 0.64042265], rtol=1e-7)
    assert fid_from_features(a, b) == pytest.approx(28.4878585664041, rel=1e-6)
    # N < d: singular covariances; the reference's two forms agree to ~1e-8 only.
    assert fid_from_features(c, d) == pytest.approx(42.96684747988212, rel=1e-6)


def test_identical_sets_and_degenerate_cases():
    a, _, _, _ = reference_draws()
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    constant = np.ones((10, 4))
    assert frechet_distance(*statistics(constant), *statistics(constant + 1.0)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="N ≥ 2"):
        statistics(np.ones((1, 4)))
    with pytest.raises(ValueError, match="differ in shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
