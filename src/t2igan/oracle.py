"""An attribute classifier ("oracle") for ``shapes`` images.

A small CNN trained on the real images of a generated shapes data set that reads
every attribute back from an image. Evaluation uses it two ways:

* :meth:`Oracle.score` -- how often a generated image shows what its caption
  states (per attribute, and "all" stated attributes at once);
* :meth:`Oracle.features` -- its penultimate layer, a domain-specific feature
  space for FID.

Heads. ``shapes``: one softmax per attribute (shape, colour, size, position).
``shapes-pairs``: the generator stores the two objects in reading order (left
object first for a horizontal relation, top object first for a vertical one),
and caption attributes are normalised to that order, so the oracle simply
predicts ``object0.shape``, ``object0.colour``, ``object0.size``, the same for
``object1``, and ``relation`` (in that order only "left of" or "above" occur).
Absolute positions of pair objects are not predicted: captions never state them.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from t2igan.data import shapes
from t2igan.data.records import Example

ORACLE_VERSION = 1
DEFAULT_EPOCHS = None
"""``None``: the per-data-set number in :data:`EPOCHS`."""
EPOCHS = {"shapes": 6, "shapes-pairs": 12}  # measured: >= 98 % on every head at 32 and 64 px
TARGET_ACCURACY = 0.98
_PAIR_RELATIONS = ("left of", "above")
_OBJECT_KEYS = ("shape", "colour", "size")


def heads_for(dataset_name: str) -> dict[str, tuple[str, ...]]:
    """Output head name -> the class names it predicts, in label order."""
    if dataset_name == "shapes":
        return {key: tuple(values) for key, values in shapes.ATTRIBUTE_VALUES.items()}
    if dataset_name == "shapes-pairs":
        heads = {f"object{i}.{key}": tuple(shapes.ATTRIBUTE_VALUES[key])
                 for i in (0, 1) for key in _OBJECT_KEYS}
        return heads | {"relation": _PAIR_RELATIONS}
    raise ValueError(f"No oracle for data set {dataset_name!r}; expected 'shapes' or 'shapes-pairs'.")


def flatten_attributes(attributes: dict[str, Any]) -> dict[str, str]:
    """Turns stated or true attributes into ``{head name: value}``.

    Pair attributes ``{"objects": [a, b], "relation": r}`` become
    ``object0.<key>``, ``object1.<key>`` and ``relation``; a relation phrased the
    other way round ("right of", "below") is turned into reading order first.
    """
    if "objects" not in attributes:
        return dict(attributes)
    objects = list(attributes["objects"])
    relation = attributes.get("relation")
    if relation in ("right of", "below"):
        objects, relation = objects[::-1], shapes.INVERSE_RELATION[relation]
    flat = {f"object{i}.{key}": value for i, obj in enumerate(objects) for key, value in obj.items()}
    if relation is not None:
        flat["relation"] = relation
    return flat


# ----------------------------------------------------------------------------- data
def _read_images(examples: Sequence[Example], image_size: int) -> np.ndarray:
    """uint8 array (N, S, S, 3); images of another size are resized with a box filter."""
    images = np.empty((len(examples), image_size, image_size, 3), dtype=np.uint8)
    for i, example in enumerate(examples):
        with Image.open(example.image_path) as image:
            image = image.convert("RGB")
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.BOX)
            images[i] = np.asarray(image)
    return images


def _to_float(images_uint8):
    return tf.cast(images_uint8, tf.float32) / 127.5 - 1.0


def load_split_arrays(root: str, split: str, image_size: int) -> tuple[np.ndarray, list[Example]]:
    """Images of one split as float32 in [-1, 1], shape (N, S, S, 3), plus their examples."""
    examples = shapes.load(root).split(split)
    return _to_float(_read_images(examples, image_size)).numpy(), examples


def _labels(examples: Sequence[Example], heads: dict[str, tuple[str, ...]]) -> dict[str, np.ndarray]:
    flat = [flatten_attributes(example.image_attributes or {}) for example in examples]
    return {name: np.array([values.index(f[name]) for f in flat], dtype=np.int32)
            for name, values in heads.items()}


# ----------------------------------------------------------------------------- model
def _layer_name(head: str) -> str:
    return head.replace(".", "_")  # Keras layer names may not contain every character


def build_model(image_size: int, heads: dict[str, tuple[str, ...]], width: int = 32) -> keras.Model:
    """Conv stack down to 4x4, a 256-unit feature layer, one logit head per attribute.

    Flatten (not global pooling) keeps where things are, which position and
    relation need. At 64 px the stem already halves the resolution: cheap on CPU.
    """
    if image_size < 16 or image_size & (image_size - 1):
        raise ValueError(f"The oracle needs a power-of-two image size >= 16, got {image_size}.")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    resolution = image_size // 2 if image_size >= 64 else image_size
    x = keras.layers.Conv2D(width, 3, strides=image_size // resolution, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
    filters = width
    while resolution > 4:
        filters, resolution = min(filters * 2, 4 * width), resolution // 2
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
    x = keras.layers.Flatten()(x)
    features = keras.layers.Dense(256, activation="relu", name="features")(x)
    outputs = {_layer_name(head): keras.layers.Dense(len(values), name=_layer_name(head))(features)
               for head, values in heads.items()}
    return keras.Model(inputs, outputs, name="shapes_oracle")


class Oracle:
    """A trained attribute classifier plus what it was trained on."""

    def __init__(self, model: keras.Model, dataset_name: str, image_size: int, report: dict | None = None):
        self.model = model
        self.dataset_name = dataset_name
        self.image_size = image_size
        self.heads = heads_for(dataset_name)
        self.report = report or {}
        logits = {_layer_name(head): model.get_layer(_layer_name(head)).output for head in self.heads}
        feature_model = keras.Model(model.inputs, [model.get_layer("features").output, logits])
        signature = [tf.TensorSpec((None, image_size, image_size, 3), tf.float32)]
        self._run = tf.function(lambda images: feature_model(images, training=False), input_signature=signature)

    def _batches(self, images, batch_size: int):
        if images.ndim != 4 or tuple(images.shape[1:]) != (self.image_size, self.image_size, 3):
            raise ValueError(f"Expected images of shape (B, {self.image_size}, {self.image_size}, 3) "
                             f"(the oracle's resolution), got {tuple(images.shape)}.")
        if not np.issubdtype(np.dtype(getattr(images.dtype, "as_numpy_dtype", images.dtype)), np.floating):
            raise ValueError("The oracle expects float images in [-1, 1], not integer pixels.")
        for start in range(0, int(images.shape[0]), batch_size):
            features, logits = self._run(tf.cast(images[start:start + batch_size], tf.float32))
            yield features, logits

    def predict(self, images, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Integer labels per head (indices into :attr:`heads`)."""
        parts: dict[str, list[np.ndarray]] = {head: [] for head in self.heads}
        for _, logits in self._batches(images, batch_size):
            for head in self.heads:
                parts[head].append(tf.argmax(logits[_layer_name(head)], axis=-1, output_type=tf.int32).numpy())
        return {head: np.concatenate(p) if p else np.zeros((0,), np.int32) for head, p in parts.items()}

    def features(self, images, batch_size: int = 256) -> np.ndarray:
        """Penultimate-layer activations, shape (B, 256), for a domain FID."""
        parts = [features.numpy() for features, _ in self._batches(images, batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 256), np.float32)

    def score(self, images, caption_attributes: Sequence[dict[str, Any]], batch_size: int = 256) -> dict[str, Any]:
        """Per head: accuracy over the images whose caption states it; "all": every stated one right.

        Returns ``{head: accuracy, ..., "all": accuracy, "counts": {head: n, ..., "all": n},
        "confusion": {head: matrix}}``; ``matrix[i][j]``: how many images whose caption states value i of
        :attr:`heads` ``[head]`` the oracle reads as value j (rows: stated, columns: drawn). Heads no caption
        states get a count of 0, no accuracy and no matrix.
        """
        if len(caption_attributes) != len(images):
            raise ValueError(f"Got {len(images)} images but {len(caption_attributes)} attribute dicts.")
        predictions = self.predict(images, batch_size)
        stated = [flatten_attributes(attributes) for attributes in caption_attributes]
        everything_right = np.ones(len(stated), dtype=bool)
        result: dict[str, Any] = {}
        counts: dict[str, int] = {}
        confusion: dict[str, list[list[int]]] = {}
        for head, values in self.heads.items():
            rows = [i for i, attributes in enumerate(stated) if head in attributes]
            counts[head] = len(rows)
            if not rows:
                continue
            unknown = {stated[i][head] for i in rows} - set(values)
            if unknown:
                raise ValueError(f"Unknown value(s) {sorted(unknown)} for {head!r}; expected one of {values}.")
            targets = np.array([values.index(stated[i][head]) for i in rows])
            hits = predictions[head][rows] == targets
            matrix = np.zeros((len(values), len(values)), np.int64)
            np.add.at(matrix, (targets, predictions[head][rows]), 1)
            confusion[head] = matrix.tolist()
            everything_right[rows] &= hits
            result[head] = float(hits.mean())
        result["all"] = float(everything_right.mean()) if len(stated) else float("nan")
        counts["all"] = len(stated)
        result["counts"] = counts
        result["confusion"] = confusion
        return result


# ----------------------------------------------------------------------------- training / caching
def cache_paths(cache_dir: str, dataset_name: str, image_size: int) -> tuple[str, str]:
    stem = os.path.join(cache_dir, f"oracle-{dataset_name}-{image_size}px")
    return stem + ".weights.h5", stem + ".report.json"


def _accuracies(oracle: Oracle, images: np.ndarray, examples: Sequence[Example]) -> dict[str, float]:
    predictions = oracle.predict(images)
    labels = _labels(examples, oracle.heads)
    return {head: float(np.mean(predictions[head] == labels[head])) for head in oracle.heads}


def train_oracle(root: str, image_size: int, cache_dir: str, *, epochs: int | None = DEFAULT_EPOCHS,
                 seed: int = 0, batch_size: int = 64) -> Oracle:
    """Trains an oracle on the train split of ``root``, tests it, and caches weights + report."""
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    index = shapes.load(root)
    heads = heads_for(index.name)
    epochs = epochs or EPOCHS[index.name]
    if not index.train or not index.test:
        raise ValueError(f"{root} needs both train and test images to train an oracle.")
    train_images = _read_images(index.train, image_size)
    train_labels = {_layer_name(head): labels for head, labels in _labels(index.train, heads).items()}
    # No augmentation: flips would change position/relation labels, and the
    # generator already varies jitter, rotation and background.
    dataset = (tf.data.Dataset.from_tensor_slices((train_images, train_labels))
               .shuffle(len(train_images), seed=seed, reshuffle_each_iteration=True)
               .batch(batch_size)
               .map(lambda images, labels: (_to_float(images), labels), num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(tf.data.AUTOTUNE))
    model = build_model(image_size, heads)
    steps = epochs * int(np.ceil(len(train_images) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=max(steps, 1), alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss={name: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for name in train_labels})
    model.fit(dataset, epochs=epochs, verbose=0, shuffle=False)  # the dataset shuffles itself
    train_seconds = time.perf_counter() - start

    oracle = Oracle(model, index.name, image_size)
    test_images = _to_float(_read_images(index.test, image_size)).numpy()
    accuracy = _accuracies(oracle, test_images, index.test)
    oracle.report = {
        "dataset": index.name, "dataset_root": os.path.basename(index.root),
        "dataset_options": index.meta.get("options"), "generator_version": index.meta.get("generator_version"),
        "oracle_version": ORACLE_VERSION, "image_size": image_size, "heads": {k: list(v) for k, v in heads.items()},
        "test_accuracy": accuracy, "num_train": len(index.train), "num_test": len(index.test),
        "epochs": epochs, "seed": seed, "train_seconds": round(train_seconds, 1),
    }
    logging.info("Oracle %s %d px: test accuracy %s, trained in %.1f s.", index.name, image_size,
                 {k: round(v, 4) for k, v in accuracy.items()}, train_seconds)
    if min(accuracy.values()) < TARGET_ACCURACY:
        logging.warning("Oracle accuracy below %.0f %% on some attribute: %s", 100 * TARGET_ACCURACY, accuracy)

    os.makedirs(cache_dir, exist_ok=True)
    weights_path, report_path = cache_paths(cache_dir, index.name, image_size)
    model.save_weights(weights_path)
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(oracle.report, f, indent=2)
    return oracle


def load_or_train_oracle(root: str, image_size: int, cache_dir: str, *, epochs: int | None = DEFAULT_EPOCHS,
                         seed: int = 0) -> Oracle:
    """Loads the cached oracle when it was trained on a data set with the same options, else trains one."""
    with open(os.path.join(root, "dataset.json"), encoding="utf-8") as f:
        meta = json.load(f)
    weights_path, report_path = cache_paths(cache_dir, meta["name"], image_size)
    if os.path.exists(weights_path) and os.path.exists(report_path):
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
        if (report.get("dataset_options") == meta.get("options")
                and report.get("generator_version") == meta.get("generator_version")
                and report.get("oracle_version") == ORACLE_VERSION and report.get("image_size") == image_size):
            model = build_model(image_size, heads_for(meta["name"]))
            model.load_weights(weights_path)
            return Oracle(model, meta["name"], image_size, report)
        logging.info("Cached oracle %s was trained on other data; retraining.", weights_path)
    return train_oracle(root, image_size, cache_dir, epochs=epochs, seed=seed)
