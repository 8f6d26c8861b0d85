"""The FID Inception built layer by layer (random weights: the real file is never downloaded in tests),
the loading path for pytorch-fid's state dict, IS and the streaming statistics."""

import os

import numpy as np
import pytest

from t2igan.metrics.fid import RunningStatistics, load_statistics, save_statistics, statistics
from t2igan.metrics.inception_score import inception_score, softmax


@pytest.fixture(scope="module")
def fid_inception():
    from t2igan.metrics.inception import FidInception

    return FidInception()


def test_same_convolutions_as_keras_inception_but_fid_pools(fid_inception):
    import keras

    keras_net = keras.applications.InceptionV3(weights=None, include_top=False)
    kernels = lambda model: sorted(tuple(layer.kernel.shape) for layer in model.layers  # noqa: E731
                                   if isinstance(layer, keras.layers.Conv2D))
    # Same 94 convolutions (torchvision / TF graph / Keras share Inception-v3's layout) …
    assert kernels(fid_inception.model) == kernels(keras_net) and len(kernels(keras_net)) == 94
    # … but Mixed_7c pools its pool branch with a max-pool (Keras' mixed10 averages), and BN has γ.
    names = [layer.name for layer in fid_inception.model.layers]
    assert "Mixed_7c.max_pool" in names and "Mixed_7b.avg_pool" in names
    shapes = fid_inception.state_shapes()
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
    assert shapes["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert shapes["fc.weight"] == (1008, 2048) and len(shapes) == 94 * 5 + 2


def test_average_pools_exclude_padding():
    """pytorch-fid's count_include_pad=False: a constant map stays constant at the borders."""
    import keras

    pooled = keras.layers.AveragePooling2D(3, strides=1, padding="same")(np.ones((1, 5, 5, 1), np.float32))
    np.testing.assert_allclose(np.asarray(pooled), 1.0, rtol=1e-6)


def test_preprocess_maps_the_range_and_size(fid_inception):
    images = np.full((2, 64, 64, 3), -1.0, np.float32)
    images[1] = 1.0
    out = np.asarray(fid_inception.preprocess(images))
    assert out.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(out[0], -1.0, atol=1e-6)  # 0   → 2·(0/255) − 1, as pytorch-fid
    np.testing.assert_allclose(out[1], 1.0, atol=1e-6)   # 255 → 2·(255/255) − 1 (not the graph's (255 − 128)/128)


def test_pytorch_fid_state_dict_loads_and_drives_the_features(fid_inception, tmp_path):
    from t2igan.metrics.inception import FidInception

    rng = np.random.default_rng(0)
    state = {key: (rng.standard_normal(shape) * 0.05).astype(np.float32) for key, shape in fid_inception.state_shapes().items()}
    for key in state:
        if key.endswith("running_var"):
            state[key] = np.abs(state[key]) + 1.0
    state["Mixed_5b.bn.num_batches_tracked"] = np.array(0)  # torch keeps these; they are ignored
    path = str(tmp_path / "fid_inception.npz")
    np.savez(path, **state)
    loaded = FidInception(path)
    conv = loaded.units["Mixed_7c.branch3x3_2a"][0]
    np.testing.assert_array_equal(np.asarray(conv.kernel), np.transpose(state["Mixed_7c.branch3x3_2a.conv.weight"], (2, 3, 1, 0)))
    norm = loaded.units["Conv2d_4a_3x3"][1]
    np.testing.assert_array_equal(np.asarray(norm.moving_variance), state["Conv2d_4a_3x3.bn.running_var"])
    images = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    features, logits = loaded.features(images), loaded.logits(images)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    assert np.all(features >= 0)  # pool3 averages ReLU outputs
    np.testing.assert_allclose(logits, features @ state["fc.weight"].T.astype(np.float64), rtol=1e-3, atol=1e-4)
    assert loaded.weights_sha256 and "fid_inception.npz" in loaded.describe()
    del state["fc.weight"]
    with pytest.raises(ValueError, match="missing.*fc.weight"):
        loaded.load(state)


def test_missing_weights_say_what_to_download():
    from t2igan.metrics.inception import FID_WEIGHTS_URL, FidInception

    with pytest.raises(FileNotFoundError) as error:
        FidInception(os.path.join("nowhere", "pt_inception.pth"))
    assert FID_WEIGHTS_URL in str(error.value) and "6726825d" in str(error.value) and "convert" in str(error.value)


def test_inception_score_reference_value_and_direct_computation():
    # metrics reference sheet §3: the rng of the FID reference draws, continued.
    rng = np.random.default_rng(0)
    for shape in ((2000, 64), (2000, 64), (64, 64), (50, 64), (50, 64)):
        rng.standard_normal(shape)
    logits = 3 * rng.standard_normal((1000, 50))
    mean, std = inception_score(softmax(logits), splits=10)
    assert mean == pytest.approx(8.611496160281785, rel=1e-9) and std == pytest.approx(0.5887853518640891, rel=1e-9)
    # Hand-made: two confident, different predictions → exp(log 2) = 2 in one split.
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert inception_score(p, splits=1) == pytest.approx((2.0, 0.0))
    # The background class is dropped before the softmax (StackGAN's fine-tuned CUB model).
    np.testing.assert_allclose(softmax(np.array([[50.0, 0.0, 0.0]]), drop_first_class=True), [[0.5, 0.5]])


def test_running_statistics_equal_the_batch_formula(tmp_path):
    features = np.random.default_rng(2).standard_normal((103, 7))
    running = RunningStatistics()
    for start in range(0, 103, 25):
        running.update(features[start : start + 25])
    mu, sigma = running.result()
    mu_ref, sigma_ref = statistics(features)
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-12)
    np.testing.assert_allclose(sigma, sigma_ref, rtol=1e-9, atol=1e-12)
    path = str(tmp_path / "stats.npz")
    save_statistics(path, mu, sigma, {"images": 103})
    loaded_mu, loaded_sigma, protocol = load_statistics(path)
    np.testing.assert_array_equal(loaded_mu, mu) and protocol == {"images": 103}
    np.savez(str(tmp_path / "dfgan.npz"), mu=mu, sigma=sigma)  # DF-GAN's layout: no protocol
    assert load_statistics(str(tmp_path / "dfgan.npz"))[2] == {}
    np.savez(str(tmp_path / "bad.npz"), m=mu)
    with pytest.raises(ValueError, match="'mu' and 'sigma'"):
        load_statistics(str(tmp_path / "bad.npz"))
