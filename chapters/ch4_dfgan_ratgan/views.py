"""What DF-GAN and RAT-GAN show besides their images: the affine modulation statistics and RAT-GAN's
discriminator attention, in sample PNGs and in TensorBoard (labelled, with a colour scale: each map is
stretched from its min to its max)."""

from __future__ import annotations

import numpy as np


def modulation_statistics_callback(gan, noise, ids, lengths, writer):
    """TensorBoard ``modulation/*``: per affine, mean and std of γ and β over the fixed grid's captions —
    RAT-GAN's controller gives every block its own (γ, β) from one LSTM; DF-GAN's MLPs see [z, s]."""
    import keras
    import tensorflow as tf

    class ModulationStatistics(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            _, statistics = gan.generate(noise, ids, lengths, return_modulation=True)
            with writer.as_default(step=int(gan.generator_optimizer.iterations.numpy())):
                for k, values in enumerate(statistics):
                    gamma_mean, gamma_std, beta_mean, beta_std = (float(v) for v in np.asarray(values))
                    tf.summary.scalar(f"modulation/gamma_mean/affine_{k:02d}", gamma_mean)
                    tf.summary.scalar(f"modulation/gamma_std/affine_{k:02d}", gamma_std)
                    tf.summary.scalar(f"modulation/beta_mean/affine_{k:02d}", beta_mean)
                    tf.summary.scalar(f"modulation/beta_std/affine_{k:02d}", beta_std)

    return ModulationStatistics()


def attention_overlay(images, maps):
    """Each image beside the same image tinted by the D's 8×8 attention (stretched per image; nearest, the
    map's own cells)."""
    import tensorflow as tf

    from t2igan.sampling import heat_overlay

    size = images.shape[1]
    heat = tf.image.resize(maps[..., None], [size, size], "nearest").numpy()[..., 0]
    tinted = np.stack([heat_overlay(image, cells, normalise="range") for image, cells in zip(images, heat)])
    return np.stack([images, tinted], axis=1)  # (B, 2, H, W, 3)


COLUMNS = ["image", "D attention"]


def discriminator_attention_picture(images, maps, caption: str | None = None, row_captions=None) -> np.ndarray:
    """Images (B, H, W, 3) and the D's maps (B, 8, 8) → a uint8 picture: each image beside its attention
    (columns "image" and "D attention"), ``caption`` on top (the one all were made from) or each row's
    own caption above it (``row_captions``), and a colour scale from the map's min to its max."""
    from t2igan.sampling import (attention_picture, enlarge, label_columns, label_rows, make_grid, readable_scale,
                                 with_colour_scale)

    pairs = attention_overlay(images, maps)
    if row_captions is None:
        return attention_picture(list(pairs), COLUMNS, title=caption, normalise="range", scale_title="D attention")
    grid = make_grid(enlarge(pairs, readable_scale(pairs.shape[2], 96)))
    picture = label_columns(label_rows(grid, row_captions), COLUMNS)
    return with_colour_scale(picture, "range", "D attention")


def discriminator_attention_callback(gan, noise, ids, lengths, writer, captions=None):
    """TensorBoard ``attention/discriminator``: where RAT-GAN's D puts the sentence on generated images of
    fixed captions (the soft-threshold map, stretched per image: its weights differ by at most a factor e),
    labelled, with each row's caption when ``captions`` are given."""
    import keras
    import tensorflow as tf

    class DiscriminatorAttention(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            images = gan.generate(noise, ids, lengths)
            maps = gan.discriminator_attention(images, ids, lengths).numpy()
            grid = discriminator_attention_picture(images.numpy(), maps, row_captions=captions)
            with writer.as_default(step=int(gan.generator_optimizer.iterations.numpy())):
                tf.summary.image("attention/discriminator", grid[None].astype(np.float32) / 255.0)
                tf.summary.scalar("attention/max_over_min", float(np.mean(maps.max(axis=(1, 2)) / maps.min(axis=(1, 2)))))

    return DiscriminatorAttention()
