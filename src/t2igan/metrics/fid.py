"""Fréchet distance between two sets of features, exactly as TTUR / pytorch-fid compute it.

    FID = ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr √(Σ1 Σ2)

float64 and unbiased covariances, as the references. The square root uses the symmetric eigen form
(SciPy's ``sqrtm(disp=False)`` is gone in SciPy 1.18, and SciPy is not a dependency):
Tr √(Σ1 Σ2) = Σ √λᵢ(√Σ1 Σ2 √Σ1), with the tiny negative eigenvalues that rounding leaves clipped to 0.
This form is real and finite for any finite statistics, singular ones included, so it needs no 1e-6
retry (pytorch-fid's, for ``sqrtm`` failures) and never raises where pytorch-fid raises "Imaginary
component" (a singular product, e.g. 120 images at 2,048 dimensions). A number from singular statistics
is still biased upwards and not comparable: :func:`covariance_warnings` says so, and every evaluation
puts what it says on the protocol card and in the results file.
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


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"Feature statistics differ in shape: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}.")
    if not all(np.isfinite(x).all() for x in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("Feature statistics hold NaN or inf (from non-finite images or features): no FID.")
    trace_root = _trace_sqrt_product(sigma1, sigma2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root)


def covariance_rank(sigma) -> int:
    """Numerical rank of a covariance (eigenvalues above the float64 rounding level of the largest)."""
    values = np.linalg.eigvalsh((np.asarray(sigma, np.float64) + np.asarray(sigma, np.float64).T) / 2)
    return int((values > values.max(initial=0.0) * len(values) * np.finfo(np.float64).eps).sum())


def covariance_warnings(real_sigma, fake_sigma, real_count: int | None = None, fake_count: int | None = None,
                        check_rank: bool = True) -> list[str]:
    """What makes an FID from these statistics biased or incomparable, in sentences (empty: nothing).

    A covariance of N feature vectors has rank ≤ N − 1, so fewer images than feature dimensions (+ 1) give a
    singular one; a rank below that (repeated or blank images) is singular too. ``*_count`` is the number of
    images (None for statistics loaded from a file: then only the rank is looked at). ``check_rank=False``
    for features with units that are constant for every image (the oracle's dead ReLUs): those directions
    are null in both covariances and bias nothing."""
    warnings = []
    for name, sigma, count in (("reference", real_sigma, real_count), ("generated", fake_sigma, fake_count)):
        dimension = np.atleast_2d(sigma).shape[0]
        if count is not None and count <= dimension:
            warnings.append(f"{count} {name} images for {dimension}-d features: the covariance is singular "
                            f"(rank ≤ {count - 1}), so the FID is biased upwards and comparable only with an FID "
                            f"of as many images (papers use 30,000 generated images)")
            continue
        rank = covariance_rank(sigma) if check_rank else dimension
        if rank < dimension:
            warnings.append(f"the {name} covariance is singular (rank {rank} of {dimension}; repeated or blank images?), "
                            "so the FID is biased upwards")
    return warnings


#: the generated-image count of the papers' FIDs (AttnGAN, DM-GAN; DF-GAN 29,120, RAT-GAN 29,280 on CUB)
PROTOCOL_SAMPLES = 30000


def sample_count_warning(count: int, protocol_count: int = PROTOCOL_SAMPLES) -> str | None:
    """A sentence when an FID's generated-image count is not the papers' (FID is biased by the count)."""
    if count == protocol_count:
        return None
    return (f"{count:,} generated images, the papers' protocol uses {protocol_count:,}: FID falls as the count grows, "
            f"so this value is comparable only with FIDs of {count:,} images")


def family_mismatch(stored: dict, extractor) -> str | None:
    """Why a statistics file cannot be used with ``extractor`` (None: it can, or the file does not say)."""
    family = stored.get("family")
    if family and family != extractor.family:
        return (f"holds statistics of features of family {family}, but the {extractor.name} protocol's are of family "
                f"{extractor.family}: an FID across two networks measures nothing")
    made_with = stored.get("image_pipeline")
    if made_with and made_with != extractor.protocol_input:
        return (f"holds statistics of images fed as \"{made_with}\", but {extractor.name} feeds them as "
                f"\"{extractor.protocol_input}\": an FID across the two compares two pipelines")
    return None


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
