"""What AttnGAN shows besides its images: each word's attention map, in sample PNGs and in TensorBoard.

Both pictures are labelled: "image" over the first column, each word over its map, and a colour scale
(each map is scaled to its own max, so the scale runs from 0 to that max)."""

from __future__ import annotations

import numpy as np


def attention_grid(image, maps, length, size):
    """One row: the image, then each word's attention map (last attention stage) over it."""
    from t2igan.sampling import heat_overlay

    return np.stack([image] + [heat_overlay(image, maps[t]) for t in range(length)])


def words_of(vocabulary, ids, length) -> list[str]:
    """The caption's words as the text encoder saw them (unknown words are the vocabulary's token)."""
    return [vocabulary.words[t] for t in np.asarray(ids)[: int(length)]]


def word_attention_picture(images, maps, words, size, caption: str | None = None) -> np.ndarray:
    """Sample images (B, H, W, 3) of one caption and their maps (B, T, h, w) → a uint8 picture: a row per
    image (the image, then each word's map), the words over the columns, ``caption`` on top, a colour scale."""
    from t2igan.sampling import attention_picture

    rows = [attention_grid(image, word_maps, len(words), size) for image, word_maps in zip(images, maps)]
    return attention_picture(rows, ["image"] + list(words), title=caption, scale_title="word attention")


def attention_maps_callback(gan, ids, lengths, noise, vocabulary, size, writer):
    """TensorBoard ``attention/words``: per fixed caption, the image and each word's attention map, its
    words written over the maps."""
    import keras
    import tensorflow as tf

    from t2igan.sampling import attention_picture

    class AttentionMaps(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            images, maps = gan.generate(noise, ids, lengths, return_attention=True)
            images, maps = images.numpy(), maps[-1].numpy()
            rows = [attention_grid(images[b], maps[b], int(lengths[b]), size) for b in range(len(ids))]
            labels = [["image"] + words_of(vocabulary, ids[b], lengths[b]) for b in range(len(ids))]
            picture = attention_picture(rows, labels, scale_title="word attention")
            with writer.as_default(step=int(gan.generator_optimizer.iterations.numpy())):
                tf.summary.image("attention/words", picture[None].astype(np.float32) / 255.0)
                if epoch == 0:
                    tf.summary.text("attention/captions", "\n\n".join(
                        f"{i}. " + " | ".join(words_of(vocabulary, row, n)) for i, (row, n) in enumerate(zip(ids, lengths))))

    return AttentionMaps()
