"""Chapter 4 commands: ``python -m chapters.04_dfgan_ratgan {pretrain,train,sample,eval,benchmark} --flags``.

(``make chapter4-train [VARIANT=ratgan|dfgan]`` etc. call these.) ``pretrain`` trains the DAMSM
encoders (chapter 3's, ``t2igan.damsm``); ``train`` runs it first when the run has none (or reuses
``--set damsm_dir=...``), then trains DF-GAN or RAT-GAN on the frozen sentence features.
``benchmark`` times training steps at the official 256² configuration. The networks and losses are
in ``model.py``.
"""

from __future__ import annotations

import time

import numpy as np
from absl import flags

from t2igan import app
from t2igan.app import FLAGS, UserError
from t2igan.workflow import Chapter

from .build import build_gan, sampling_noise  # config → networks

flags.DEFINE_enum("variant", "ratgan", ["ratgan", "dfgan"],
                  "ratgan: RAT-GAN (recurrent affine controller, attention D); dfgan: the DF-GAN baseline.")
flags.DEFINE_bool("attention", False, "sample (RAT-GAN): also write the discriminator's attention over each image (ATTN=1).")
flags.DEFINE_integer("benchmark_batch", 8, "benchmark: batch size of the timed training steps.")
flags.DEFINE_integer("benchmark_steps", 3, "benchmark: timed steps after one warm-up (trace) step.")

chapter = Chapter("04_dfgan_ratgan", 4, "DF-GAN / RAT-GAN")


def _variant_settings(profile, config):
    """The variant's own settings, unless the same key was given with --set."""
    variants = chapter.module("profiles").VARIANTS[profile]
    explicit = {item.split("=", 1)[0].strip() for item in FLAGS.set}
    config.update({key: value for key, value in variants[FLAGS.variant].items() if key not in explicit})
    config["variant"] = FLAGS.variant


def _setup(for_training):
    if not FLAGS.run_dir and FLAGS.variant == "dfgan":
        FLAGS.run_dir = app.default_run_dir(chapter.number, FLAGS.dataset, FLAGS.profile) + "-dfgan"
    strategy, run, config = chapter.setup(for_training, lambda config: _variant_settings(FLAGS.profile, config))
    chapter.title = {"dfgan": "DF-GAN", "ratgan": "RAT-GAN"}[config["variant"]]
    return strategy, run, config


# ----------------------------------------------------------------------------- train
def train():
    from t2igan import damsm
    from t2igan.data.pipeline import make_dataset
    from t2igan.training.run import Timer

    strategy, run, config = _setup(for_training=True)
    timer = Timer()
    index = chapter.load_data(config, for_training=True)
    vocabulary, build_encoders = chapter.damsm(strategy, run, config, index)
    images = chapter.images(index, config, "train")
    batch_size = config["batch_size"]
    steps_per_epoch = config["steps_per_epoch"] or len(images) // batch_size
    encoders = {}  # (text, image): the image encoder only scores R-precision during training
    gan, optimizers, checkpointer, initial_epoch = chapter.build_for_training(
        strategy, run, config, lambda: build_gan(config, encoders.setdefault("damsm", build_encoders())[0]),
        len(images) // batch_size)
    if chapter.already_trained(run.path, config["epochs"], initial_epoch):
        return
    class_ids = np.array([e.class_id for e in index.train], np.int32)
    dataset = make_dataset(images, class_ids, damsm.id_table(index.train, vocabulary), global_batch_size=batch_size,
                           image_size=config["image_size"], augment=config["augment"], seed=config["seed"],
                           words_num=config["words_num"], noise_shape=(1, config["noise_dim"]),
                           start_step=initial_epoch * steps_per_epoch)
    rows, columns = min(8, len(index.test)), 4
    test_ids, test_lengths = damsm.test_ids(index, vocabulary, config["words_num"])
    grid_ids = np.repeat(test_ids[:rows, 0], columns, axis=0)
    grid_lengths = np.repeat(test_lengths[:rows, 0], columns, axis=0)
    grid_noise = np.random.default_rng(1234).standard_normal((rows * columns, config["noise_dim"])).astype(np.float32)
    grid_noise = sampling_noise(config, grid_noise)

    def render():
        images = gan.generate(grid_noise, grid_ids, grid_lengths).numpy()
        return images.reshape(rows, columns, *images.shape[1:])

    def views(writer):
        callbacks = [ModulationStatistics(gan, grid_noise, grid_ids, grid_lengths, writer)]
        if config["variant"] == "ratgan" and config["discriminator_head"] == "attention":
            callbacks.append(DiscriminatorAttention(gan, grid_noise[::columns], grid_ids[::columns],
                                                    grid_lengths[::columns], writer))
        return callbacks

    def generate(example_indices, caption_indices, noise):  # as evaluate() does, for the in-training metrics
        return gan.generate(sampling_noise(config, noise), test_ids[example_indices, caption_indices],
                            test_lengths[example_indices, caption_indices]).numpy()

    def r_precision(plan, generated):
        from t2igan.metrics.r_precision import damsm_r_precision

        return damsm_r_precision(gan.text_encoder, encoders["damsm"][1], index, test_ids, test_lengths, plan, generated, 1234)

    chapter.fit(gan, run, config, strategy, dataset, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                checkpointer=checkpointer, render=render, grid_captions=[index.test[i].captions[0] for i in range(rows)],
                optimizers=optimizers, timer=timer, extra_callbacks=views, index=index, metrics_generate=generate,
                noise_dim=config["noise_dim"], metrics_extra=r_precision)


def ModulationStatistics(gan, noise, ids, lengths, writer):  # noqa: N802 (a callback factory)
    """TensorBoard ``modulation/*``: per affine, mean and std of γ and β over the fixed grid's captions —
    RAT-GAN's controller gives every block its own (γ, β) from one LSTM; DF-GAN's MLPs see [z, s]."""
    import keras
    import tensorflow as tf

    class Callback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            _, statistics = gan.generate(noise, ids, lengths, return_modulation=True)
            with writer.as_default(step=int(gan.generator_optimizer.iterations.numpy())):
                for k, values in enumerate(statistics):
                    gamma_mean, gamma_std, beta_mean, beta_std = (float(v) for v in np.asarray(values))
                    tf.summary.scalar(f"modulation/gamma_mean/affine_{k:02d}", gamma_mean)
                    tf.summary.scalar(f"modulation/gamma_std/affine_{k:02d}", gamma_std)
                    tf.summary.scalar(f"modulation/beta_mean/affine_{k:02d}", beta_mean)
                    tf.summary.scalar(f"modulation/beta_std/affine_{k:02d}", beta_std)

    return Callback()


def attention_overlay(images, maps):
    """Each image beside the same image tinted by the D's 8×8 attention (stretched per image; nearest, the
    map's own cells)."""
    import tensorflow as tf

    from t2igan.sampling import heat_overlay

    size = images.shape[1]
    heat = tf.image.resize(maps[..., None], [size, size], "nearest").numpy()[..., 0]
    tinted = np.stack([heat_overlay(image, cells, normalise="range") for image, cells in zip(images, heat)])
    return np.stack([images, tinted], axis=1)  # (B, 2, H, W, 3)


def DiscriminatorAttention(gan, noise, ids, lengths, writer):  # noqa: N802 (a callback factory)
    """TensorBoard ``attention/discriminator``: where RAT-GAN's D puts the sentence on generated images of
    fixed captions (the soft-threshold map, stretched per image: its weights differ by at most a factor e)."""
    import keras
    import tensorflow as tf

    from t2igan.sampling import make_grid

    class Callback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            images = gan.generate(noise, ids, lengths)
            maps = gan.discriminator_attention(images, ids, lengths).numpy()
            grid = make_grid(attention_overlay(images.numpy(), maps))
            with writer.as_default(step=int(gan.generator_optimizer.iterations.numpy())):
                tf.summary.image("attention/discriminator", grid[None].astype(np.float32) / 255.0)
                tf.summary.scalar("attention/max_over_min", float(np.mean(maps.max(axis=(1, 2)) / maps.min(axis=(1, 2)))))

    return Callback()


# ----------------------------------------------------------------------------- sample, eval
def _restored(run, config):
    index = chapter.load_data(config, for_training=False)
    vocabulary, build_encoders = chapter.damsm(None, run, config, index)
    text, image = build_encoders()
    gan = chapter.restore_generator(run, build_gan(config, text), train_command=_train_command(config))
    return index, vocabulary, gan, image


def _train_command(config):
    return "make chapter4-train" + (" VARIANT=dfgan" if config.get("variant") == "dfgan" else "")


def sample():
    from t2igan import damsm
    from t2igan.sampling import make_grid, save_png

    _, run, config = _setup(for_training=False)
    chapter.check_sample_count()
    if FLAGS.interpolate_to:
        raise UserError("--interpolate_to is chapter 1's (GAN-INT); it is not implemented for chapter 4.")
    _, vocabulary, gan, _ = _restored(run, config)
    ids, length = damsm.encode_user_caption(vocabulary, FLAGS.text, config["words_num"])
    n = FLAGS.n
    noise = sampling_noise(config, chapter.sample_noise(n, config["noise_dim"]))
    images = gan.generate(noise, np.repeat(ids[None], n, axis=0), np.full(n, length, np.int32)).numpy()
    path = chapter.sample_path(run)
    save_png(make_grid(images[None]), path, scale=2)
    print(path)
    if config["variant"] == "ratgan" and config["discriminator_head"] == "attention" and FLAGS.attention:
        maps = gan.discriminator_attention(images, np.repeat(ids[None], n, axis=0), np.full(n, length, np.int32))
        attention_path = path[:-4] + "-attention.png"
        save_png(make_grid(attention_overlay(images, maps.numpy())), attention_path, scale=2)
        print(attention_path)


def evaluate():
    from t2igan import damsm, evaluation
    from t2igan.metrics.r_precision import damsm_r_precision

    _, run, config = _setup(for_training=False)
    index, vocabulary, gan, image_encoder = _restored(run, config)
    ids, lengths = damsm.test_ids(index, vocabulary, config["words_num"])

    def generate(example_indices, caption_indices, noise):
        noise = sampling_noise(config, noise)
        return gan.generate(noise, ids[example_indices, caption_indices], lengths[example_indices, caption_indices]).numpy()

    def r_precision(plan, images):
        return damsm_r_precision(gan.text_encoder, image_encoder, index, ids, lengths, plan, images, FLAGS.sample_seed)

    truncation = ", noise 0.88×N(0,1) truncated at ±2" if config["truncation"] else ""
    name = "EMA generator" if config["ema_decay"] > 0 else "generator"
    evaluation.evaluate_run(run, config, index, generate, config["noise_dim"], FLAGS.eval_samples, FLAGS.sample_seed,
                            FLAGS.data_root, generator_name=f"{config['variant']} {name} ({config['image_size']} px{truncation})",
                            extra=r_precision)


def pretrain():
    """``chapter4-pretrain``: (re)train DAMSM for this run."""
    strategy, run, config = _setup(for_training=True)
    if config.get("damsm_dir"):
        raise UserError("This run reuses the DAMSM in damsm_dir; pretrain in the run that owns it.")
    index = chapter.load_data(config, for_training=True)
    chapter.pretrain_damsm(strategy, run, config, index)


# ----------------------------------------------------------------------------- benchmark
def benchmark():
    """Time training steps of the variant at a profile's networks (default: the official 256² ``paper``
    ones), batch ``--benchmark_batch``, random images and captions (the frozen DAMSM text forward included)."""
    import keras
    import tensorflow as tf

    from t2igan import damsm

    profile = FLAGS.profile
    config = app.resolve_config(chapter.module("profiles").PROFILES, profile, "birds", FLAGS.set, None)
    _variant_settings(profile, config)
    batch, size, words = FLAGS.benchmark_batch, config["image_size"], config["words_num"]
    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    text = damsm.DamsmTextEncoder(5450, config["word_embedding_dim"], config["text_hidden"], config["text_dropout"])
    text([tf.zeros((1, words), tf.int32), tf.constant([words])])
    gan = build_gan(config, text)
    gan.compile(*(chapter.adam(config, 1, config[f"learning_rate_{name}"]) for name in ("generator", "discriminator")))
    gan.build_optimizers()
    built = time.perf_counter() - started
    batch_data = {"image": tf.random.uniform((batch, size, size, 3), -1.0, 1.0),
                  "caption_ids": tf.random.uniform((batch, words), 1, 5450, tf.int32),
                  "caption_length": tf.fill((batch,), words), "class_id": tf.range(batch),
                  "noise": tf.random.normal((batch, 1, config["noise_dim"]))}
    step = tf.function(gan.train_step, jit_compile=FLAGS.jit_compile)
    times = []
    for _ in range(1 + FLAGS.benchmark_steps):
        started = time.perf_counter()
        logs = step(batch_data)
        float(logs["g_loss"])  # wait for the step
        times.append(time.perf_counter() - started)
    g = sum(int(np.prod(v.shape)) for v in gan.generator.trainable_variables)
    d = sum(int(np.prod(v.shape)) for v in gan.discriminator.trainable_variables)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    print(f"{config['variant']} ({profile}: {size}² px, G width {config['generator_width']}, D width "
          f"{config['discriminator_width']}, G {g:,} / D {d:,} parameters), batch {batch}, "
          f"{'XLA' if FLAGS.jit_compile else 'tf.function'}, intra-op threads {threads}")
    print(f"  build {built:.1f} s; first step (trace) {times[0]:.1f} s; then " + ", ".join(f"{t:.2f}" for t in times[1:])
          + f" s; median {np.median(times[1:]):.2f} s per training step")


if __name__ == "__main__":
    chapter.run({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate, "benchmark": benchmark})
