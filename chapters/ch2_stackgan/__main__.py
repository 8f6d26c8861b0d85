"""Chapter 2 commands: ``python -m chapters.ch2_stackgan {pretrain,train,sample,eval,import} [--variant=v2|v1] --flags``.

(``make chapter2-train [VARIANT=v1]`` etc. call these.) The networks and losses are in ``model.py`` and
``stages.py``, config → networks in ``build.py``; the text encoder is chapter 1's char-CNN-RNN.

* ``--variant=v2`` (default): StackGAN++, every stage trained jointly.
* ``--variant=v1``: StackGAN-v1, stage I for ``stage_one_epochs``, then stage II for ``epochs`` on top of
  the frozen stage I (checkpoints in ``checkpoints/stage1`` and ``checkpoints/stage2``; a restart resumes
  whichever stage was running).

``import`` writes a run folder from StackGAN++'s released birds generator and Reed's embeddings (``official.py``).
"""

from __future__ import annotations

from t2igan.startup import quiet_tensorflow

quiet_tensorflow()  # first: TensorFlow's C++ start-up notes are filtered out (--verbose shows them)

import os

import numpy as np
from absl import flags

from chapters.ch1_gan_int_cls import char_cnn_rnn
from chapters.ch1_gan_int_cls.sample import sample_captions
from chapters.ch2_stackgan import official
from chapters.ch2_stackgan.build import build_v1, build_v2, check_networks, input_noise_dim
from chapters.ch2_stackgan.profiles import PROFILES, variant_settings
from chapters.ch2_stackgan.official import refuse_imported_run
from chapters.ch2_stackgan.stages import check_stage_sizes
from t2igan import cli
from t2igan.config import default_run_dir
from t2igan.errors import UserError
from t2igan.sampling import stages_side_by_side
from t2igan.training import harness

flags.adopt_module_key_flags(cli)  # the shared flags appear in --help too
CHAPTER = "ch2_stackgan"
flags.DEFINE_enum("variant", "v2", ["v2", "v1"], "v2: StackGAN++ (joint tree); v1: StackGAN-v1 (stage I, then stage II).")
flags.DEFINE_string("interpolate_to", None, "sample: a second caption; the grid then interpolates between the two (GAN-INT).")
flags.DEFINE_string("checkpoint", None, "import: StackGAN++'s released netG_*.pth (or its .npz); official.py.")
flags.DEFINE_string("embeddings", None, "import: the folder of train/ and test/char-CNN-RNN-embeddings.pickle "
                                        "(default: the data set's folder).")


def run_dir(options) -> str:
    """A v1 run lives beside the v2 one: ``runs/ch2-<dataset>-<profile>-v1``."""
    return options.run_dir or default_run_dir(2, options.dataset, options.profile, "v1" if options.variant == "v1" else "")


def start_training(options, also=None):
    """Config, run folder and lock; ``also(config)``: the import's own checks (train refuses an imported run)."""
    if also is None:
        refuse_imported_run(run_dir(options))

    def adjust(config):
        config["variant"] = options.variant
        if also is not None:
            also(config)

    return harness.start_training(CHAPTER, options, PROFILES, run_dir=run_dir(options), adjust=adjust,
                                  variant_settings=variant_settings(options.variant, options.profile),
                                  check_networks=check_networks)


def stage_folder(run, stage):
    return os.path.join(run.checkpoints, f"stage{stage}")


def restore_stage_one(run, gan):
    from t2igan.training.run import Checkpointer

    if Checkpointer(stage_folder(run, 1), generator=gan.stage_one).restore() == 0:
        raise UserError(f"No stage-I checkpoint in {stage_folder(run, 1)}; train stage I first (make chapter2-train VARIANT=v1).")


def pretrain(options):
    """``chapter2-pretrain``: (re)train the char-CNN-RNN text encoder (chapter 1's) for this run."""
    strategy, run, config = start_training(options)
    char_cnn_rnn.pretrain_for_run(strategy, run, config, harness.load_data(config, options.data_root), options.data_root)
    harness.commit_config(run)


def train_phase(options, strategy, run, config, index, embeddings, build, image_size, epochs, folder, timer, phase=""):
    """One GAN training: StackGAN++ (the whole tree) or one StackGAN-v1 stage (``phase``)."""
    from t2igan.data.pipeline import make_dataset

    config = dict(config, epochs=epochs, image_size=image_size)  # this phase's output size (oracle metrics)
    images = harness.image_array(index, config, "train", options.data_root, image_size)
    batch_size = config["batch_size"]
    steps_per_epoch = harness.steps_per_epoch(config, len(images), batch_size)
    gan, optimizers, checkpointer, initial_epoch = harness.build_for_training(
        strategy, run, config, build, len(images) // batch_size, folder=folder,
        mixed_precision=options.mixed_precision)
    if getattr(gan, "stage_one", None) is not None:
        restore_stage_one(run, gan)
    if harness.already_trained(folder, epochs, initial_epoch):
        return
    dataset = make_dataset(images, harness.example_class_ids(index.train), embeddings["train"],
                           global_batch_size=batch_size, image_size=image_size, augment=config["augment"],
                           seed=config["seed"], captions_per_sample=config["captions_per_sample"],
                           noise_shape=(1, input_noise_dim(config)), start_step=initial_epoch * steps_per_epoch)
    # Fixed captions × fixed noise for the sample grid, every stage side by side.
    rows, columns = min(8, len(index.test)), 4
    captions = [index.test[i].captions[0] for i in range(rows)]
    text = np.repeat(embeddings["test"].values[:rows, 0].astype(np.float32), columns, axis=0)
    noise = np.random.default_rng(1234).standard_normal((rows * columns, input_noise_dim(config))).astype(np.float32)
    test_text = embeddings["test"].values

    def render():
        return stages_side_by_side(gan.generate(noise, text, all_stages=True), rows, columns, image_size)

    def generate(example_indices, caption_indices, noise_rows):  # the largest stage, as evaluate() does
        return gan.generate(noise_rows, test_text[example_indices, caption_indices].astype(np.float32)).numpy()

    callbacks = harness.training_callbacks(run, config, gan, checkpointer, optimizers, render, captions, phase)
    metrics = harness.metrics_callback(config, index, options.data_root, generate, input_noise_dim(config),
                                       callbacks.writer)
    callbacks += [metrics] if metrics else []
    harness.fit(gan, dataset, run, config, strategy, callbacks, steps_per_epoch=steps_per_epoch,
                initial_epoch=initial_epoch, timer=timer, title="StackGAN")


def train(options):
    from t2igan.training.run import Timer

    strategy, run, config = start_training(options)
    timer = Timer()
    index = harness.load_data(config, options.data_root)
    embeddings = char_cnn_rnn.run_embeddings(run, config, index, options.data_root, strategy)
    common = (options, strategy, run, config, index, embeddings)
    if config["variant"] == "v2":
        train_phase(*common, lambda: build_v2(config), config["image_size"], config["epochs"], run.checkpoints, timer)
        return
    print(f"StackGAN-v1 stage I ({config['base_size']} px), {config['stage_one_epochs']} epochs")
    train_phase(*common, lambda: build_v1(config, 1), config["base_size"], config["stage_one_epochs"],
                stage_folder(run, 1), timer, "stage1")
    print(f"StackGAN-v1 stage II ({config['base_size']} → {config['image_size']} px), {config['epochs']} epochs")
    train_phase(*common, lambda: build_v1(config, 2), config["image_size"], config["epochs"],
                stage_folder(run, 2), timer, "stage2")


def restored_gan(run, config):
    if config.get("variant") == "v1":
        gan = harness.restore_generator(run, build_v1(config, 2), stage_folder(run, 2), "make chapter2-train VARIANT=v1")
        restore_stage_one(run, gan)
        return gan
    return harness.restore_generator(run, build_v2(config))


def open_run(options):
    run, config = harness.open_run(CHAPTER, options, run_dir(options), variant_key="variant")
    check_stage_sizes(config)
    return run, config


def sample(options):
    run, config = open_run(options)
    harness.check_sample_count(options.n)
    gan = restored_gan(run, config)
    sample_captions(run, lambda noise, text: gan.generate(noise, text).numpy(), official.caption_encoder(run, config),
                    input_noise_dim(config), options)


def evaluate(options):
    from t2igan.scoring import evaluate_run

    run, config = open_run(options)
    index = harness.load_data(config, options.data_root, report_missing=False)
    embeddings = char_cnn_rnn.run_embeddings(run, config, index, options.data_root)["test"].values
    gan = restored_gan(run, config)

    def generate(example_indices, caption_indices, noise):
        return gan.generate(noise, embeddings[example_indices, caption_indices].astype(np.float32)).numpy()

    name = "EMA generator" if gan.ema_generator is not None else "generator"
    evaluate_run(run, config, index, generate, input_noise_dim(config), options.eval_samples, options.sample_seed,
                 options.data_root, generator_name=f"{name} (largest stage, {config['image_size']} px)")


if __name__ == "__main__":
    cli.run_commands({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate,
                      "import": lambda options: official.import_run(start_training, options, run_dir(options))},
                     f"usage: python -m chapters.{CHAPTER} {{pretrain,train,sample,eval,import}} [--variant=v2|v1] "
                     "[--dataset=shapes] [--profile=course] [--run_dir=...] ...")
