"""Sampling from a generator conditioned on one text vector (chapters 1 and 2): N images of a caption, or
GAN-INT's walk between two captions (Reed et al. §4.3: the generator sees β·t1 + (1 − β)·t2)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from t2igan.training.harness import check_sample_count, sample_noise, sample_path, save_sample_grid


def interpolation_grid(generate: Callable, first: np.ndarray, second: np.ndarray, noise: np.ndarray,
                       steps: int = 8) -> np.ndarray:
    """GAN-INT at sampling time: a walk from caption embedding t1 (``first``, (D,)) to t2 (``second``, (D,)).

    Column j of the grid shows t_j = (1 − β_j)·t1 + β_j·t2 with β_j = ``interpolation_weights(steps)``
    (β from 0 to 1: column 0 is exactly t1, the last column t2); row k keeps one noise vector z_k
    (``noise`` (n, Z)), so only the text changes along a row. One call ``generate(noise_rows, text_rows)``
    with all n · steps rows (row k · steps + j is (z_k, t_j)). Returns the images (n, steps, H, W, 3).
    """
    from t2igan.sampling import interpolation_weights

    # BEGIN TASK interpolation_walk (interpolation_grid)
    text = np.stack([(1 - b) * first + b * second for b in interpolation_weights(steps)])  # (steps, D)
    images = np.asarray(generate(np.repeat(noise, steps, axis=0), np.tile(text, (len(noise), 1))))
    return images.reshape(len(noise), steps, *images.shape[1:])
    # END TASK interpolation_walk


def sample_captions(run, generate: Callable, encode: Callable[[str], np.ndarray], noise_dim: int, options) -> str:
    """N images of ``options.text``, or an 8-step interpolation towards ``options.interpolate_to``.

    ``generate(noise, text)`` → images (B, H, W, 3) in [-1, 1]; ``encode(caption)`` → one text vector.
    """
    n = options.n
    check_sample_count(n)
    first = encode(options.text)
    noise = sample_noise(n, noise_dim, options.sample_seed)
    path = sample_path(run, options.text, options.sample_seed, options.output)
    if options.interpolate_to:
        images = interpolation_grid(generate, first, encode(options.interpolate_to), noise, 8)
        return save_sample_grid(interpolation_picture(images, options.text, options.interpolate_to), path)
    images = np.asarray(generate(noise, np.repeat(first[None], n, axis=0)))[None]
    return save_sample_grid(images, path, caption=options.text)


def interpolation_picture(images: np.ndarray, first: str, second: str) -> np.ndarray:
    """The walk (n, steps, H, W, 3) as a uint8 picture: "from: t1" and "to: t2" at its ends, β over each column."""
    from t2igan.sampling import enlarge, interpolation_weights, label_columns, label_ends, make_grid, readable_scale

    betas = [f"beta {round(float(beta), 2):g}" for beta in interpolation_weights(images.shape[1])]  # the font has no β
    grid = make_grid(enlarge(images, readable_scale(images.shape[2], 64)))
    return label_ends(label_columns(grid, betas), first, second)
