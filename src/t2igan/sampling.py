"""Image grids and PNG output shared by the sampler, the callbacks and evaluation."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] floats → uint8 RGB (the round trip every saved sample goes through)."""
    return np.clip(np.rint((np.asarray(images, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, padding: int = 2, background: int = 255) -> np.ndarray:
    """(rows, cols, H, W, 3) or (N, H, W, 3) images in [-1, 1] → one uint8 grid image."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[None]
    if images.ndim != 5 or images.shape[-1] != 3:
        raise ValueError(f"Expected images of shape (rows, cols, H, W, 3) or (N, H, W, 3); got {images.shape}.")
    rows, cols, height, width, _ = images.shape
    grid = np.full((rows * (height + padding) + padding, cols * (width + padding) + padding, 3), background, np.uint8)
    pixels = to_uint8(images)
    for r in range(rows):
        for c in range(cols):
            top, left = padding + r * (height + padding), padding + c * (width + padding)
            grid[top : top + height, left : left + width] = pixels[r, c]
    return grid


def save_png(image: np.ndarray, path: str, scale: int = 1) -> str:
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    picture = Image.fromarray(image)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    picture.save(path)
    return path


def interpolation_weights(steps: int) -> np.ndarray:
    """β values from 0 to 1 for caption interpolation (GAN-INT's use case)."""
    if steps < 2:
        raise ValueError(f"Interpolation needs at least 2 steps, got {steps}.")
    return np.linspace(0.0, 1.0, steps, dtype=np.float32)


def stages_side_by_side(stage_images, rows: int, columns: int, size: int) -> np.ndarray:
    """Multi-stage samples as one grid: rows = captions, each stage's ``columns`` images (the same
    noise) side by side, up-sampled (nearest) to the largest ``size``. → (rows, stages·columns, size, size, 3)."""
    import tensorflow as tf

    blocks = [tf.image.resize(images, [size, size], "nearest").numpy().reshape(rows, columns, size, size, 3)
              for images in stage_images]
    return np.concatenate(blocks, axis=1)


def truncate_noise(z: np.ndarray, threshold: float = 2.0, scale: float = 1.0) -> np.ndarray:
    """Map N(0, 1) draws to ``scale`` × N(0, 1) truncated to ±``threshold`` (BigGAN's truncation trick; DF-GAN
    samples with threshold 2, scale 0.88). By the inverse CDF, so the same z always gives the same row."""
    from statistics import NormalDist

    normal = NormalDist()
    low, high = normal.cdf(-threshold), normal.cdf(threshold)
    cdf = np.vectorize(normal.cdf)(np.asarray(z, np.float64))
    u = np.clip(low + cdf * (high - low), 1e-12, 1 - 1e-12)
    return (scale * np.vectorize(normal.inv_cdf)(u)).astype(np.float32)


def heat_overlay(image: np.ndarray, heat: np.ndarray, normalise: str = "max") -> np.ndarray:
    """``image`` (H, W, 3) in [-1, 1] tinted orange where the map ``heat`` (h, w) is high; the map is resized
    to the image (bilinear) and scaled to [0, 1] by its max (``"max"``) or its min..max range (``"range"``)."""
    import tensorflow as tf

    size = image.shape[:2]
    heat = tf.image.resize(np.asarray(heat, np.float32)[..., None], size, "bilinear").numpy()
    if normalise == "range":
        heat = (heat - heat.min()) / max(float(np.ptp(heat)), 1e-12)
    else:
        heat = heat / max(float(heat.max()), 1e-8)
    return np.clip(0.35 * image + (heat * 2 - 1) * np.array([1.0, 0.6, 0.2]) * 0.9, -1, 1).astype(np.float32)
