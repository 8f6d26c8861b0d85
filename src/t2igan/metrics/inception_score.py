"""Inception Score, as improved-gan and the StackGAN inception model compute it.

For each of ``splits`` contiguous splits of the N predictions:
    IS_k = exp( mean_i Σ_j p_ij (log p_ij − log p̄_j) ),   p̄ = mean_i p_i over the split,
reported as mean ± population std over the splits. The StackGAN fine-tuned CUB/Oxford classifiers have
a background class 0 that is dropped *before* the softmax (``drop_first_class``).
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, drop_first_class: bool = False) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    if drop_first_class:
        logits = logits[:, 1:]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def inception_score(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim != 2 or len(probabilities) < splits:
        raise ValueError(f"Need (N ≥ splits={splits}, classes) probabilities, got shape {probabilities.shape}.")
    scores = []
    n = len(probabilities)
    for k in range(splits):  # improved-gan's boundaries: [k·N // splits, (k + 1)·N // splits)
        part = probabilities[k * n // splits : (k + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = part * (np.log(part + 1e-30) - np.log(marginal + 1e-30))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
