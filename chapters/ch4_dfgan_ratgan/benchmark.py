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


def sampling_cost(config: dict, batch: int, batches: int, protocol_images: int = 30000):
    """What an evaluation costs here: seconds per image to sample the generator (inference, no gradient) and to
    score the image (the FID Inception at 299 px and the DAMSM image encoder of R-precision), on random
    weights and noise (the same arithmetic as trained ones), and their total for ``protocol_images`` (the
    papers': 30,000; RAT-GAN's birds plan 29,280). ``eval --eval_samples=N`` then costs N times the sum."""
    import keras
    import tensorflow as tf

    from chapters.ch3_attngan.damsm import DamsmImageEncoder
    from chapters.ch4_dfgan_ratgan.build import build_networks, sentence_dim
    from t2igan.metrics.inception import FidInception

    keras.utils.set_random_seed(0)
    generator = build_networks(config)[0]
    fid = FidInception()
    damsm = DamsmImageEncoder("inception_torchvision", sentence_dim(config), input_size=299)  # the protocol's
    noise = tf.random.normal((batch, config["noise_dim"]))
    sentence = tf.random.normal((batch, sentence_dim(config)))
    sample = tf.function(lambda z, s: generator([z, s], training=False))
    encode = tf.function(lambda x: damsm(x, training=False))
    parts = {"generator": lambda: sample(noise, sentence), "FID Inception": lambda: fid(images),
             "DAMSM image encoder": lambda: encode(images)}
    images = sample(noise, sentence)
    per_image = {}
    for name, work in parts.items():
        tf.nest.map_structure(lambda t: t.numpy(), work())  # trace and warm up
        started = time.perf_counter()
        for _ in range(batches):
            tf.nest.map_structure(lambda t: t.numpy(), work())
        per_image[name] = (time.perf_counter() - started) / (batches * batch)
    total = sum(per_image.values())
    print(f"{config['variant']} ({config['profile']}: {config['image_size']}² px, G width {config['generator_width']}), "
          f"batch {batch}, {batches} timed batch(es) after one warm-up:")
    for name, seconds in per_image.items():
        print(f"  {name}: {seconds:.3f} s per image")
    print(f"  in all {total:.3f} s per image: {protocol_images:,} images (the papers' protocol) ≈ "
          f"{total * protocol_images / 3600:.1f} h here; eval --eval_samples=500 ≈ {total * 500 / 60:.0f} min")
