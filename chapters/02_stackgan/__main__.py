"""Chapter 2 commands: ``python -m chapters.02_stackgan {pretrain,train,sample,eval} [--variant=v2|v1] --flags``.

(``make chapter2-train [VARIANT=v1]`` etc. call these.) The networks and losses
are in ``model.py``; the text encoder is chapter 1's char-CNN-RNN
(``t2igan.char_cnn_rnn``); the rest is the shared ``t2igan.workflow``.

* ``--variant=v2`` (default): StackGAN++, every stage trained jointly.
* ``--variant=v1``: StackGAN-v1, stage I for ``stage_one_epochs``, then stage II
  for ``epochs`` on top of the frozen stage I (checkpoints in ``checkpoints/stage1``
  and ``checkpoints/stage2``; a restart resumes whichever stage was running).
"""

from __future__ import annotations

import os

import numpy as np
from absl import flags

from t2igan import app, char_cnn_rnn
from t2igan.app import FLAGS, UserError
from t2igan.sampling import stages_side_by_side
from t2igan.stages import check_stage_sizes
from t2igan.workflow import Chapter

flags.DEFINE_enum("variant", "v2", ["v2", "v1"], "v2: StackGAN++ (joint tree); v1: StackGAN-v1 (stage I, then stage II).")

chapter = Chapter("02_stackgan", 2, "StackGAN")


def _setup(for_training):
    if not FLAGS.run_dir and FLAGS.variant == "v1":
        FLAGS.run_dir = app.default_run_dir(chapter.number, FLAGS.dataset, FLAGS.profile) + "-v1"

    def adjust(config):
        config["variant"] = FLAGS.variant
        if FLAGS.variant == "v1":  # StackGAN-v1's own settings, unless given with --set
            v1 = dict(chapter.module("profiles").VARIANT_V1, **({"batch_size": 64} if FLAGS.profile == "paper" else {}))
            explicit = {item.split("=", 1)[0].strip() for item in FLAGS.set}
            config.update({key: value for key, value in v1.items() if key not in explicit})

    strategy, run, config = chapter.setup(for_training, adjust)
    check_stage_sizes(config)
    return strategy, run, config


def noise_width(config) -> int:
    """A pipeline noise row holds z and the CA noise ε of each conditioning augmentation."""
    augmentations = 2 if config.get("variant") == "v1" else 1
    return config["noise_dim"] + augmentations * config["condition_dim"]


# ----------------------------------------------------------------------------- models
def build_v2(config):
    import tensorflow as tf

    model = chapter.module("model")

    def generator():
        network = model.TreeGenerator(config["text_dim"], config["noise_dim"], config["condition_dim"],
                                      config["generator_width"], config["stages"], config["base_size"],
                                      config["residual_blocks"])
        network([tf.zeros((2, config["noise_dim"])), tf.zeros((2, config["text_dim"]))])
        return network

    g = generator()
    discriminator = model.Discriminators(g.sizes, config["discriminator_width"], config["condition_dim"])
    discriminator([[tf.zeros((2, s, s, 3)) for s in g.sizes], tf.zeros((2, config["condition_dim"]))])
    gan = model.StackGanPlusPlus(g, discriminator, config["kl_weight"], config["uncond_weight"],
                                 config["colour_weight"], config["ema_decay"])
    gan.enable_ema(generator)
    return gan


def build_v1(config, stage):
    """StackGAN-v1 stage 1 (G₀, D₀) or stage 2 (G₁, D₁ on top of a frozen G₀)."""
    import tensorflow as tf

    model = chapter.module("model")
    text = tf.zeros((2, config["text_dim"]))
    small = config["base_size"]

    def stage_one():
        network = model.StageOneGenerator(config["text_dim"], config["noise_dim"], config["condition_dim"],
                                          config["v1_generator_width"], small)
        network([tf.zeros((2, config["noise_dim"])), text])
        return network

    if stage == 1:
        discriminator = model.stage_one_discriminator(config["text_dim"], config["condition_dim"],
                                                      config["discriminator_width"], small)
        discriminator([tf.zeros((2, small, small, 3)), text])
        gan = model.StackGanV1(stage_one(), discriminator, kl_weight=config["kl_weight"])
        return gan
    size = config["image_size"]

    def stage_two():
        network = model.StageTwoGenerator(config["text_dim"], config["condition_dim"], config["v1_generator_width"],
                                          small, size, config["v1_residual_blocks"])
        network([tf.zeros((2, small, small, 3)), text])
        return network

    discriminator = model.StageTwoDiscriminator(config["text_dim"], config["condition_dim"],
                                                config["discriminator_width"], size)
    discriminator([tf.zeros((2, size, size, 3)), text])
    return model.StackGanV1(stage_two(), discriminator, stage_one=stage_one(), kl_weight=config["kl_weight"])


def _stage_folder(run, stage):
    return os.path.join(run.checkpoints, f"stage{stage}")


def _restore_stage_one(run, gan):
    from t2igan.training.run import Checkpointer

    if Checkpointer(_stage_folder(run, 1), generator=gan.stage_one).restore() == 0:
        raise UserError(f"No stage-I checkpoint in {_stage_folder(run, 1)}; train stage I first (make chapter2-train VARIANT=v1).")


# ----------------------------------------------------------------------------- commands
def pretrain():
    """``chapter2-pretrain``: (re)train the char-CNN-RNN text encoder (chapter 1's) for this run."""
    strategy, run, config = _setup(for_training=True)
    chapter.pretrain_char_encoder(strategy, run, config, chapter.load_data(config, for_training=True))


def _grid(config, embeddings, index):
    rows = min(8, len(index.test))
    captions = [index.test[i].captions[0] for i in range(rows)]
    columns = 4
    text = np.repeat(embeddings["test"].values[:rows, 0].astype(np.float32), columns, axis=0)
    noise = np.random.default_rng(1234).standard_normal((rows * columns, noise_width(config))).astype(np.float32)
    return captions, text, noise, rows, columns


def _train_phase(strategy, run, config, index, embeddings, gan_builder, image_size, epochs, folder, timer, phase=""):
    from t2igan.data.pipeline import make_dataset

    phase_config = dict(config, epochs=epochs, image_size=image_size)  # this phase's output size (oracle metrics)
    images = chapter.images(index, config, "train", image_size)
    batch_size = config["batch_size"]
    steps_per_epoch = config["steps_per_epoch"] or len(images) // batch_size
    gan, optimizers, checkpointer, initial_epoch = chapter.build_for_training(
        strategy, run, phase_config, gan_builder, len(images) // batch_size, folder)
    if getattr(gan, "stage_one", None) is not None:
        _restore_stage_one(run, gan)
    if chapter.already_trained(folder, epochs, initial_epoch):
        return gan
    class_ids = np.array([e.class_id for e in index.train], np.int32)
    dataset = make_dataset(images, class_ids, embeddings["train"], global_batch_size=batch_size,
                           image_size=image_size, augment=config["augment"], seed=config["seed"],
                           captions_per_sample=config["captions_per_sample"], noise_shape=(1, noise_width(config)),
                           start_step=initial_epoch * steps_per_epoch)
    captions, text, noise, rows, columns = _grid(config, embeddings, index)
    render = lambda: stages_side_by_side(gan.generate(noise, text, all_stages=True), rows, columns, image_size)
    test_text = embeddings["test"].values

    def generate(example_indices, caption_indices, noise_rows):  # the largest stage, as evaluate() does
        return gan.generate(noise_rows, test_text[example_indices, caption_indices].astype(np.float32)).numpy()

    chapter.fit(gan, run, phase_config, strategy, dataset, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                checkpointer=checkpointer, render=render, grid_captions=captions, optimizers=optimizers, timer=timer, phase=phase,
                index=index, metrics_generate=generate, noise_dim=noise_width(config))
    return gan


def train():
    from t2igan.training.run import Timer

    strategy, run, config = _setup(for_training=True)
    timer = Timer()
    index = chapter.load_data(config, for_training=True)
    embeddings = chapter.char_embeddings(strategy, run, config, index)
    if config["variant"] == "v2":
        _train_phase(strategy, run, config, index, embeddings, lambda: build_v2(config), config["image_size"],
                     config["epochs"], run.checkpoints, timer)
        return
    print(f"StackGAN-v1 stage I ({config['base_size']} px), {config['stage_one_epochs']} epochs")
    _train_phase(strategy, run, config, index, embeddings, lambda: build_v1(config, 1), config["base_size"],
                 config["stage_one_epochs"], _stage_folder(run, 1), timer, "stage1")
    print(f"StackGAN-v1 stage II ({config['base_size']} → {config['image_size']} px), {config['epochs']} epochs")
    _train_phase(strategy, run, config, index, embeddings, lambda: build_v1(config, 2), config["image_size"],
                 config["epochs"], _stage_folder(run, 2), timer, "stage2")


def _restored_gan(run, config):
    if config.get("variant") == "v1":
        gan = chapter.restore_generator(run, build_v1(config, 2), _stage_folder(run, 2), "make chapter2-train VARIANT=v1")
        _restore_stage_one(run, gan)
        return gan
    return chapter.restore_generator(run, build_v2(config))


def sample():
    _, run, config = _setup(for_training=False)
    chapter.check_sample_count()
    gan = _restored_gan(run, config)
    chapter.sample_captions(run, lambda noise, text: gan.generate(noise, text).numpy(),
                            lambda caption: char_cnn_rnn.encode_user_caption(run.text_encoder, config, caption),
                            noise_width(config))


def evaluate():
    from t2igan import evaluation

    _, run, config = _setup(for_training=False)
    index = chapter.load_data(config, for_training=False)
    embeddings = chapter.char_embeddings(None, run, config, index)["test"].values
    gan = _restored_gan(run, config)

    def generate(example_indices, caption_indices, noise):
        return gan.generate(noise, embeddings[example_indices, caption_indices].astype(np.float32)).numpy()

    name = "EMA generator" if gan.ema_generator is not None else "generator"
    evaluation.evaluate_run(run, config, index, generate, noise_width(config), FLAGS.eval_samples, FLAGS.sample_seed,
                            FLAGS.data_root, generator_name=f"{name} (largest stage, {config['image_size']} px)")


if __name__ == "__main__":
    chapter.run({"pretrain": pretrain, "train": train, "sample": sample, "eval": evaluate})
