"""``chapter4-benchmark``: seconds per training step of DF-GAN or RAT-GAN at a profile's networks (default:
the official 256² ``paper`` ones), on random images and captions (the frozen DAMSM text forward included)."""

from __future__ import annotations

import time

import numpy as np

from chapters.ch3_attngan.official import RELEASED
from chapters.ch4_dfgan_ratgan.build import build_gan

#: The vocabulary the timed text encoder embeds: AttnGAN's birds vocabulary, as in the official runs.
BIRDS_VOCABULARY = RELEASED["birds"][0]


def benchmark(config: dict, batch: int, steps: int, jit_compile: bool = False, vocabulary_size: int = BIRDS_VOCABULARY):
    """Prints the build time, the first (tracing) step and ``steps`` timed steps, and their median."""
    import keras
    import tensorflow as tf

    from chapters.ch3_attngan.damsm import DamsmTextEncoder
    from t2igan.training.harness import adam

    size, words = config["image_size"], config["words_num"]
    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    text = DamsmTextEncoder(vocabulary_size, config["word_embedding_dim"], config["text_hidden"], config["text_dropout"])
    text([tf.zeros((1, words), tf.int32), tf.constant([words])])
    gan = build_gan(config, text)
    gan.compile(*(adam(config, 1, config[f"learning_rate_{name}"]) for name in ("generator", "discriminator")))
    gan.build_optimizers()
    built = time.perf_counter() - started
    batch_data = {"image": tf.random.uniform((batch, size, size, 3), -1.0, 1.0),
                  "caption_ids": tf.random.uniform((batch, words), 1, vocabulary_size, tf.int32),
                  "caption_length": tf.fill((batch,), words), "class_id": tf.range(batch),
                  "noise": tf.random.normal((batch, 1, config["noise_dim"]))}
    step = tf.function(gan.train_step, jit_compile=jit_compile)
    times = []
    for _ in range(1 + steps):
        started = time.perf_counter()
        logs = step(batch_data)
        float(logs["g_loss"])  # wait for the step
        times.append(time.perf_counter() - started)
    g = sum(int(np.prod(v.shape)) for v in gan.generator.trainable_variables)
    d = sum(int(np.prod(v.shape)) for v in gan.discriminator.trainable_variables)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    print(f"{config['variant']} ({config['profile']}: {size}² px, G width {config['generator_width']}, D width "
          f"{config['discriminator_width']}, G {g:,} / D {d:,} parameters), batch {batch}, "
          f"{'XLA' if jit_compile else 'tf.function'}, intra-op threads {threads}")
    print(f"  build {built:.1f} s; first step (trace) {times[0]:.1f} s; then " + ", ".join(f"{t:.2f}" for t in times[1:])
          + f" s; median {np.median(times[1:]):.2f} s per training step")
