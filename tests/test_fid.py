import numpy as np
import pytest

from t2igan.metrics.fid import covariance_warnings, fid_from_features, frechet_distance, statistics


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


def test_singular_covariances_are_said_not_hidden():
    """Issue 18: pytorch-fid raises on 120 images at 2,048 dimensions; the eigen form gives a number, so the
    number comes with a sentence. Healthy statistics get none; NaN statistics get no number at all."""
    rng = np.random.default_rng(0)
    few = statistics(rng.standard_normal((120, 2048)))
    warnings = covariance_warnings(few[1], few[1], 120, 120)
    assert len(warnings) == 2 and warnings[0].startswith("120 reference images for 2048-d features: the covariance "
                                                          "is singular (rank ≤ 119)")
    healthy = statistics(rng.standard_normal((400, 16)))
    assert covariance_warnings(healthy[1], healthy[1], 400, 400) == []
    repeated = statistics(np.repeat(rng.standard_normal((3, 16)), 100, axis=0))  # 300 images, 3 distinct
    assert covariance_warnings(healthy[1], repeated[1]) == [
        "the generated covariance is singular (rank 2 of 16; repeated or blank images?), so the FID is biased upwards"]
    dead_unit = rng.standard_normal((400, 16)) * (np.arange(16) > 0)  # a ReLU unit that never fires
    assert covariance_warnings(statistics(dead_unit)[1], statistics(dead_unit)[1], 400, 400, check_rank=False) == []
    with pytest.raises(ValueError, match="NaN or inf"):
        frechet_distance(np.full(3, np.nan), np.eye(3), np.zeros(3), np.eye(3))
