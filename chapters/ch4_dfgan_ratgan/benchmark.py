"""``chapter4-benchmark``: seconds per training step of DF-GAN or RAT-GAN at a profile's networks (default:
the official 256² ``paper`` ones), on random images and captions (the frozen DAMSM text forward included)."""

from __future__ import annotations

import os
import time

import numpy as np

from chapters.ch3_attngan.official import RELEASED
from chapters.ch4_dfgan_ratgan.build import build_gan

#: The vocabulary the timed text encoder embeds: AttnGAN's birds vocabulary, as in the official runs.
BIRDS_VOCABULARY = RELEASED["birds"][0]


def random_gan_and_batch(config: dict, batch: int, vocabulary_size: int = BIRDS_VOCABULARY):
    """The variant's GAN at the profile's networks on a random DAMSM text encoder, compiled with the profile's
    optimizers, and a random batch (images, captions, noise) for its ``train_step``."""
    import keras
    import tensorflow as tf

    from chapters.ch3_attngan.damsm import DamsmTextEncoder
    from t2igan.training.harness import adam

    size, words = config["image_size"], config["words_num"]
    keras.utils.set_random_seed(0)
    text = DamsmTextEncoder(vocabulary_size, config["word_embedding_dim"], config["text_hidden"], config["text_dropout"])
    text([tf.zeros((1, words), tf.int32), tf.constant([words])])
    gan = build_gan(config, text)
    gan.compile(*(adam(config, 1, config[f"learning_rate_{name}"]) for name in ("generator", "discriminator")))
    gan.build_optimizers()
    batch_data = {"image": tf.random.uniform((batch, size, size, 3), -1.0, 1.0),
                  "caption_ids": tf.random.uniform((batch, words), 1, vocabulary_size, tf.int32),
                  "caption_length": tf.fill((batch,), words), "class_id": tf.range(batch),
                  "noise": tf.random.normal((batch, 1, config["noise_dim"]))}
    return gan, batch_data


def benchmark(config: dict, batch: int, steps: int, jit_compile: bool = False, vocabulary_size: int = BIRDS_VOCABULARY):
    """Prints the build time, the first (tracing) step and ``steps`` timed steps, and their median."""
    import tensorflow as tf

    size = config["image_size"]
    started = time.perf_counter()
    gan, batch_data = random_gan_and_batch(config, batch, vocabulary_size)
    built = time.perf_counter() - started
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


def compare_with_pytorch(config: dict, batch: int, rounds: int):
    """Seconds per training iteration of ours (``benchmark``'s step: the chapter's ``train_step``) and of the
    official PyTorch iteration (``torch_reference.py``: the same networks, losses and optimizer steps), at the
    profile's networks, on random images, sentences and noise; one of each per round, interleaved so that a
    change of machine load hits both; the median ratio. PyTorch runs with as many threads as TensorFlow's
    intra-op pool (the cores, by default). Our step also runs the frozen DAMSM text forward
    (an LSTM over 18 words: negligible); the PyTorch one takes the sentence vectors as given."""
    import tensorflow as tf

    try:
        import torch
    except ImportError:
        from t2igan.errors import UserError

        raise UserError("--benchmark_pytorch needs PyTorch (the torch extra): pip install torch, then run it again.") from None
    from chapters.ch4_dfgan_ratgan import torch_reference
    from chapters.ch4_dfgan_ratgan.build import sentence_dim

    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    size, variant = config["image_size"], config["variant"]
    if size < 64:  # the official NetD reaches 8·nf channels, what NetC takes, only from 64 px on
        raise ValueError(f"The PyTorch reference modules are the official classes, from 64 px on; this profile has "
                         f"{size} px: use --profile=paper.")
    if config["generator_width"] != config["discriminator_width"]:
        raise ValueError("The PyTorch reference modules take one width (nf) for G and D: set both equal.")
    if variant == "dfgan":
        networks = torch_reference.dfgan_modules(torch, config["generator_width"], config["noise_dim"],
                                                 sentence_dim(config), size)
        iteration = torch_reference.dfgan_iteration
    else:
        if size != 256 or sentence_dim(config) != 256:
            raise ValueError("The PyTorch RAT-GAN reference is the official class (256 px, 256-d sentences): "
                             "use --profile=paper.")
        networks = torch_reference.ratgan_modules(torch, config["generator_width"], config["noise_dim"],
                                                  config.get("discriminator_head", "attention") == "attention")
        iteration = torch_reference.ratgan_iteration
    optimizer_pair = torch_reference.optimizers(torch, networks, config["learning_rate_generator"],
                                                config["learning_rate_discriminator"])
    torch_images = torch.rand(batch, 3, size, size) * 2 - 1
    torch_sentence = torch.randn(batch, sentence_dim(config))
    torch_noise = torch.randn(batch, config["noise_dim"])

    gan, batch_data = random_gan_and_batch(config, batch)
    step = tf.function(gan.train_step)

    def ours():
        float(step(batch_data)["g_loss"])

    def theirs():
        iteration(torch, networks, optimizer_pair, torch_images.clone(), torch_sentence.clone(), torch_noise)

    warm = {"ours": _seconds(ours), "PyTorch": _seconds(theirs)}  # tracing; PyTorch's allocator warm-up
    times = {"ours": [], "PyTorch": []}
    for _ in range(rounds):
        times["ours"].append(_seconds(ours))
        times["PyTorch"].append(_seconds(theirs))
    ratios = [t / o for o, t in zip(times["ours"], times["PyTorch"])]
    g = sum(p.numel() for p in networks[0].parameters())
    d = sum(p.numel() for network in networks[1:] for p in network.parameters())
    print(f"{variant} ({config['profile']}: {size}² px, nf {config['generator_width']}), batch {batch}, "
          f"{rounds} interleaved round(s) after one warm-up each; PyTorch {torch.__version__} with {threads} "
          f"thread(s), G {g:,} / D {d:,} parameters (PyTorch's, unused ones included)")
    for name in times:
        print(f"  {name}: warm-up {warm[name]:.1f} s; then " + ", ".join(f"{t:.2f}" for t in times[name])
              + f" s; median {np.median(times[name]):.2f} s per iteration")
    print("  PyTorch / ours per round: " + ", ".join(f"{r:.2f}" for r in ratios)
          + f"; median {np.median(ratios):.2f}× (ours is faster where > 1)")
    return float(np.median(ratios))


def _seconds(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started
