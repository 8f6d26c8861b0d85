"""tf.data pipelines shared by every chapter.

Design:
* Images are decoded, converted to RGB, CUB-cropped and resized **once** to the
  load size (``image_size · 76/64`` when augmenting) and cached as a ``.npy``
  array; training then only gathers, crops and flips. This keeps a 2-core CPU
  busy with the GAN instead of JPEG decoding.
* Every random choice (order, crop, flip, caption, wrong example, noise) is a
  *stateless* function of ``(seed, epoch, position in epoch)``. The stream is
  therefore identical on 1 or N replicas and after a restart, which is what
  makes the replica-parity test and exact resume possible.
* Batches have a static shape (``drop_remainder``), captions a static length.

A batch is a dict; which keys it has depends on the text source:

``image``, ``wrong_image`` (B, S, S, 3) float32 in [-1, 1]; ``class_id``, ``wrong_class_id``, ``index`` (B,);
``noise`` (B, K, Z) when ``noise_shape=(K, Z)`` is given; and either
``text_embedding`` / ``wrong_text_embedding`` (B, D) — the mean of
``captions_per_sample`` precomputed caption embeddings — or ``caption_ids`` /
``wrong_caption_ids`` (B, T) int32 with ``caption_length`` / ``wrong_caption_length``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from t2igan.data.records import Example

# Arrays up to this size are captured as tensors; larger ones are read through numpy.
_IN_GRAPH_LIMIT_BYTES = 1 << 30


def load_size_for(image_size: int, augment: bool) -> int:
    """The official "76/64" rule: load at size·76/64, then random-crop ``image_size``."""
    return int(image_size * 76 / 64) if augment else image_size


def _prepare_one(example: Example, load_size: int, crop_to_bbox: bool) -> np.ndarray:
    from t2igan.data.images import cub_bbox_crop, read_image

    image = read_image(example.image_path)
    if crop_to_bbox and example.bbox is not None:
        image = cub_bbox_crop(image, example.bbox)
    if image.shape[0] != load_size or image.shape[1] != load_size:
        # Aspect ratio is not preserved, as in Reed's and StackGAN-v1's loaders.
        image = np.asarray(Image.fromarray(image).resize((load_size, load_size), Image.BILINEAR))
    return image


def build_image_array(
    examples: Sequence[Example], load_size: int, crop_to_bbox: bool, cache_dir: str, workers: int = 4
) -> np.ndarray:
    """All images of a split as one uint8 array (N, L, L, 3), cached on disk.

    The cache key covers every file's identity as well as its path: size, inode, modification and
    status-change times (one ``stat`` each: ≈ 10 ms for 10,000 files). Replacing an image, even by one
    of the same size and with its old modification time (``cp -p``), changes its status-change time, so
    the split is decoded again instead of training on the old pixels.
    """
    digest = hashlib.sha1(
        json.dumps([[e.key, e.image_path, _file_identity(e.image_path), e.bbox if crop_to_bbox else None]
                    for e in examples] + [load_size, crop_to_bbox]).encode()
    ).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"images-{load_size}px-{digest}.npy")
    if os.path.exists(path):
        return np.load(path, mmap_mode="r")
    started = time.time()
    array = np.zeros((len(examples), load_size, load_size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, image in enumerate(pool.map(lambda e: _prepare_one(e, load_size, crop_to_bbox), examples)):
            array[i] = image
    temporary = f"{path}.tmp-{os.getpid()}.npy"
    np.save(temporary, array)
    os.replace(temporary, path)  # atomic: a killed run never leaves a half cache
    logging.info("Cached %d images at %d px in %.1f s: %s", len(examples), load_size, time.time() - started, path)
    return array


def _file_identity(path: str) -> list[int]:
    status = os.stat(path)
    return [status.st_size, status.st_ino, status.st_mtime_ns, status.st_ctime_ns]


@dataclasses.dataclass
class TextTable:
    """Per-example caption data: ``values[i, c]`` is caption c of example i."""

    values: np.ndarray
    """(N, C, D) float embeddings, or (N, C, L) int32 token ids padded with 0."""
    counts: np.ndarray
    """(N,) number of valid captions per example (≥ 1)."""
    lengths: np.ndarray | None = None
    """(N, C) token counts, for id tables."""

    @property
    def is_embedding(self) -> bool:
        return np.issubdtype(self.values.dtype, np.floating)


def _as_tensor(array: np.ndarray):
    if array.nbytes <= _IN_GRAPH_LIMIT_BYTES:
        return tf.constant(np.asarray(array))
    return None


def _gather(array: np.ndarray, tensor, index):
    if tensor is not None:
        return tf.gather(tensor, index)
    dtype = tf.as_dtype(array.dtype)
    out = tf.numpy_function(lambda i: np.asarray(array[int(i)]), [index], dtype)
    out.set_shape(array.shape[1:])
    return out


def _choose_subset(ids, length, words_num, seed):
    """AttnGAN's truncation in graph mode: random ordered subset of ``words_num`` positions."""
    max_length = ids.shape[0]
    if max_length <= words_num:
        padded = tf.pad(ids, [[0, words_num - max_length]])
        return padded, tf.minimum(length, words_num)
    scores = tf.random.stateless_uniform([max_length], seed=seed)
    scores = tf.where(tf.range(max_length) < length, scores, -1.0)  # only real words can be chosen
    _, positions = tf.math.top_k(scores, k=words_num)
    positions = tf.sort(positions)
    chosen = tf.gather(ids, positions)
    keep = tf.minimum(length, words_num)
    chosen = tf.where(tf.range(words_num) < keep, chosen, 0)
    return chosen, keep


def make_dataset(
    images: np.ndarray,
    class_ids: np.ndarray,
    text: TextTable,
    *,
    global_batch_size: int,
    image_size: int,
    augment: bool,
    seed: int,
    captions_per_sample: int = 1,
    words_num: int | None = None,
    noise_shape: tuple[int, int] | None = None,
    start_step: int = 0,
    repeat: bool = True,
    near_misses: np.ndarray | None = None,
    hard_negatives: float = 0.0,
) -> tf.data.Dataset:
    """The infinite, deterministic training stream, starting at global step ``start_step``.

    ``hard_negatives`` > 0 with a ``near_misses`` table (``t2igan.data.negatives.near_miss_table``): that
    fraction of the wrong examples is drawn from the example's near misses instead of at random.
    """
    num_examples = len(images)
    if num_examples < global_batch_size:
        raise ValueError(
            f"The data set has {num_examples} training images, fewer than one batch of {global_batch_size}. "
            "Lower the batch size (--set batch_size=...) or add images."
        )
    if not text.is_embedding and words_num is None:
        raise ValueError("words_num is required when captions are token ids.")
    if not 0.0 <= hard_negatives <= 1.0:
        raise ValueError(f"hard_negatives is a fraction of the wrong examples, in [0, 1]; got {hard_negatives}.")
    if hard_negatives and (near_misses is None or len(near_misses) != num_examples):
        raise ValueError("hard_negatives > 0 needs a near_misses table with one row per training example "
                         "(the data set must store single-valued image attributes, like the built-in shapes).")
    steps_per_data_epoch = num_examples // global_batch_size
    first_epoch, skip_batches = divmod(start_step, steps_per_data_epoch)
    load_size = images.shape[1]

    image_tensor = _as_tensor(images)
    text_tensor = _as_tensor(text.values)
    counts = tf.constant(text.counts.astype(np.int32))
    lengths = tf.constant(text.lengths.astype(np.int32)) if text.lengths is not None else None
    classes = tf.constant(class_ids.astype(np.int32))
    near_table = tf.constant(near_misses.astype(np.int32)) if hard_negatives else None
    base_seed = tf.constant([seed, 0], dtype=tf.int64)

    def epoch_elements(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_examples), seed=tf.random.experimental.stateless_fold_in(base_seed, epoch)
        )
        order = order[: steps_per_data_epoch * global_batch_size]
        positions = tf.range(tf.shape(order)[0], dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((tf.fill(tf.shape(positions), epoch), positions, order))

    def image_at(index, element_seed):
        image = tf.cast(_gather(images, image_tensor, index), tf.float32)
        if augment:
            crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
            image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=crop_seed)
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        elif load_size != image_size:
            image = tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)
        return image / 127.5 - 1.0

    def text_at(index, element_seed):
        count = counts[index]
        if text.is_embedding:
            picks = tf.random.stateless_uniform(
                [captions_per_sample], seed=element_seed, maxval=count, dtype=tf.int32
            )
            table = _gather(text.values, text_tensor, index)
            return {"text_embedding": tf.reduce_mean(tf.cast(tf.gather(table, picks), tf.float32), axis=0)}
        pick_seed, subset_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
        pick = tf.random.stateless_uniform([], seed=pick_seed, maxval=count, dtype=tf.int32)
        ids = _gather(text.values, text_tensor, index)[pick]
        chosen, length = _choose_subset(ids, lengths[index, pick], words_num, subset_seed)
        return {"caption_ids": chosen, "caption_length": length}

    def wrong_index(index, element_seed):
        # A different example, of a different class when classes are known (Reed's "wrong image").
        candidates = tf.random.stateless_uniform([8], seed=element_seed, maxval=num_examples, dtype=tf.int32)
        own_class = classes[index]
        differs = tf.logical_and(
            tf.not_equal(candidates, index),
            tf.logical_or(tf.equal(own_class, -1), tf.not_equal(tf.gather(classes, candidates), own_class)),
        )
        fallback = (index + 1) % num_examples
        other = tf.cond(tf.reduce_any(differs), lambda: candidates[tf.argmax(tf.cast(differs, tf.int32))], lambda: fallback)
        if not hard_negatives:
            return other
        row = tf.gather(near_table, index)
        valid = row >= 0
        draw_seed, pick_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
        scores = tf.where(valid, tf.random.stateless_uniform(tf.shape(row), seed=pick_seed), -1.0)
        near = tf.gather(row, tf.argmax(scores))
        use_near = tf.logical_and(tf.reduce_any(valid), tf.random.stateless_uniform([], seed=draw_seed) < hard_negatives)
        return tf.where(use_near, near, other)

    def load_element(epoch, position, index):
        element_seed = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(base_seed, epoch), position
        )
        seeds = tf.unstack(tf.random.experimental.stateless_split(element_seed, 6))
        other = wrong_index(index, seeds[0])
        element = {
            "image": image_at(index, seeds[1]),
            "wrong_image": image_at(other, seeds[2]),
            "class_id": classes[index],
            "wrong_class_id": classes[other],
            "index": index,
        }
        for key, value in text_at(index, seeds[3]).items():
            element[key] = value
        for key, value in text_at(other, seeds[4]).items():
            element["wrong_" + key] = value
        if noise_shape is not None:
            element["noise"] = tf.random.stateless_normal(list(noise_shape), seed=seeds[5])
        return element

    epochs = tf.data.Dataset.range(first_epoch, first_epoch + (1 << 40) if repeat else first_epoch + 1)
    dataset = epochs.flat_map(epoch_elements).skip(skip_batches * global_batch_size)
    dataset = dataset.map(load_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(global_batch_size, drop_remainder=True)
    if not repeat:  # one pass: say how many batches, so Keras neither guesses nor warns "ran out of data"
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps_per_data_epoch - skip_batches))
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return dataset.with_options(options)


def caption_tables(
    examples: Sequence[Example], encode, width: int, max_captions: int | None = None, dtype=np.int32
) -> TextTable:
    """Encode every caption of every example with ``encode(caption) -> (ids, length)``."""
    most = max(len(e.captions) for e in examples)
    most = min(most, max_captions) if max_captions else most
    values = np.zeros((len(examples), most, width), dtype=dtype)
    lengths = np.zeros((len(examples), most), dtype=np.int32)
    counts = np.zeros(len(examples), dtype=np.int32)
    for i, example in enumerate(examples):
        for c, caption in enumerate(example.captions[:most]):
            ids, length = encode(caption)
            values[i, c, : len(ids)] = ids[:width]
            lengths[i, c] = min(length, width)
        counts[i] = max(1, min(len(example.captions), most))
    return TextTable(values=values, counts=counts, lengths=lengths)
