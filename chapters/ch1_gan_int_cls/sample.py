"""Sampling from a generator conditioned on one text vector (chapters 1 and 2): N images of a caption, or
GAN-INT's walk between two captions (Reed et al. §4.3: the generator sees β·t1 + (1 − β)·t2)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from t2igan.training.harness import check_sample_count, sample_noise, sample_path, save_sample_grid


def sample_captions(run, generate: Callable, encode: Callable[[str], np.ndarray], noise_dim: int, options) -> str:
    """N images of ``options.text``, or an 8-step interpolation towards ``options.interpolate_to``.

    ``generate(noise, text)`` → images (B, H, W, 3) in [-1, 1]; ``encode(caption)`` → one text vector.
    """
    from t2igan.sampling import interpolation_weights

    n = options.n
    check_sample_count(n)
    first = encode(options.text)
    noise = sample_noise(n, noise_dim, options.sample_seed)
    if options.interpolate_to:
        second = encode(options.interpolate_to)
        text = np.stack([(1 - b) * first + b * second for b in interpolation_weights(8)])  # (8, D)
        images = np.asarray(generate(np.repeat(noise, 8, axis=0), np.tile(text, (n, 1))))
        images = images.reshape(n, 8, *images.shape[1:])
    else:
        images = np.asarray(generate(noise, np.repeat(first[None], n, axis=0)))[None]
    return save_sample_grid(images, sample_path(run, options.text, options.sample_seed, options.output))
