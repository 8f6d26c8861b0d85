"""``python -m t2igan.evaluate_folders`` (``make eval``) on two image folders: protocol card, values, cached statistics."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, time_limit


def evaluate(*args):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "t2igan.evaluate_folders", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=time_limit(300), env=environment)


def write_folder(folder, seed, count=4, size=24, shift=0.0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = np.clip(rng.uniform(0, 255, (size, size, 3)) * (1 - shift) + 255 * shift, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def test_two_folders_print_the_protocol_and_reuse_cached_statistics(tmp_path):
    write_folder(tmp_path / "real", 0)
    write_folder(tmp_path / "fake", 1, shift=0.5)
    stats, first, second = tmp_path / "real.npz", tmp_path / "first.json", tmp_path / "second.json"
    # Random weights (tests): the real FID Inception file is never downloaded here.
    result = evaluate(f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'fake'}", "--random_weights_for_tests",
                      "--splits=2", "--batch_size=4", f"--save_real_stats={stats}", f"--output={first}")
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("Evaluation protocol", "feature_extractor", "RANDOM weights", "→ 2x − 1", "4 files in",
                 "4, remainder kept", "fid", "inception_score"):
        assert line in result.stdout, f"{line!r} missing from:\n{result.stdout}"
    values = json.loads(first.read_text())["results"]
    assert values["fid"] > 0 and values["inception_score"] >= 1.0
    # Issue 18, no silent numbers: 4 images for 2,048-d features give singular covariances; said on the card
    # (and as a warning) and kept in the results file. From the .npz below, the rank says it.
    warning = "4 reference images for 2048-d features: the covariance is singular (rank ≤ 3)"
    assert warning in result.stdout and "fid_warning" in result.stdout and "WARNING" in result.stderr
    assert warning in json.loads(first.read_text())["protocol"]["fid_warning"]
    # The cached reference statistics give the same FID as the folder they came from; IS from a user's
    # classifier (a .keras model on 299² images) with its background class dropped.
    import keras

    classifier = keras.Sequential([keras.Input((299, 299, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    classifier.save(tmp_path / "classifier.keras")
    again = evaluate(f"--real={stats}", f"--fake={tmp_path / 'fake'}", "--random_weights_for_tests", "--splits=2",
                     f"--output={second}", f"--classifier={tmp_path / 'classifier.keras'}", "--drop_first_class")
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads(second.read_text())
    assert report["results"]["fid"] == pytest.approx(values["fid"], rel=1e-6)
    assert "your classifier" in report["protocol"]["inception_score"] and "background" in report["protocol"]["inception_score"]
    assert 1.0 <= report["results"]["inception_score"] <= 3.0  # 3 classes left after dropping the background
    assert "TensorFlow 2.21" in report["protocol"]["software"]
    assert "'images': 4" in json.loads(second.read_text())["protocol"]["reference"]  # the stored protocol
    assert "the reference covariance is singular (rank 3 of 2048" in report["protocol"]["fid_warning"]
    assert report["protocol"]["sample_count_warning"].startswith("4 generated images, the papers' protocol uses 30,000")


def test_clear_errors_without_weights_or_images(tmp_path):
    write_folder(tmp_path / "real", 0, count=1)
    no_weights = evaluate(f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'real'}", "--inception_weights=")
    assert no_weights.returncode == 2 and "pt_inception-2015-12-05" in no_weights.stderr
    too_few = evaluate(f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'real'}", "--random_weights_for_tests")
    assert too_few.returncode == 2 and "holds 1 image" in too_few.stderr
    # Statistics whose file names another image pipeline (here the earlier (x − 128)/128) are refused.
    from t2igan.metrics.fid import save_statistics

    save_statistics(str(tmp_path / "old.npz"), np.zeros(2048), np.eye(2048), {
        "image_pipeline": "[-1, 1] → ×127.5+127.5 → bilinear resize to 299 (half-pixel, no antialias) → (x − 128)/128; RGB"})
    write_folder(tmp_path / "two", 1, count=2)
    old = evaluate(f"--real={tmp_path / 'old.npz'}", f"--fake={tmp_path / 'two'}", "--random_weights_for_tests")
    assert old.returncode == 2 and "holds statistics of images fed as" in old.stderr and "recompute the statistics" in old.stderr
    # A file of another family (DF-GAN's network, family B) with the family-A protocol: refused, naming both.
    save_statistics(str(tmp_path / "family_b.npz"), np.zeros(2048), np.eye(2048),
                    {"family": "B: torchvision's ImageNet Inception-v3 (avg-pooled Mixed_7c)"})
    other = evaluate(f"--real={tmp_path / 'family_b.npz'}", f"--fake={tmp_path / 'two'}", "--random_weights_for_tests")
    assert other.returncode == 2 and "of family B: torchvision" in other.stderr and "family A: the 2015" in other.stderr
    # ... and accepted by the torchvision protocol (family B), whose card says it and that it has no IS.
    same = evaluate(f"--real={tmp_path / 'family_b.npz'}", f"--fake={tmp_path / 'two'}", "--random_weights_for_tests",
                    "--extractor=torchvision", f"--output={tmp_path / 'b.json'}")
    assert same.returncode == 0, same.stderr[-3000:]
    card = json.loads((tmp_path / "b.json").read_text())["protocol"]
    assert "family B" in card["feature_extractor"] and "x·(σ_c/0.5) + (μ_c − 0.5)/0.5" in card["image_pipeline"]
    assert card["inception_score"] == "not with the torchvision protocol (its network has no classifier)"
    not_run = evaluate(f"--run={tmp_path}")
    assert not_run.returncode == 2 and "not a run folder" in not_run.stderr
