"""Fréchet distance between two sets of features, exactly as TTUR / pytorch-fid compute it.

    FID = ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr √(Σ1 Σ2)

Numerical handling follows the reference: float64, unbiased covariances; if the
matrix square root has non-finite entries, retry with 1e-6 added to both
diagonals; if it is complex with a noticeable imaginary diagonal, fail. The
square root uses the symmetric eigen form (SciPy's ``sqrtm(disp=False)`` is
gone in SciPy 1.18, and SciPy is not a dependency):
Tr √(Σ1 Σ2) = Σ √λᵢ(√Σ1 Σ2 √Σ1).
"""

from __future__ import annotations

import numpy as np


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"Need a (N ≥ 2, D) feature matrix, got shape {features.shape}.")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    root1 = _sqrt_psd(sigma1)
    values = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    return float(np.sqrt(np.clip(values, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"Feature statistics differ in shape: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}.")
    trace_root = _trace_sqrt_product(sigma1, sigma2)
    if not np.isfinite(trace_root):
        offset = np.eye(sigma1.shape[0]) * eps
        trace_root = _trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(*statistics(real), *statistics(fake))


class RunningStatistics:
    """μ and the unbiased Σ of features that arrive in batches (float64 sums), so a 30,000-image
    evaluation never holds all its features at once. Same values as :func:`statistics` on the stack."""

    def __init__(self):
        self.count, self.total, self.outer = 0, None, None

    def update(self, features) -> None:
        features = np.asarray(features, np.float64)
        if features.ndim != 2:
            raise ValueError(f"Need (N, D) features, got shape {features.shape}.")
        if self.total is None:
            self.total, self.outer = np.zeros(features.shape[1]), np.zeros((features.shape[1],) * 2)
        self.count += len(features)
        self.total += features.sum(axis=0)
        self.outer += features.T @ features

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count < 2:
            raise ValueError(f"Need at least 2 feature vectors, got {self.count}.")
        mu = self.total / self.count
        return mu, (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)


def save_statistics(path: str, mu, sigma, protocol: dict | None = None) -> None:
    """``mu``/``sigma`` in the layout of DF-GAN's and DM-GAN's ``.npz`` files, plus the protocol (JSON)."""
    import json

    np.savez(path, mu=mu, sigma=sigma, protocol=json.dumps(protocol or {}, ensure_ascii=False))


def load_statistics(path: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """``mu``, ``sigma`` and the stored protocol (empty for files from DF-GAN / DM-GAN) of an ``.npz``."""
    import json

    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:  # pickled objects refused, or not an .npz at all
        raise ValueError(f"{path} is not a statistics .npz of plain arrays ({error}).") from None
    with data:
        if "mu" not in data.files or "sigma" not in data.files:
            raise ValueError(f"{path} has arrays {data.files}; reference statistics need 'mu' and 'sigma' "
                             "(the layout of DF-GAN's bird_val256_FIDK0.npz and of this project's cache).")
        protocol = json.loads(str(data["protocol"])) if "protocol" in data.files else {}
        return data["mu"].astype(np.float64), data["sigma"].astype(np.float64), protocol
