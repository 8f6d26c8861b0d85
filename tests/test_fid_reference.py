"""FID against pytorch-fid itself (the optional torch extra: skipped cleanly without torch and pytorch-fid).

Random weights in pytorch-fid's own FID Inception (its blocks, assembled as ``fid_inception_v3`` does but
without its download), saved as a ``.pth``, converted with ``python -m t2igan.metrics.inception convert``,
loaded here: the pool3 features of the same PNG files through both pipelines (pytorch-fid's loader,
``ToTensor``, resize and 2x − 1; ours) agree to 1e-5, and so do the two Fréchet distances of the same
statistics. (A folder FID from both needs more than 2,048 images per folder, or pytorch-fid raises on the
singular covariance: too slow for a test on a CPU.)
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, time_limit

torch = pytest.importorskip("torch")
pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")
fid_score = pytest.importorskip("pytorch_fid.fid_score")


def random_fid_inception(seed=0):
    """pytorch-fid's FID Inception (its classes), every weight and BatchNorm statistic random."""
    torch.manual_seed(seed)
    m = pytorch_fid_inception
    inception = m._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inception.Mixed_5b = m.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = m.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = m.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = m.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = m.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = m.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = m.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = m.FIDInceptionE_1(1280)
    inception.Mixed_7c = m.FIDInceptionE_2(2048)
    # BatchNorm statistics measured on random images (one pass in training mode), so that every layer sees
    # inputs of unit scale and the features depend on the image (with unit statistics the signal fades
    # within a few blocks and any input pipeline gives the same features); γ and β random.
    batch_norms = [module for module in inception.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for module in batch_norms:
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.1)
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: exactly this batch's statistics
        inception.train()(torch.rand(8, 3, 299, 299) * 2 - 1)
    return inception.eval()


def test_features_and_frechet_distance_equal_pytorch_fid(tmp_path, monkeypatch):
    from t2igan.metrics.fid import frechet_distance
    from t2igan.metrics.inception import FidInception

    network = random_fid_inception()
    torch.save(network.state_dict(), tmp_path / "fid.pth")
    converted = subprocess.run([sys.executable, "-m", "t2igan.metrics.inception", "convert", str(tmp_path / "fid.pth"),
                                str(tmp_path / "fid.npz")], cwd=ROOT, capture_output=True, text=True,
                               timeout=time_limit(300), env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")})
    assert converted.returncode == 0, converted.stderr[-2000:]

    rng = np.random.default_rng(1)
    files = []
    for i, size in enumerate([64, 64, 32, 96, 256, 299]):  # up-sampling and an identity size, as generated images
        smooth = np.linspace(0, 255, size)[None, :, None] * rng.uniform(0.2, 1.0, 3)
        pixels = np.clip(smooth + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(pixels).save(files[-1])

    monkeypatch.setattr(pytorch_fid_inception, "fid_inception_v3", lambda: network)  # instead of its download
    reference_model = pytorch_fid_inception.InceptionV3([3]).eval()
    reference = np.concatenate([
        fid_score.get_activations([path], reference_model, batch_size=1, dims=2048, device="cpu", num_workers=0)
        for path in files])  # one at a time: the sizes differ

    ours_model = FidInception(str(tmp_path / "fid.npz"))
    ours = np.concatenate([ours_model.features(np.asarray(Image.open(path).convert("RGB"), np.float32)[None] / 127.5 - 1.0)
                           for path in files])
    assert reference.shape == ours.shape == (6, 2048) and reference.std() > 0.01
    # Measured: 4e-4 of a largest feature of 773 (5e-7 of it); the earlier (x − 128)/128 input gave 1.7 (2e-3).
    assert np.abs(ours - reference).max() <= 1e-5 * np.abs(reference).max()

    features = rng.standard_normal((3000, 2048)), rng.standard_normal((3000, 2048)) * 1.1 + 0.05
    statistics = [(x.mean(axis=0), np.cov(x, rowvar=False)) for x in features]
    expected = fid_score.calculate_frechet_distance(*statistics[0], *statistics[1])
    assert frechet_distance(*statistics[0], *statistics[1]) == pytest.approx(expected, rel=1e-5)
