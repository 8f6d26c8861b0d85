"""What AttnGAN shows besides its images: each word's attention map, in sample PNGs and in TensorBoard."""

from __future__ import annotations

import numpy as np


def attention_grid(image, maps, length, size):
    """One row: the image, then each word's attention map (last attention stage) over it."""
    from t2igan.sampling import heat_overlay

    return np.stack([image] + [heat_overlay(image, maps[t]) for t in range(length)])


def attention_maps_callback(gan, ids, lengths, noise, vocabulary, size, writer):
    """TensorBoard ``attention/words``: per fixed caption, the image and each word's attention map."""
    import keras
    import tensorflow as tf

    from t2igan.sampling import make_grid

    class AttentionMaps(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            images, maps = gan.generate(noise, ids, lengths, return_attention=True)
            images, maps = images.numpy(), maps[-1].numpy()
            longest = int(lengths.max())
            rows = []
            for b in range(len(ids)):
                row = attention_grid(images[b], maps[b], int(lengths[b]), size)
                pad = np.full((longest + 1 - len(row), size, size, 3), -1.0, np.float32)
                rows.append(np.concatenate([row, pad]))
            grid = make_grid(np.stack(rows))
            with writer.as_default(step=int(gan.generator_optimizer.iterations.numpy())):
                tf.summary.image("attention/words", grid[None].astype(np.float32) / 255.0)
                if epoch == 0:
                    tf.summary.text("attention/captions", "\n\n".join(
                        f"{i}. " + " | ".join(vocabulary.words[t] for t in row[: int(n)]) for i, (row, n) in enumerate(zip(ids, lengths))))

    return AttentionMaps()
