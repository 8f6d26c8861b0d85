"""Chapter 1 commands: ``python -m chapters.ch1_gan_int_cls {pretrain,train,sample,eval} --flags``.

(``make chapter1-train`` etc. call these.) ``train`` reads top to bottom: arguments → config → strategy →
data → text encoder (``char_cnn_rnn.py``: DS-SJE, pretrained when the run has none) → build G and D
(``model.py``) → compile → fit. Run folder, checkpoints, callbacks and evaluation are the library's
(``t2igan.training.harness``, ``t2igan.scoring``).
"""

from __future__ import annotations

from t2igan.startup import quiet_tensorflow

quiet_tensorflow()  # first: TensorFlow's C++ start-up notes are filtered out (--verbose shows them)

import numpy as np
from absl import flags

from chapters.ch1_gan_int_cls import char_cnn_rnn, model
from chapters.ch1_gan_int_cls.profiles import PROFILES
from chapters.ch1_gan_int_cls.sample import sample_captions
from t2igan import cli
from t2igan.training import harness

flags.adopt_module_key_flags(cli)  # the shared flags appear in --help too
CHAPTER = "ch1_gan_int_cls"
flags.DEFINE_string("interpolate_to", None, "sample: a second caption; the grid then interpolates between the two (GAN-INT).")


def build_gan(config):
    """G, D and the GAN-INT-CLS model, built (and the EMA copy made) with the profile's sizes."""
    import tensorflow as tf

    def generator():
        network = model.Generator(config["text_dim"], config["noise_dim"], config["projection_dim"],
                                  config["generator_width"], config["image_size"], config["conv_bias"])
        network([tf.zeros((2, config["noise_dim"])), tf.zeros((2, config["text_dim"]))])
        return network

    discriminator = model.Discriminator(config["text_dim"], config["projection_dim"], config["discriminator_width"],
                                        config["image_size"], config["conv_bias"], config["missing_activations"])
    discriminator([tf.zeros((2, config["image_size"], config["image_size"], 3)), tf.zeros((2, config["text_dim"]))])
    gan = model.GanIntCls(generator(), discriminator, config["matching_aware"], config["interpolation"],
                          config["cls_weight"], config["interp_beta"], config["interp_weight"], config["ema_decay"])
    gan.enable_ema(generator)
    return gan


def pretrain(options):
    """``chapter1-pretrain``: (re)train the char-CNN-RNN text encoder φ(t) with DS-SJE."""
    strategy, run, config = harness.start_training(CHAPTER, options, PROFILES, check_networks=build_gan)
    index = harness.load_data(config, options.data_root)
    char_cnn_rnn.pretrain_for_run(strategy, run, config, index, options.data_root)
    harness.commit_config(run)


def train(options):
    from t2igan.data import negatives
    from t2igan.data.pipeline import make_dataset
    from t2igan.training.run import Timer

    strategy, run, config = harness.start_training(CHAPTER, options, PROFILES, check_networks=build_gan)
    timer = Timer()
    index = harness.load_data(config, options.data_root)
    text = char_cnn_rnn.run_embeddings(run, config, index, options.data_root, strategy)
    images = harness.image_array(index, config, "train", options.data_root)
    batch_size = config["batch_size"]
    steps_per_epoch = harness.steps_per_epoch(config, len(images), batch_size)

    gan, optimizers, checkpointer, initial_epoch = harness.build_for_training(
        strategy, run, config, lambda: build_gan(config), len(images) // batch_size,
        mixed_precision=options.mixed_precision)
    if harness.already_trained(run.path, config["epochs"], initial_epoch):
        return
    dataset = make_dataset(images, harness.example_class_ids(index.train), text["train"], global_batch_size=batch_size,
                           image_size=config["image_size"], augment=config["augment"], seed=config["seed"],
                           captions_per_sample=config["captions_per_sample"], noise_shape=(3, config["noise_dim"]),
                           start_step=initial_epoch * steps_per_epoch,
                           **negatives.dataset_options(index.train, config["hard_negatives"]))

    # Fixed captions × fixed noise for the sample grid: the same every epoch.
    rows = min(8, len(index.test))
    grid_captions = [index.test[i].captions[0] for i in range(rows)]
    grid_text = np.repeat(text["test"].values[:rows, 0].astype(np.float32), 8, axis=0)
    grid_noise = np.random.default_rng(1234).standard_normal((rows * 8, config["noise_dim"])).astype(np.float32)
    size = config["image_size"]

    def render():
        return gan.generate(grid_noise, grid_text).numpy().reshape(rows, 8, size, size, 3)

    test_text = text["test"].values

    def generate(example_indices, caption_indices, noise):  # as evaluate() does, for the in-training metrics
        return gan.generate(noise, test_text[example_indices, caption_indices].astype(np.float32)).numpy()

    callbacks = harness.training_callbacks(run, config, gan, checkpointer, optimizers, render, grid_captions)
    metrics = harness.metrics_callback(config, index, options.data_root, generate, config["noise_dim"], callbacks.writer)
    callbacks += [metrics] if metrics else []
    harness.fit(gan, dataset, run, config, strategy, callbacks, steps_per_epoch=steps_per_epoch,
                initial_epoch=initial_epoch, timer=timer, title="GAN-INT-CLS")


def sample(options):
    run, config = harness.open_run(CHAPTER, options)
    harness.check_sample_count(options.n)
    gan = harness.restore_generator(run, build_gan(config))
    sample_captions(run, lambda noise, text: gan.generate(noise, text).numpy(),
                    lambda caption: char_cnn_rnn.encode_user_caption(run.text_encoder, config, caption),
                    config["noise_dim"], options)


def evaluate(options):
    from t2igan.scoring import evaluate_run

    run, config = harness.open_run(CHAPTER, options)
    index = harness.load_data(config, options.data_root, report_missing=False)
    embeddings = char_cnn_rnn.run_embeddings(run, config, index, options.data_root)["test"].values
    gan = harness.restore_generator(run, build_gan(config))

    def generate(example_indices, caption_indices, noise):
        return gan.generate(noise, embeddings[example_indices, caption_indices].astype(np.float32)).numpy()

    evaluate_run(run, config, index, generate, config["noise_dim"], options.eval_samples, options.sample_seed,
                 options.data_root, generator_name="EMA generator" if gan.ema_generator is not None else "generator")


if __name__ == "__main__":
    cli.run_commands({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate},
                     f"usage: python -m chapters.{CHAPTER} {{pretrain,train,sample,eval}} "
                     "[--dataset=shapes] [--profile=course] [--run_dir=...] ...")
